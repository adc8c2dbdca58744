use thiserror::Error;

/// What went wrong in a cryptographic operation. Never carries key material.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// The text is not a PEM block this crate understands.
    #[error("invalid PEM: {0}")]
    InvalidPem(&'static str),
    /// The PEM block is encrypted; digi.me contract keys are plain PKCS#1 or PKCS#8.
    #[error("encrypted PEM keys are not supported; decrypt the key first")]
    EncryptedKey,
    /// The PEM label names something other than the expected kind of key.
    #[error("unexpected PEM label {found:?}; expected {expected}")]
    UnexpectedPemLabel {
        /// The label that was found.
        found: String,
        /// What was expected instead.
        expected: &'static str,
    },
    /// The key bytes do not encode an acceptable RSA key.
    #[error("the RSA key was rejected: {0}")]
    KeyRejected(String),
    /// The RSA key is shorter than 2048 bits.
    #[error("RSA key of {bits} bits is too short; at least 2048 bits are required")]
    KeyTooShort {
        /// The key's modulus length in bits.
        bits: usize,
    },
    /// Base64 or base64url text that does not decode.
    #[error("invalid base64")]
    Base64,
    /// A compact JWS that is not three base64url segments.
    #[error("malformed JWS: {0}")]
    MalformedJws(&'static str),
    /// The signature does not verify with the given key (PS512).
    #[error("signature verification failed")]
    BadSignature,
    /// The operating system's random source failed, or signing failed internally.
    #[error("cryptographic backend failure")]
    Backend,
    /// An encrypted data file (or stream) whose total length breaks the envelope rule:
    /// at least 288 bytes (352 for the SHA-512-prefixed format) and a multiple of 16.
    #[error("file size not valid: {len}")]
    InvalidFileSize {
        /// The total number of bytes seen.
        len: u64,
    },
    /// RSA-OAEP decryption of the file key failed, or it did not give a 32-byte AES key.
    #[error("could not unwrap the file's data encryption key (probably the wrong private key)")]
    KeyUnwrap,
    /// The last AES-CBC block or its PKCS#7 padding is invalid: a corrupt or truncated
    /// file, or a data encryption key that does not belong to it.
    #[error("bad decrypt: invalid final block or PKCS#7 padding")]
    BadPadding,
    /// AES-CBC ciphertext that is empty or not a whole number of 16-byte blocks.
    #[error("ciphertext length {len} is not a non-zero multiple of 16")]
    CiphertextLength {
        /// The number of ciphertext bytes seen.
        len: u64,
    },
    /// The SHA-512 digest at the start of a SHA-512-prefixed file does not match its data.
    #[error("hash is not valid")]
    HashMismatch,
    /// The message is too long for RSA-OAEP (SHA-1) with this key.
    #[error("message of {len} bytes is too long for RSA-OAEP with this key (at most {max})")]
    MessageTooLong {
        /// The length of the message.
        len: usize,
        /// The longest message the key can encrypt.
        max: usize,
    },
}
