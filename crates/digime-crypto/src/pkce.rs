//! PKCE as digi.me does it (docs/protocol.md, "PKCE"): the verifier is the base64url of 32 random
//! alphanumerics (43 characters), the S256 challenge hashes that verifier string.

use crate::{CryptoError, SecretString, b64url_encode, random, sha256};
use std::fmt;

/// A PKCE code verifier. Store it server-side against the user until the callback.
#[derive(Clone, PartialEq, Eq)]
pub struct CodeVerifier(SecretString);

impl CodeVerifier {
    /// A fresh verifier.
    pub fn generate() -> Result<Self, CryptoError> {
        let raw = random::alphanumeric(32)?;
        Ok(CodeVerifier(SecretString::new(b64url_encode(
            raw.as_bytes(),
        ))))
    }

    /// The verifier derived from a given raw 32-character string (for tests and vectors).
    pub fn from_raw(raw: &str) -> Self {
        CodeVerifier(SecretString::new(b64url_encode(raw.as_bytes())))
    }

    /// Wraps a verifier the app stored earlier.
    pub fn new(verifier: impl Into<String>) -> Self {
        CodeVerifier(SecretString::new(verifier))
    }

    /// The verifier string, as it goes into the code-exchange JWT.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The S256 code challenge: base64url(SHA-256(verifier)).
    pub fn challenge(&self) -> String {
        challenge_of(self.0.expose())
    }
}

/// The S256 challenge of any verifier string (what a server recomputes).
pub fn challenge_of(verifier: &str) -> String {
    b64url_encode(&sha256(verifier.as_bytes()))
}

impl fmt::Debug for CodeVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeVerifier([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_example_of_the_spec() {
        let v = CodeVerifier::from_raw("k3J9aZ0qLmP4sT7vW1xY2bC5dE8fG6hN");
        assert_eq!(v.expose(), "azNKOWFaMHFMbVA0c1Q3dlcxeFkyYkM1ZEU4Zkc2aE4");
        assert_eq!(v.challenge(), "79y6ZKsb-ikY5squK-IPMqaUd-fivBR9uTaj5JjhljU");
    }

    #[test]
    fn generated_verifiers_are_43_chars_and_differ() {
        let a = CodeVerifier::generate().unwrap();
        let b = CodeVerifier::generate().unwrap();
        assert_eq!(a.expose().len(), 43);
        assert_ne!(a, b);
        assert!(!format!("{a:?}").contains(a.expose()));
    }
}
