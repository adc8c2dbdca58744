//! Compact JWS (RFC 7515) with PS512 only. JSON is the caller's business: this module
//! signs the exact header and payload bytes it is given and hands back raw segments.

use crate::{CryptoError, PrivateKey, PublicKey, b64url_decode, b64url_encode};

/// Signs `header` and `payload` (JSON bytes) into `b64(header).b64(payload).b64(sig)`.
pub fn sign(header: &[u8], payload: &[u8], key: &PrivateKey) -> Result<String, CryptoError> {
    let mut out = String::with_capacity((header.len() + payload.len()) * 4 / 3 + 350);
    out.push_str(&b64url_encode(header));
    out.push('.');
    out.push_str(&b64url_encode(payload));
    let sig = key.sign_ps512(out.as_bytes())?;
    out.push('.');
    out.push_str(&b64url_encode(&sig));
    Ok(out)
}

/// A compact JWS split into its segments (nothing verified yet).
#[derive(Debug, Clone, Copy)]
pub struct Compact<'a> {
    signing_input: &'a str,
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
}

impl<'a> Compact<'a> {
    /// Splits `token` into three non-empty base64url segments.
    pub fn parse(token: &'a str) -> Result<Self, CryptoError> {
        let token = token.trim();
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(CryptoError::MalformedJws(
                "expected three dot-separated segments",
            ));
        };
        if header.is_empty() || payload.is_empty() || signature.is_empty() {
            return Err(CryptoError::MalformedJws("empty segment"));
        }
        let is_b64url = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !(is_b64url(header) && is_b64url(payload) && is_b64url(signature)) {
            return Err(CryptoError::MalformedJws("segment is not base64url"));
        }
        Ok(Compact {
            signing_input: &token[..header.len() + 1 + payload.len()],
            header,
            payload,
            signature,
        })
    }

    /// The decoded header bytes.
    pub fn header(&self) -> Result<Vec<u8>, CryptoError> {
        b64url_decode(self.header)
    }

    /// The decoded payload bytes.
    pub fn payload(&self) -> Result<Vec<u8>, CryptoError> {
        b64url_decode(self.payload)
    }

    /// The base64url header segment as sent.
    pub fn header_segment(&self) -> &'a str {
        self.header
    }

    /// Verifies the PS512 signature over `header.payload`.
    pub fn verify(&self, key: &PublicKey) -> Result<(), CryptoError> {
        let sig = b64url_decode(self.signature)?;
        key.verify_ps512(self.signing_input.as_bytes(), &sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_segment_of_the_spec() {
        let key = PrivateKey::generate().unwrap();
        let t = sign(br#"{"alg":"PS512","typ":"JWT"}"#, b"{}", &key).unwrap();
        assert!(t.starts_with("eyJhbGciOiJQUzUxMiIsInR5cCI6IkpXVCJ9."));
        // 2048-bit signature = 256 bytes = 342 base64url chars
        assert_eq!(t.rsplit('.').next().unwrap().len(), 342);
    }

    #[test]
    fn tampering_is_detected() {
        let key = PrivateKey::generate().unwrap();
        let t = sign(b"{\"alg\":\"PS512\"}", b"{\"x\":1}", &key).unwrap();
        let mut parts: Vec<&str> = t.split('.').collect();
        let other_payload = b64url_encode(b"{\"x\":2}");
        parts[1] = &other_payload;
        let forged = parts.join(".");
        let c = Compact::parse(&forged).unwrap();
        assert_eq!(c.verify(&key.public_key()), Err(CryptoError::BadSignature));
    }

    #[test]
    fn malformed_tokens() {
        for t in ["", "a.b", "a.b.c.d", "a..c", "a.b.c=", "a.b!.c"] {
            assert!(Compact::parse(t).is_err(), "{t}");
        }
    }
}
