//! The few DER structures the SDK touches: unwrapping PKCS#8 into PKCS#1 and encoding
//! a PKCS#1 `RSAPublicKey` from its modulus and exponent.

use crate::CryptoError;

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
#[cfg_attr(not(feature = "aws-lc"), allow(dead_code))]
const OCTET_STRING: u8 = 0x04;

fn bad() -> CryptoError {
    CryptoError::KeyRejected("malformed DER".into())
}

/// Reads one TLV; returns (tag, value, rest).
fn read_tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), CryptoError> {
    let (&tag, rest) = input.split_first().ok_or_else(bad)?;
    let (&first, mut rest) = rest.split_first().ok_or_else(bad)?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err(bad());
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | b as usize;
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err(bad());
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// The PKCS#1 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo` (aws-lc exports PKCS#8
/// only).
#[cfg_attr(not(feature = "aws-lc"), allow(dead_code))]
pub(crate) fn pkcs8_to_pkcs1(pkcs8: &[u8]) -> Result<&[u8], CryptoError> {
    let (tag, body, _) = read_tlv(pkcs8)?;
    if tag != SEQUENCE {
        return Err(bad());
    }
    let (tag, _version, rest) = read_tlv(body)?;
    if tag != INTEGER {
        return Err(bad());
    }
    let (tag, _algorithm, rest) = read_tlv(rest)?;
    if tag != SEQUENCE {
        return Err(bad());
    }
    let (tag, key, _) = read_tlv(rest)?;
    if tag != OCTET_STRING {
        return Err(bad());
    }
    Ok(key)
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn push_unsigned_integer(out: &mut Vec<u8>, be: &[u8]) {
    let trimmed = {
        let skip = be.iter().take_while(|&&b| b == 0).count();
        &be[skip.min(be.len().saturating_sub(1))..]
    };
    let pad = trimmed.first().is_some_and(|b| b & 0x80 != 0);
    out.push(INTEGER);
    push_len(out, trimmed.len() + pad as usize);
    if pad {
        out.push(0);
    }
    out.extend_from_slice(trimmed);
}

/// Whether `der` is exactly one PKCS#1 `RSAPublicKey`: a SEQUENCE of two INTEGERs and
/// nothing else (an SPKI `SubjectPublicKeyInfo` starts with an algorithm SEQUENCE).
pub(crate) fn is_pkcs1_public_key(der: &[u8]) -> bool {
    let Ok((SEQUENCE, body, [])) = read_tlv(der) else {
        return false;
    };
    let Ok((INTEGER, _, rest)) = read_tlv(body) else {
        return false;
    };
    matches!(read_tlv(rest), Ok((INTEGER, _, [])))
}

/// PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
pub(crate) fn rsa_public_key(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    push_unsigned_integer(&mut body, n);
    push_unsigned_integer(&mut body, e);
    let mut out = Vec::with_capacity(body.len() + 8);
    out.push(SEQUENCE);
    push_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

/// `AlgorithmIdentifier { rsaEncryption, NULL }`.
#[cfg(test)]
const RSA_ENCRYPTION: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

#[cfg(test)]
fn tlv(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = parts.iter().map(|p| p.len()).sum();
    let mut out = vec![tag];
    push_len(&mut out, len);
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

/// A PKCS#1 `RSAPrivateKey` wrapped into a PKCS#8 `PrivateKeyInfo` (for tests).
#[cfg(test)]
pub(crate) fn pkcs8_of_pkcs1(pkcs1: &[u8]) -> Vec<u8> {
    let version = [INTEGER, 1, 0];
    tlv(
        SEQUENCE,
        &[&version, RSA_ENCRYPTION, &tlv(OCTET_STRING, &[pkcs1])],
    )
}

/// A PKCS#1 `RSAPublicKey` wrapped into an SPKI `SubjectPublicKeyInfo` (for tests).
#[cfg(test)]
pub(crate) fn spki_of_pkcs1(pkcs1: &[u8]) -> Vec<u8> {
    const BIT_STRING: u8 = 0x03;
    tlv(
        SEQUENCE,
        &[RSA_ENCRYPTION, &tlv(BIT_STRING, &[&[0], pkcs1])],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        for input in [
            &[][..],
            &[0x30],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x30, 0x05, 1],
        ] {
            assert!(pkcs8_to_pkcs1(input).is_err());
        }
    }

    #[test]
    fn pkcs1_public_key_shape() {
        assert!(is_pkcs1_public_key(&rsa_public_key(
            &[0xc1; 256],
            &[1, 0, 1]
        )));
        let mut trailing = rsa_public_key(&[0xc1; 256], &[1, 0, 1]);
        trailing.push(0);
        assert!(!is_pkcs1_public_key(&trailing));
        assert!(!is_pkcs1_public_key(&[]));
        assert!(!is_pkcs1_public_key(&[0x30, 0x03, 0x02, 0x01, 0x01]));
    }

    #[test]
    fn integers_get_a_sign_byte_when_needed() {
        let der = rsa_public_key(&[0x80, 0x01], &[0x01, 0x00, 0x01]);
        assert_eq!(
            der,
            [
                0x30, 0x0a, 0x02, 0x03, 0x00, 0x80, 0x01, 0x02, 0x03, 0x01, 0x00, 0x01
            ]
        );
    }
}
