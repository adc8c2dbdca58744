//! Bare AES-256-CBC with PKCS#7 padding, with a key and IV the caller supplies: the
//! cipher of the postbox envelope (docs/protocol.md, "Postbox era"), where one random key and IV encrypt
//! both the file and its metadata, and the ciphertext travels without any header.
//!
//! Whole buffers ([`encrypt`], [`decrypt`]) and incremental ([`CbcEncryptor`],
//! [`CbcDecryptor`]) for inputs split anywhere:
//!
//! ```
//! use digime_crypto::cbc::{self, CbcDecryptor, CbcEncryptor};
//!
//! let (key, iv) = ([7u8; 32], [9u8; 16]);
//! let whole = cbc::encrypt(&key, &iv, b"hello, postbox").unwrap();
//! assert_eq!(whole.len() as u64, cbc::encrypted_len(14));
//!
//! let mut enc = CbcEncryptor::new(&key, &iv).unwrap();
//! let mut out = Vec::new();
//! enc.update(b"hello, ", &mut out).unwrap();
//! enc.update(b"postbox", &mut out).unwrap();
//! enc.finish(&mut out).unwrap();
//! assert_eq!(out, whole);
//!
//! let mut dec = CbcDecryptor::new(&key, &iv).unwrap();
//! let mut plain = Vec::new();
//! for piece in whole.chunks(5) {
//!     dec.update(piece, &mut plain).unwrap();
//! }
//! dec.finish(&mut plain).unwrap();
//! assert_eq!(plain, b"hello, postbox");
//! ```
//!
//! The IV is the caller's: never encrypt two different messages under the same key and
//! IV unless a protocol demands it (the postbox envelope does, for file and metadata).
//! There is no integrity protection.

use crate::CryptoError;
use crate::backend::imp;
use crate::envelope::append_step;
use std::fmt;

/// AES-256 key length.
pub const KEY_LEN: usize = 32;
/// CBC IV length (one AES block).
pub const IV_LEN: usize = 16;
/// AES block length.
pub const BLOCK_LEN: usize = 16;

/// The ciphertext length of `plaintext_len` bytes: `16·(⌊n/16⌋+1)` (a full padding
/// block when `n` is a multiple of 16). Saturates at `u64::MAX`.
pub fn encrypted_len(plaintext_len: u64) -> u64 {
    (plaintext_len / BLOCK_LEN as u64 + 1).saturating_mul(BLOCK_LEN as u64)
}

/// Encrypts a whole buffer.
pub fn encrypt(
    key: &[u8; KEY_LEN],
    iv: &[u8; IV_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut enc = CbcEncryptor::new(key, iv)?;
    let mut out = Vec::with_capacity(plaintext.len() + BLOCK_LEN);
    enc.update(plaintext, &mut out)?;
    enc.finish(&mut out)?;
    Ok(out)
}

/// Decrypts a whole buffer and strips the padding.
///
/// Errors: [`CryptoError::CiphertextLength`] (empty or not a multiple of 16) before any
/// cryptography, [`CryptoError::BadPadding`] (wrong key or IV, or corrupt data).
pub fn decrypt(
    key: &[u8; KEY_LEN],
    iv: &[u8; IV_LEN],
    ciphertext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    check_len(ciphertext.len() as u64)?;
    let mut dec = CbcDecryptor::new(key, iv)?;
    let mut out = Vec::with_capacity(ciphertext.len());
    dec.update(ciphertext, &mut out)?;
    dec.finish(&mut out)?;
    Ok(out)
}

fn check_len(len: u64) -> Result<(), CryptoError> {
    if len == 0 || !len.is_multiple_of(BLOCK_LEN as u64) {
        return Err(CryptoError::CiphertextLength { len });
    }
    Ok(())
}

/// Incremental AES-256-CBC/PKCS#7 encryption. Ciphertext is appended to the caller's
/// vector as whole blocks complete; [`CbcEncryptor::finish`] appends the final, padded
/// block. After an error every further call returns an error.
pub struct CbcEncryptor {
    cipher: imp::CbcEncrypt,
    failed: Option<CryptoError>,
}

impl CbcEncryptor {
    /// An encryptor with this key and IV.
    pub fn new(key: &[u8; KEY_LEN], iv: &[u8; IV_LEN]) -> Result<Self, CryptoError> {
        // The caller owns the IV (the postbox protocol reuses it for the metadata).
        let cipher = imp::CbcEncrypt::new(key, iv)?;
        Ok(CbcEncryptor {
            cipher,
            failed: None,
        })
    }

    /// Feeds the next piece of plaintext (possibly empty) and appends the ciphertext it
    /// completes to `out`.
    pub fn update(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let cipher = &mut self.cipher;
        let result = append_step(out, input, |input, buf| cipher.update(input, buf)).map(drop);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    /// Ends the message: appends the final block with its padding (16 bytes).
    pub fn finish(self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let mut last = [0u8; 2 * BLOCK_LEN];
        let written = self.cipher.finish(&mut last)?;
        out.extend_from_slice(&last[..written]);
        Ok(())
    }
}

impl fmt::Debug for CbcEncryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CbcEncryptor")
            .field("failed", &self.failed.is_some())
            .finish_non_exhaustive()
    }
}

