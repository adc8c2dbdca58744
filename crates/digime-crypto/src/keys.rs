use crate::backend::imp;
use crate::{CryptoError, der, pem};
use std::fmt;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The shortest RSA key accepted for PS512 (as jsonwebtoken 9 and the server do).
pub const MIN_RSA_BITS: usize = 2048;

/// Bytes OAEP with SHA-1 adds to a message: two digests and two more bytes.
const OAEP_SHA1_OVERHEAD: usize = 2 * 20 + 2;

/// An RSA private key (a contract key, or a server's signing key).
///
/// Parsed once; cheap to clone (shared). `Debug` never shows key material. Whatever
/// the backend builds on first use (aws-lc's RSA-OAEP form of the key) is shared by
/// every clone.
#[derive(Clone)]
pub struct PrivateKey {
    inner: Arc<imp::RsaPrivate>,
    /// Parsed with the key, so that a key whose public half a backend refuses is
    /// refused whole.
    public: PublicKey,
}

impl PrivateKey {
    /// Parses a PEM private key: PKCS#1 (`BEGIN RSA PRIVATE KEY`, what digi.me issues)
    /// or unencrypted PKCS#8 (`BEGIN PRIVATE KEY`).
    pub fn from_pem(pem_text: &str) -> Result<Self, CryptoError> {
        let block = pem::parse(pem_text)?;
        match block.label.as_str() {
            "RSA PRIVATE KEY" => Self::from_pkcs1_der(&block.der),
            "PRIVATE KEY" => Self::from_pkcs8_der(&block.der),
            "ENCRYPTED PRIVATE KEY" => Err(CryptoError::EncryptedKey),
            other => Err(CryptoError::UnexpectedPemLabel {
                found: other.to_owned(),
                expected: "RSA PRIVATE KEY or PRIVATE KEY",
            }),
        }
    }

    /// Parses a DER PKCS#1 `RSAPrivateKey`.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self, CryptoError> {
        Self::checked(imp::RsaPrivate::from_pkcs1_der(der)?)
    }

    /// Parses a DER PKCS#8 `PrivateKeyInfo` holding an RSA key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, CryptoError> {
        Self::checked(imp::RsaPrivate::from_pkcs8_der(der)?)
    }

    /// A fresh 2048-bit key (sandbox contracts, tests).
    pub fn generate() -> Result<Self, CryptoError> {
        Self::checked(imp::RsaPrivate::generate()?)
    }

    fn checked(key: imp::RsaPrivate) -> Result<Self, CryptoError> {
        let bits = key.modulus_len() * 8;
        if bits < MIN_RSA_BITS {
            return Err(CryptoError::KeyTooShort { bits });
        }
        let public = PublicKey::from_der(&key.public_der())?;
        Ok(PrivateKey {
            inner: Arc::new(key),
            public,
        })
    }

    /// Modulus length in bits.
    pub fn bits(&self) -> usize {
        self.inner.modulus_len() * 8
    }

    /// Signs `message` with RSASSA-PSS, SHA-512, MGF1-SHA-512 and a 64-byte salt.
    pub fn sign_ps512(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.inner.sign_ps512(message)
    }

    /// Decrypts one RSA block with RSAES-OAEP, SHA-1, MGF1-SHA-1 and an empty label (the
    /// data-file key wrap of the digi.me envelope, node-rsa's default scheme).
    ///
    /// `ciphertext` must be exactly as long as the modulus. Any failure (wrong key,
    /// corrupt block, wrong length) is [`CryptoError::KeyUnwrap`]; which one is not said.
    pub fn decrypt_oaep_sha1(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if ciphertext.len() != self.inner.modulus_len() {
            return Err(CryptoError::KeyUnwrap);
        }
        self.inner.decrypt_oaep_sha1(ciphertext)
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        self.public.clone()
    }

    /// The key as PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`), the form digi.me hands out.
    pub fn to_pkcs1_pem(&self) -> Result<Zeroizing<String>, CryptoError> {
        Ok(pem::encode("RSA PRIVATE KEY", &self.inner.to_pkcs1_der()?))
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(RSA-{}, [redacted])", self.bits())
    }
}

