//! Cryptography for the digi.me Rust SDK.
//!
//! Scope: pure functions with no IO and no clock.
//!
//! * In: RSA key handling (PKCS#1 and PKCS#8 PEM, public keys as PKCS#1, SPKI or
//!   modulus/exponent), PS512 compact JWS signing and verification (RSASSA-PSS,
//!   SHA-512, MGF1-SHA-512, 64-byte salt, keys of at least 2048 bits), request
//!   nonces, PKCE (S256), secrets that zeroize and never print, and the data-file
//!   envelope ([`envelope`]: RSA-OAEP-SHA1-wrapped AES-256-CBC, whole buffers and
//!   incremental, current and SHA-512-prefixed formats), and bare AES-256-CBC with a
//!   caller-supplied key and IV ([`cbc`], the postbox envelope of the legacy write
//!   path).
//! * Out: anything that talks to the network, JSON claim handling (that is the
//!   protocol crate's job), decompression of decrypted files.
//!
//! Keys are parsed once and kept, because every API call signs a JWT (and every data
//! file unwraps a key).
//!
//! # Backends
//!
//! Two backends do the cryptography behind the same API, chosen by cargo feature:
//!
//! | Feature | Backend | Needs |
//! |---|---|---|
//! | `aws-lc` (default) | [aws-lc-rs](https://docs.rs/aws-lc-rs): AWS-LC's assembly, as fast as OpenSSL | a C compiler (and CMake on some targets) |
//! | `rustcrypto` | the RustCrypto crates `rsa`, `sha1`, `sha2`, `aes`, `cbc`, with `getrandom` | Rust only |
//!
//! For a tree with no C, turn the default off:
//!
//! ```toml
//! digime-crypto = { version = "0.1", default-features = false, features = ["rustcrypto"] }
//! ```
//!
//! (`digime-protocol` forwards both features under the same names.) The features are
//! additive: with both on, aws-lc-rs serves every call, so a crate that asks for
//! `rustcrypto` still builds beside one that keeps the default. With neither, the crate
//! does not compile. [`BACKEND`] says which one is in use. The crate's README compares
//! their speed.
//!
//! ```
//! use digime_crypto::{jws, PrivateKey};
//!
//! let key = PrivateKey::generate().unwrap();
//! let token = jws::sign(br#"{"alg":"PS512","typ":"JWT"}"#, br#"{"a":1}"#, &key).unwrap();
//! let parsed = jws::Compact::parse(&token).unwrap();
//! parsed.verify(&key.public_key()).unwrap();
//! assert_eq!(parsed.payload().unwrap(), br#"{"a":1}"#);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod backend;
pub mod cbc;
mod der;
pub mod envelope;
mod error;
pub mod jws;
mod keys;
pub mod pem;
pub mod pkce;
pub mod random;
mod secret;

pub use error::CryptoError;

/// The README's examples, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The backend serving this build: `"aws-lc-rs"` or `"rustcrypto"`.
pub const BACKEND: &str = backend::imp::NAME;

/// Both backends, when both features are on: for this crate's own cross-checking tests
/// and side-by-side benchmarks. Not part of the API: no semver promise.
#[cfg(all(feature = "aws-lc", feature = "rustcrypto"))]
#[doc(hidden)]
pub mod __backends {
    pub use crate::backend::{aws_lc, rust_crypto};
}
pub use keys::{MIN_RSA_BITS, PrivateKey, PublicKey};
pub use pkce::CodeVerifier;
pub use secret::SecretString;

/// Base64url without padding, as JOSE uses it.
pub fn b64url_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding; padding or other alphabets are rejected.
pub fn b64url_decode(text: &str) -> Result<Vec<u8>, CryptoError> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| CryptoError::Base64)
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    backend::imp::sha256(data)
}

/// Compares two byte strings in constant time (for codes, verifiers and the like).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    backend::imp::constant_time_eq(a, b)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_backend_in_use_is_the_documented_one() {
        // aws-lc-rs whenever its feature is on, rustcrypto only without it.
        let expected = if cfg!(feature = "aws-lc") {
            "aws-lc-rs"
        } else {
            "rustcrypto"
        };
        assert_eq!(super::BACKEND, expected);
        assert_eq!(super::sha256(b"abc")[..4], [0xba, 0x78, 0x16, 0xbf]);
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"ab"));
    }
}