/// Incremental AES-256-CBC/PKCS#7 decryption of ciphertext split anywhere.
///
/// The last complete block (which holds the padding) is held back until
/// [`CbcDecryptor::finish`] has checked it, so `update` never emits padding. After an
/// error every further call returns an error.
pub struct CbcDecryptor {
    cipher: imp::CbcDecrypt,
    bytes_in: u64,
    failed: Option<CryptoError>,
}

impl CbcDecryptor {
    /// A decryptor with this key and IV.
    pub fn new(key: &[u8; KEY_LEN], iv: &[u8; IV_LEN]) -> Result<Self, CryptoError> {
        let cipher = imp::CbcDecrypt::new(key, iv)?;
        Ok(CbcDecryptor {
            cipher,
            bytes_in: 0,
            failed: None,
        })
    }

    /// Feeds the next piece of ciphertext (possibly empty) and appends the plaintext it
    /// completes to `out` (never the last block: that waits for `finish`).
    pub fn update(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.bytes_in = self.bytes_in.saturating_add(input.len() as u64);
        let cipher = &mut self.cipher;
        let result = append_step(out, input, |input, buf| cipher.update(input, buf)).map(drop);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    /// Ends the message: checks the total length and the padding, and appends the last
    /// plaintext bytes to `out`.
    ///
    /// Errors: [`CryptoError::CiphertextLength`] (no ciphertext, or not a multiple of
    /// 16), [`CryptoError::BadPadding`], or the error an earlier `update` returned.
    pub fn finish(self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        check_len(self.bytes_in)?;
        let mut last = [0u8; 2 * BLOCK_LEN];
        let written = self.cipher.finish(&mut last)?;
        out.extend_from_slice(&last[..written]);
        Ok(())
    }

    /// How many ciphertext bytes have been fed so far.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }
}

impl fmt::Debug for CbcDecryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CbcDecryptor")
            .field("bytes_in", &self.bytes_in)
            .field("failed", &self.failed.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // docs/protocol.md, "Postbox era"
    const K: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const IV: &str = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
    const M: &str = r#"{"mimeType":"application/json","accounts":[{"accountId":"acc-001"}],"reference":["receipt-42.json"],"tags":["receipt"]}"#;
    const C_META_B64: &str = "i8niRv+G1DqK9EDlWJjMRzY3C+0tmudymaJHQ9f3uFUHoidZkNcBEHRPXux8D+WZDeHNDNWZvjz9EG97CCj9Y2QjZoIGMW7JYJhhPcAzx66keVFQ56QKeEUeNp6rNBRMnvYRiqbu3uYNRj+KizCjQtfIW1p7O5QjHbINQofRVqc=";

    fn key_iv() -> ([u8; 32], [u8; 16]) {
        (hex(K).try_into().unwrap(), hex(IV).try_into().unwrap())
    }

    #[test]
    fn spec_vectors_byte_for_byte() {
        let (k, iv) = key_iv();
        let c_file = encrypt(&k, &iv, br#"{"total":12.5}"#).unwrap();
        assert_eq!(c_file, hex("4262c1dc1b9042db3250ff181be6b436"));
        assert_eq!(M.len(), 119);
        let c_meta = encrypt(&k, &iv, M.as_bytes()).unwrap();
        assert_eq!(c_meta.len(), 128);
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(&c_meta),
            C_META_B64
        );
        assert_eq!(decrypt(&k, &iv, &c_file).unwrap(), br#"{"total":12.5}"#);
        assert_eq!(decrypt(&k, &iv, &c_meta).unwrap(), M.as_bytes());
    }

    #[test]
    fn incremental_matches_whole_for_every_split() {
        let (k, iv) = key_iv();
        let plain: Vec<u8> = (0..100u8).collect();
        let whole = encrypt(&k, &iv, &plain).unwrap();
        assert_eq!(whole.len() as u64, encrypted_len(100));
        for split in [1usize, 3, 15, 16, 17, 33, 100] {
            let mut enc = CbcEncryptor::new(&k, &iv).unwrap();
            let mut out = Vec::new();
            for piece in plain.chunks(split) {
                enc.update(piece, &mut out).unwrap();
                assert_eq!(out.len() % 16, 0);
            }
            enc.update(&[], &mut out).unwrap();
            enc.finish(&mut out).unwrap();
            assert_eq!(out, whole, "split {split}");

            let mut dec = CbcDecryptor::new(&k, &iv).unwrap();
            let mut back = Vec::new();
            for piece in whole.chunks(split) {
                dec.update(piece, &mut back).unwrap();
                // The padding block is never emitted before finish.
                assert!(back.len() <= 96, "split {split}: {}", back.len());
            }
            assert_eq!(dec.bytes_in(), 112);
            dec.finish(&mut back).unwrap();
            assert_eq!(back, plain, "split {split}");
        }
    }

    #[test]
    fn empty_and_block_aligned_inputs_get_a_padding_block() {
        let (k, iv) = key_iv();
        assert_eq!(encrypt(&k, &iv, b"").unwrap().len(), 16);
        assert_eq!(encrypt(&k, &iv, &[0u8; 16]).unwrap().len(), 32);
        assert_eq!(encrypted_len(0), 16);
        assert_eq!(encrypted_len(15), 16);
        assert_eq!(encrypted_len(16), 32);
        assert_eq!(encrypted_len(u64::MAX), u64::MAX);
        assert_eq!(
            decrypt(&k, &iv, &encrypt(&k, &iv, b"").unwrap()).unwrap(),
            b""
        );
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let (k, iv) = key_iv();
        assert_eq!(
            decrypt(&k, &iv, b""),
            Err(CryptoError::CiphertextLength { len: 0 })
        );
        assert_eq!(
            decrypt(&k, &iv, &[0u8; 17]),
            Err(CryptoError::CiphertextLength { len: 17 })
        );
        let c = encrypt(&k, &iv, b"secret data").unwrap();
        let mut wrong = k;
        wrong[0] ^= 1;
        assert_eq!(decrypt(&wrong, &iv, &c), Err(CryptoError::BadPadding));
        let mut dec = CbcDecryptor::new(&k, &iv).unwrap();
        let mut out = Vec::new();
        dec.update(&c[..10], &mut out).unwrap();
        assert_eq!(
            dec.finish(&mut out),
            Err(CryptoError::CiphertextLength { len: 10 })
        );
        let dec = CbcDecryptor::new(&k, &iv).unwrap();
        assert_eq!(
            dec.finish(&mut out),
            Err(CryptoError::CiphertextLength { len: 0 })
        );
        assert!(out.is_empty());
    }

    #[test]
    fn debug_shows_no_key() {
        let (k, iv) = key_iv();
        let e = CbcEncryptor::new(&k, &iv).unwrap();
        assert_eq!(format!("{e:?}"), "CbcEncryptor { failed: false, .. }");
        let d = CbcDecryptor::new(&k, &iv).unwrap();
        assert_eq!(
            format!("{d:?}"),
            "CbcDecryptor { bytes_in: 0, failed: false, .. }"
        );
        fn send<T: Send>() {}
        send::<CbcEncryptor>();
        send::<CbcDecryptor>();
    }
}