/// An RSA public key, parsed once for PS512 verification and RSA-OAEP; whatever the
/// backend builds on first use is shared by every clone.
#[derive(Clone)]
pub struct PublicKey {
    inner: Arc<imp::RsaPublic>,
    pkcs1: Arc<[u8]>,
    modulus: Arc<[u8]>,
    exponent: Arc<[u8]>,
}

impl PublicKey {
    /// Parses a PEM public key: PKCS#1 (`BEGIN RSA PUBLIC KEY`) or SPKI (`BEGIN PUBLIC KEY`).
    pub fn from_pem(pem_text: &str) -> Result<Self, CryptoError> {
        let block = pem::parse(pem_text)?;
        match block.label.as_str() {
            "RSA PUBLIC KEY" | "PUBLIC KEY" => Self::from_der(&block.der),
            other => Err(CryptoError::UnexpectedPemLabel {
                found: other.to_owned(),
                expected: "RSA PUBLIC KEY or PUBLIC KEY",
            }),
        }
    }

    /// Parses a postbox public key as the callback of postbox creation carries it
    /// (docs/protocol.md, "Postbox era"): a PKCS#1 PEM (`BEGIN RSA PUBLIC KEY`) or the bare base64 of a
    /// PKCS#1 `RSAPublicKey` DER. SPKI (`BEGIN PUBLIC KEY`) is refused, as the official
    /// SDK's `pkcs1-public` import refuses it.
    ///
    /// The value travels in a query string, so it is read forgivingly: line breaks, tabs
    /// and surrounding whitespace are dropped; a space inside the base64 is taken for a
    /// `+` that form-decoding turned into a space (and, if that does not decode, for a
    /// line break); a label spelled with `+` for spaces is accepted; padding may be
    /// missing.
    pub fn from_postbox_key(text: &str) -> Result<Self, CryptoError> {
        const BEGIN: &str = "-----BEGIN";
        const DASHES: &str = "-----";
        let text = text.trim();
        let body = match text.find(BEGIN) {
            None => text,
            Some(start) => {
                let after = &text[start + BEGIN.len()..];
                let label_end = after
                    .find(DASHES)
                    .ok_or(CryptoError::InvalidPem("unterminated BEGIN line"))?;
                let label = after[..label_end].replace('+', " ");
                let label = label.trim();
                if label != "RSA PUBLIC KEY" {
                    return Err(CryptoError::UnexpectedPemLabel {
                        found: label.to_owned(),
                        expected: "RSA PUBLIC KEY",
                    });
                }
                let rest = &after[label_end + DASHES.len()..];
                let end = rest
                    .find("-----END")
                    .ok_or(CryptoError::InvalidPem("no matching END line"))?;
                &rest[..end]
            }
        };
        let cleaned: String = body
            .trim()
            .chars()
            .filter(|c| !matches!(c, '\r' | '\n' | '\t'))
            .collect();
        if cleaned.is_empty() {
            return Err(CryptoError::InvalidPem("empty key"));
        }
        let as_plus = cleaned.replace(' ', "+");
        let without = cleaned.replace(' ', "");
        let der = decode_base64_lenient(&as_plus)
            .filter(|d| der::is_pkcs1_public_key(d))
            .or_else(|| decode_base64_lenient(&without).filter(|d| der::is_pkcs1_public_key(d)));
        match der {
            Some(der) => Self::from_der(&der),
            None => {
                match decode_base64_lenient(&as_plus).or_else(|| decode_base64_lenient(&without)) {
                    None => Err(CryptoError::Base64),
                    Some(_) => Err(CryptoError::KeyRejected(
                        "not a PKCS#1 RSAPublicKey (an SPKI key is not accepted here)".into(),
                    )),
                }
            }
        }
    }

    /// Parses DER, PKCS#1 `RSAPublicKey` or SPKI.
    pub fn from_der(der_bytes: &[u8]) -> Result<Self, CryptoError> {
        let key = imp::RsaPublic::from_der(der_bytes)?;
        let modulus: Arc<[u8]> = key.modulus().into();
        let bits = modulus.len() * 8;
        if bits < MIN_RSA_BITS {
            return Err(CryptoError::KeyTooShort { bits });
        }
        Ok(PublicKey {
            pkcs1: key.pkcs1_der().into(),
            exponent: key.exponent().into(),
            modulus,
            inner: Arc::new(key),
        })
    }

    /// Encrypts `plaintext` with RSAES-OAEP, SHA-1, MGF1-SHA-1 and an empty label (the
    /// data-file key wrap of the digi.me envelope). The result is as long as the modulus
    /// and differs on every call (OAEP is randomised).
    pub fn encrypt_oaep_sha1(&self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let max = self.modulus.len().saturating_sub(OAEP_SHA1_OVERHEAD);
        if plaintext.len() > max {
            return Err(CryptoError::MessageTooLong {
                len: plaintext.len(),
                max,
            });
        }
        self.inner.encrypt_oaep_sha1(plaintext)
    }

    /// Builds a key from its big-endian modulus and exponent (a JWK's `n` and `e`).
    pub fn from_components(n: &[u8], e: &[u8]) -> Result<Self, CryptoError> {
        if n.is_empty() || e.is_empty() {
            return Err(CryptoError::KeyRejected("empty modulus or exponent".into()));
        }
        Self::from_der(&der::rsa_public_key(n, e))
    }

    /// Modulus length in bits.
    pub fn bits(&self) -> usize {
        self.modulus.len() * 8
    }

    /// Big-endian modulus without leading zeros (JWK `n`).
    pub fn modulus(&self) -> &[u8] {
        &self.modulus
    }

    /// Big-endian public exponent without leading zeros (JWK `e`).
    pub fn exponent(&self) -> &[u8] {
        &self.exponent
    }

    /// DER PKCS#1 `RSAPublicKey`.
    pub fn to_pkcs1_der(&self) -> &[u8] {
        &self.pkcs1
    }

    /// PEM PKCS#1 (`BEGIN RSA PUBLIC KEY`), as digi.me serves it in a JWKS `pem`.
    pub fn to_pkcs1_pem(&self) -> String {
        pem::encode("RSA PUBLIC KEY", &self.pkcs1).to_string()
    }

    /// Verifies a PS512 signature (PSS, SHA-512, MGF1-SHA-512, salt of exactly 64 bytes).
    pub fn verify_ps512(&self, message: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        self.inner.verify_ps512(message, sig)
    }
}

/// Standard-alphabet base64, padding optional.
fn decode_base64_lenient(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT.decode(text.as_bytes()).ok()
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.pkcs1 == other.pkcs1
    }
}
impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(RSA-{})", self.bits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips_and_signatures_verify() {
        let key = PrivateKey::generate().unwrap();
        let pem_text = key.to_pkcs1_pem().unwrap();
        assert!(pem_text.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        let again = PrivateKey::from_pem(&pem_text).unwrap();
        assert_eq!(again.public_key(), key.public_key());

        let public = key.public_key();
        let from_pem = PublicKey::from_pem(&public.to_pkcs1_pem()).unwrap();
        let from_parts = PublicKey::from_components(public.modulus(), public.exponent()).unwrap();
        assert_eq!(from_pem, public);
        assert_eq!(from_parts, public);

        let sig = key.sign_ps512(b"message").unwrap();
        assert_eq!(sig.len(), 256);
        public.verify_ps512(b"message", &sig).unwrap();
        assert_eq!(
            public.verify_ps512(b"messagf", &sig),
            Err(CryptoError::BadSignature)
        );
        let other = PrivateKey::generate().unwrap().public_key();
        assert_eq!(
            other.verify_ps512(b"message", &sig),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn pkcs8_is_accepted() {
        let key = PrivateKey::generate().unwrap();
        let pkcs1 = key.inner.to_pkcs1_der().unwrap();
        let pem8 = pem::encode("PRIVATE KEY", &der::pkcs8_of_pkcs1(&pkcs1));
        assert_eq!(
            PrivateKey::from_pem(&pem8).unwrap().public_key(),
            key.public_key()
        );
    }

    #[test]
    fn bad_keys_are_typed_errors() {
        assert!(matches!(
            PrivateKey::from_pem("nope"),
            Err(CryptoError::InvalidPem(_))
        ));
        let garbage = pem::encode("RSA PRIVATE KEY", b"garbage");
        assert!(matches!(
            PrivateKey::from_pem(&garbage),
            Err(CryptoError::KeyRejected(_))
        ));
        let public = PrivateKey::generate().unwrap().public_key().to_pkcs1_pem();
        assert!(matches!(
            PrivateKey::from_pem(&public),
            Err(CryptoError::UnexpectedPemLabel { .. })
        ));
        // A 1024-bit modulus is refused.
        let short = der::rsa_public_key(&[0xc1; 128], &[1, 0, 1]);
        assert!(matches!(
            PublicKey::from_der(&short),
            Err(CryptoError::KeyTooShort { bits: 1024 }) | Err(CryptoError::KeyRejected(_))
        ));
    }

    #[test]
    fn oaep_sha1_round_trips_and_rejects_the_wrong_key() {
        let key = PrivateKey::generate().unwrap();
        let public = key.public_key();
        let dek = [7u8; 32];
        let wrapped = public.encrypt_oaep_sha1(&dek).unwrap();
        assert_eq!(wrapped.len(), 256);
        assert_ne!(public.encrypt_oaep_sha1(&dek).unwrap(), wrapped);
        assert_eq!(&key.decrypt_oaep_sha1(&wrapped).unwrap()[..], &dek);
        // A clone shares the parsed OAEP key.
        assert_eq!(&key.clone().decrypt_oaep_sha1(&wrapped).unwrap()[..], &dek);

        let other = PrivateKey::generate().unwrap();
        assert_eq!(
            other.decrypt_oaep_sha1(&wrapped),
            Err(CryptoError::KeyUnwrap)
        );
        assert_eq!(
            key.decrypt_oaep_sha1(&wrapped[1..]),
            Err(CryptoError::KeyUnwrap)
        );
        assert_eq!(key.decrypt_oaep_sha1(&[]), Err(CryptoError::KeyUnwrap));
        // 256 - 2 * 20 - 2 = 214 bytes at most.
        assert!(public.encrypt_oaep_sha1(&[0u8; 214]).is_ok());
        assert_eq!(
            public.encrypt_oaep_sha1(&[0u8; 215]),
            Err(CryptoError::MessageTooLong { len: 215, max: 214 })
        );
    }

    #[test]
    fn postbox_keys_in_every_wire_form() {
        use base64::Engine;
        let key = PrivateKey::generate().unwrap().public_key();
        let b64 = base64::engine::general_purpose::STANDARD.encode(key.to_pkcs1_der());
        assert!(b64.contains('+') || b64.contains('/'));
        let pem = key.to_pkcs1_pem();
        let forms = [
            pem.clone(),
            pem.replace('\n', "\r\n"),
            b64.clone(),
            format!("  {b64}\n"),
            b64.trim_end_matches('=').to_owned(),
            // Form-decoded: every `+` became a space, also in the label.
            pem.replace('+', " "),
            b64.replace('+', " "),
            // Percent-decoded only: the label kept its `+`.
            pem.replace(' ', "+"),
            // Line breaks turned into spaces.
            b64.as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect::<Vec<_>>()
                .join(" "),
        ];
        for form in &forms {
            assert_eq!(
                PublicKey::from_postbox_key(form).as_ref(),
                Ok(&key),
                "{form:?}"
            );
        }
        let spki = der::spki_of_pkcs1(key.to_pkcs1_der());
        assert_eq!(PublicKey::from_der(&spki).as_ref(), Ok(&key));
        let spki_b64 = base64::engine::general_purpose::STANDARD.encode(&spki);
        let spki_pem = pem::encode("PUBLIC KEY", &spki);
        assert!(matches!(
            PublicKey::from_postbox_key(&spki_b64),
            Err(CryptoError::KeyRejected(_))
        ));
        assert!(matches!(
            PublicKey::from_postbox_key(&spki_pem),
            Err(CryptoError::UnexpectedPemLabel { .. })
        ));
        for bad in [
            "",
            "   ",
            "!!!!",
            "AAAA",
            "-----BEGIN RSA PUBLIC KEY-----",
            "-----BEGIN RSA PUBLIC KEY-----\nAAAA\n",
            "-----BEGIN RSA PUBLIC KEY-----\n-----END RSA PUBLIC KEY-----",
            "-----BEGIN",
            "\u{e9}-----BEGIN \u{e9}-----",
        ] {
            assert!(PublicKey::from_postbox_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_redacts() {
        let key = PrivateKey::generate().unwrap();
        let shown = format!("{key:?}");
        assert_eq!(shown, "PrivateKey(RSA-2048, [redacted])");
    }
}
