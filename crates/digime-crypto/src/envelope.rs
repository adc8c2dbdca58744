//! The encrypted data-file envelope: files read from the digi.me API and files in
//! cloud storage.
//!
//! ```text
//! offset  length  content
//! 0       256     RSA-OAEP (SHA-1, MGF1-SHA-1, empty label) of a fresh 32-byte AES key
//! 256     16      AES initialisation vector
//! 272     N       AES-256-CBC ciphertext, PKCS#7 padded (N is a non-zero multiple of 16)
//! ```
//!
//! A file is valid only if its total length is at least [`MIN_LEN`] (288) and a multiple
//! of 16; that is checked before any cryptography. The RSA block fixes the contract key
//! at 2048 bits. There is no MAC: a damaged file is only detected when its key does not
//! unwrap or its padding is wrong, and a file truncated at a block boundary may decrypt
//! to a shorter plaintext. The plaintext is the data as the server stored it (usually
//! compressed); decompression is not this crate's job.
//!
//! [`Format::Sha512Prefixed`] is the format of API v1.0–v1.6 (SDK ≤ 7): the AES plaintext
//! is `SHA-512(data) ‖ data` and the minimum length is [`LEGACY_MIN_LEN`] (352).
//!
//! ```
//! use digime_crypto::{envelope::{self, Format}, PrivateKey};
//!
//! let key = PrivateKey::generate().unwrap();
//! let file = envelope::encrypt(&key.public_key(), b"hello", Format::Current).unwrap();
//! assert_eq!(file.len(), 288);
//!
//! // Whole buffer:
//! assert_eq!(envelope::decrypt(&key, &file, Format::Current).unwrap(), b"hello");
//!
//! // Incrementally, as the bytes arrive:
//! let mut decryptor = envelope::Decryptor::new(&key, Format::Current);
//! let mut out = Vec::new();
//! for chunk in file.chunks(100) {
//!     decryptor.update(chunk, &mut out).unwrap();
//! }
//! decryptor.finish(&mut out).unwrap();
//! assert_eq!(out, b"hello");
//! ```

use crate::backend::imp;
use crate::{CryptoError, PrivateKey, PublicKey, random};
use std::fmt;
use zeroize::Zeroizing;

/// Length of the RSA-OAEP block that wraps the data encryption key (2048-bit key).
pub const RSA_BLOCK_LEN: usize = 256;
/// Length of the AES-CBC initialisation vector that follows the RSA block.
pub const IV_LEN: usize = 16;
/// Length of the header: RSA block and IV.
pub const HEADER_LEN: usize = RSA_BLOCK_LEN + IV_LEN;
/// Shortest valid file: the header and one AES block (an empty plaintext).
pub const MIN_LEN: usize = HEADER_LEN + BLOCK_LEN;
/// Shortest valid file in the SHA-512-prefixed format: the header and the 64-byte
/// digest padded to 80 bytes.
pub const LEGACY_MIN_LEN: usize = HEADER_LEN + 80;
/// Length of the data encryption key (AES-256).
pub const DEK_LEN: usize = 32;

const BLOCK_LEN: usize = 16;
const DIGEST_LEN: usize = 64;
/// Ciphertext decrypted through a stack buffer while the legacy digest is still being
/// collected: 96 aligned bytes always yield at least 80 bytes of plaintext.
const DIGEST_STEP: usize = 96;

/// Which plaintext layout the envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Format {
    /// API v1.7 (SDK ≥ 8.0.0): the AES plaintext is the data itself.
    #[default]
    Current,
    /// SHA-512 prefixed (API v1.0–v1.6, SDK ≤ 7): the AES plaintext is
    /// `SHA-512(data) ‖ data`; the digest is checked and stripped.
    Sha512Prefixed,
}

impl Format {
    /// The shortest valid file in this format: [`MIN_LEN`] or [`LEGACY_MIN_LEN`].
    pub const fn min_len(self) -> usize {
        match self {
            Format::Current => MIN_LEN,
            Format::Sha512Prefixed => LEGACY_MIN_LEN,
        }
    }

    /// Whether a file of `len` bytes passes the size rule (at least [`Format::min_len`]
    /// and a multiple of 16).
    pub const fn is_valid_len(self, len: u64) -> bool {
        len >= self.min_len() as u64 && len.is_multiple_of(BLOCK_LEN as u64)
    }

    fn check_len(self, len: u64) -> Result<(), CryptoError> {
        if self.is_valid_len(len) {
            Ok(())
        } else {
            Err(CryptoError::InvalidFileSize { len })
        }
    }
}

/// The length of the file that [`encrypt`] or an [`Encryptor`] makes from
/// `plaintext_len` bytes (for a `Content-Length`). Saturates at `u64::MAX`.
pub fn encrypted_len(plaintext_len: u64, format: Format) -> u64 {
    let aes_plain = match format {
        Format::Current => plaintext_len,
        Format::Sha512Prefixed => plaintext_len.saturating_add(DIGEST_LEN as u64),
    };
    let blocks = aes_plain / BLOCK_LEN as u64 + 1;
    blocks
        .saturating_mul(BLOCK_LEN as u64)
        .saturating_add(HEADER_LEN as u64)
}

/// Decrypts a whole file. The size rule is checked before any cryptography.
///
/// Errors: [`CryptoError::InvalidFileSize`], [`CryptoError::KeyUnwrap`] (wrong private
/// key or corrupt RSA block), [`CryptoError::BadPadding`] (corrupt ciphertext) and, for
/// [`Format::Sha512Prefixed`], [`CryptoError::HashMismatch`].
pub fn decrypt(key: &PrivateKey, file: &[u8], format: Format) -> Result<Vec<u8>, CryptoError> {
    format.check_len(file.len() as u64)?;
    let mut out = Vec::new();
    let mut decryptor = Decryptor::new(key, format);
    decryptor.update(file, &mut out)?;
    decryptor.finish(&mut out)?;
    Ok(out)
}

/// Encrypts `plaintext` into a whole file, with a fresh random data encryption key and
/// IV. `key` must be a 2048-bit RSA key (the header has room for 256 bytes only).
pub fn encrypt(key: &PublicKey, plaintext: &[u8], format: Format) -> Result<Vec<u8>, CryptoError> {
    let mut encryptor = Encryptor::new(key, format)?;
    let mut out = Vec::new();
    match format {
        Format::Current => encryptor.update(plaintext, &mut out)?,
        // Straight through, without the copy the streaming path keeps.
        Format::Sha512Prefixed => {
            encryptor.emit_header(&mut out);
            encryptor.encrypt_into(&sha512(plaintext), &mut out)?;
            encryptor.encrypt_into(plaintext, &mut out)?;
            encryptor.pending = None;
        }
    }
    encryptor.finish(&mut out)?;
    Ok(out)
}

fn sha512(data: &[u8]) -> [u8; DIGEST_LEN] {
    let mut hasher = imp::Sha512::new();
    hasher.update(data);
    hasher.finish()
}

/// Grows `out` by `extra` zeroed bytes and returns where they start.
///
/// When the vector has to grow, a zeroed allocation is taken (for large sizes it comes
/// zeroed from the OS, so the bytes are not written twice) and the old contents copied,
/// doubling the capacity like `Vec` does.
fn grow_zeroed(out: &mut Vec<u8>, extra: usize) -> Result<usize, CryptoError> {
    let start = out.len();
    let need = start
        .checked_add(extra)
        .filter(|&n| n <= isize::MAX as usize)
        .ok_or(CryptoError::Backend)?;
    if need > out.capacity() {
        let cap = need.max(out.capacity().saturating_mul(2).min(isize::MAX as usize));
        let mut fresh = vec![0u8; cap];
        fresh[..start].copy_from_slice(out);
        fresh.truncate(need);
        *out = fresh;
    } else {
        out.resize(need, 0);
    }
    Ok(start)
}

/// Runs one cipher step over `input`, appending its output to `out` (room for a block
/// more than the input is made first). Returns where the output starts; on an error
/// `out` is as it was.
pub(crate) fn append_step(
    out: &mut Vec<u8>,
    input: &[u8],
    step: impl FnOnce(&[u8], &mut [u8]) -> Result<usize, CryptoError>,
) -> Result<usize, CryptoError> {
    let start = grow_zeroed(out, input.len() + BLOCK_LEN)?;
    match step(input, &mut out[start..]) {
        Ok(written) => {
            out.truncate(start + written);
            Ok(start)
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// Unwraps the data encryption key and sets up AES-256-CBC.
fn open_header(
    key: &PrivateKey,
    header: &[u8; HEADER_LEN],
) -> Result<imp::CbcDecrypt, CryptoError> {
    let dek = key.decrypt_oaep_sha1(&header[..RSA_BLOCK_LEN])?;
    if dek.len() != DEK_LEN {
        return Err(CryptoError::KeyUnwrap);
    }
    let mut key_bytes = Zeroizing::new([0u8; DEK_LEN]);
    key_bytes.copy_from_slice(&dek);
    let mut iv = [0u8; IV_LEN];
    iv.copy_from_slice(&header[RSA_BLOCK_LEN..]);
    imp::CbcDecrypt::new(&key_bytes, &iv)
}

/// The digest at the start of a SHA-512-prefixed plaintext, and the running hash of
/// what follows it.
struct DigestCheck {
    expected: [u8; DIGEST_LEN],
    have: usize,
    hasher: imp::Sha512,
}

impl DigestCheck {
    fn new() -> Self {
        DigestCheck {
            expected: [0; DIGEST_LEN],
            have: 0,
            hasher: imp::Sha512::new(),
        }
    }

    fn complete(&self) -> bool {
        self.have == DIGEST_LEN
    }

    /// Takes digest bytes from the front of `plain`, hashes the rest and returns it.
    fn absorb<'a>(&mut self, plain: &'a [u8]) -> &'a [u8] {
        let take = (DIGEST_LEN - self.have).min(plain.len());
        let (digest_part, rest) = plain.split_at(take);
        self.expected[self.have..self.have + take].copy_from_slice(digest_part);
        self.have += take;
        self.hasher.update(rest);
        rest
    }

    fn verify(self) -> Result<(), CryptoError> {
        let complete = self.complete();
        let actual = self.hasher.finish();
        if complete && crate::constant_time_eq(&actual, &self.expected) {
            Ok(())
        } else {
            Err(CryptoError::HashMismatch)
        }
    }
}

enum DecryptState {
    /// Collecting the RSA block and IV.
    Header {
        buf: Box<[u8; HEADER_LEN]>,
        have: usize,
    },
    /// Decrypting the AES part.
    Body {
        cipher: imp::CbcDecrypt,
        check: Option<Box<DigestCheck>>,
    },
    /// An earlier call failed; every later call returns this error.
    Failed(CryptoError),
}

/// Incremental decryption of a file whose bytes arrive in pieces split anywhere (a
/// download, a storage file).
///
/// Ciphertext is decrypted straight from the caller's slices; only a partial header and
/// a trailing partial AES block are buffered. Plaintext is appended to the caller's
/// vector. The last AES block (which holds the padding) is held back until
/// [`Decryptor::finish`] has checked it, so `update` never emits padding.
///
/// Unlike the Node SDK's decrypting stream, a stream shorter than [`MIN_LEN`] (or not
/// a multiple of 16 bytes) is an error from `finish`, never an empty success.
///
/// With [`Format::Sha512Prefixed`] the 64 digest bytes are not emitted, the data after
/// them is emitted as it is decrypted, and the digest is only checked by `finish`: if
/// `finish` fails, discard everything the decryptor produced.
///
/// After any error every further call returns an error.
pub struct Decryptor {
    key: PrivateKey,
    format: Format,
    bytes_in: u64,
    state: DecryptState,
}

impl Decryptor {
    /// A decryptor for one file. Keeps a (shared, cheap) clone of `key`.
    pub fn new(key: &PrivateKey, format: Format) -> Self {
        Decryptor {
            key: key.clone(),
            format,
            bytes_in: 0,
            state: DecryptState::Header {
                buf: Box::new([0; HEADER_LEN]),
                have: 0,
            },
        }
    }

    /// Feeds the next piece of the file (possibly empty) and appends whatever plaintext
    /// it completes to `out`.
    ///
    /// The key is unwrapped as soon as the 272-byte header is complete, so
    /// [`CryptoError::KeyUnwrap`] comes from here. On an error, `out` holds at most
    /// what earlier calls appended.
    pub fn update(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.bytes_in = self.bytes_in.saturating_add(input.len() as u64);
        let result = self.update_inner(input, out);
        if let Err(e) = &result {
            self.state = DecryptState::Failed(e.clone());
        }
        result
    }

    fn update_inner(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if let DecryptState::Header { buf, have } = &mut self.state {
            let take = (HEADER_LEN - *have).min(input.len());
            buf[*have..*have + take].copy_from_slice(&input[..take]);
            *have += take;
            input = &input[take..];
            if *have < HEADER_LEN {
                return Ok(());
            }
            let cipher = open_header(&self.key, buf)?;
            let check = match self.format {
                Format::Current => None,
                Format::Sha512Prefixed => Some(Box::new(DigestCheck::new())),
            };
            self.state = DecryptState::Body { cipher, check };
        }
        match &mut self.state {
            DecryptState::Body { cipher, check } => decrypt_body(cipher, check, input, out),
            DecryptState::Failed(e) => Err(e.clone()),
            DecryptState::Header { .. } => Err(CryptoError::Backend),
        }
    }

    /// Ends the file: checks the total length, the final block and its padding, and for
    /// [`Format::Sha512Prefixed`] the digest; appends the last plaintext bytes to `out`.
    ///
    /// Errors: [`CryptoError::InvalidFileSize`] (fewer than [`Format::min_len`] bytes
    /// arrived in all, or not a multiple of 16), [`CryptoError::BadPadding`],
    /// [`CryptoError::HashMismatch`], or the error an earlier `update` returned.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let state = std::mem::replace(&mut self.state, DecryptState::Failed(CryptoError::Backend));
        let (cipher, check) = match state {
            DecryptState::Failed(e) => return Err(e),
            DecryptState::Header { .. } => {
                return Err(CryptoError::InvalidFileSize { len: self.bytes_in });
            }
            DecryptState::Body { cipher, check } => (cipher, check),
        };
        self.format.check_len(self.bytes_in)?;
        let mut last = [0u8; 2 * BLOCK_LEN];
        let written = cipher.finish(&mut last)?;
        let plain = &last[..written];
        match check {
            None => out.extend_from_slice(plain),
            Some(mut check) => {
                let rest = check.absorb(plain);
                check.verify()?;
                out.extend_from_slice(rest);
            }
        }
        Ok(())
    }

    /// How many bytes of the file have been fed so far.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }
}

fn decrypt_body(
    cipher: &mut imp::CbcDecrypt,
    check: &mut Option<Box<DigestCheck>>,
    mut input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    if let Some(check) = check.as_deref_mut() {
        // Until the digest is out, go through a small buffer so it never reaches `out`.
        while !check.complete() && !input.is_empty() {
            let (step, rest) = input.split_at(input.len().min(DIGEST_STEP));
            let mut buf = [0u8; DIGEST_STEP + BLOCK_LEN];
            let written = cipher.update(step, &mut buf)?;
            out.extend_from_slice(check.absorb(&buf[..written]));
            input = rest;
        }
    }
    let start = append_step(out, input, |input, buf| cipher.update(input, buf))?;
    if let Some(check) = check.as_deref_mut() {
        check.hasher.update(&out[start..]);
    }
    Ok(())
}

impl fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            DecryptState::Header { .. } => "header",
            DecryptState::Body { .. } => "body",
            DecryptState::Failed(_) => "failed",
        };
        f.debug_struct("Decryptor")
            .field("format", &self.format)
            .field("bytes_in", &self.bytes_in)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

/// Incremental encryption into the envelope (a storage upload), with a fresh random
/// data encryption key and IV.
///
/// The first call to [`Encryptor::update`] or [`Encryptor::finish`] emits the 272-byte
/// header (RSA block and IV) before any ciphertext, so even an empty input gives a
/// valid 288-byte file. This deliberately departs from the Node SDK's encrypting
/// stream, which writes only the 16-byte padding block for an empty input (a file
/// nobody can decrypt).
///
/// With [`Format::Current`] the ciphertext streams out as the input arrives (the last,
/// padded block comes from `finish`). With [`Format::Sha512Prefixed`] the digest of all
/// the data precedes it, so the plaintext is buffered and everything after the header
/// is emitted by `finish`.
///
/// After any error every further call returns an error.
pub struct Encryptor {
    format: Format,
    header: Option<Box<[u8; HEADER_LEN]>>,
    cipher: imp::CbcEncrypt,
    /// The buffered plaintext of the SHA-512-prefixed format.
    pending: Option<Vec<u8>>,
    failed: Option<CryptoError>,
}

impl Encryptor {
    /// Draws a data encryption key and IV and wraps the key with `key` (RSA-OAEP,
    /// SHA-1). `key` must be 2048 bits: the header has room for a 256-byte block only.
    pub fn new(key: &PublicKey, format: Format) -> Result<Self, CryptoError> {
        let mut dek = Zeroizing::new([0u8; DEK_LEN]);
        random::fill(&mut dek[..])?;
        let mut iv = [0u8; IV_LEN];
        random::fill(&mut iv)?;
        let wrapped = key.encrypt_oaep_sha1(&dek[..])?;
        if wrapped.len() != RSA_BLOCK_LEN {
            return Err(CryptoError::KeyRejected(format!(
                "data files need a 2048-bit RSA key, not {} bits",
                key.bits()
            )));
        }
        let mut header = Box::new([0u8; HEADER_LEN]);
        header[..RSA_BLOCK_LEN].copy_from_slice(&wrapped);
        header[RSA_BLOCK_LEN..].copy_from_slice(&iv);
        // The IV is fresh from the system random source, never reused.
        let cipher = imp::CbcEncrypt::new(&dek, &iv)?;
        Ok(Encryptor {
            format,
            header: Some(header),
            cipher,
            pending: match format {
                Format::Current => None,
                Format::Sha512Prefixed => Some(Vec::new()),
            },
            failed: None,
        })
    }

    fn emit_header(&mut self, out: &mut Vec<u8>) {
        if let Some(header) = self.header.take() {
            out.extend_from_slice(&header[..]);
        }
    }

    fn encrypt_into(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let cipher = &mut self.cipher;
        append_step(out, input, |input, buf| cipher.update(input, buf)).map(drop)
    }

    /// Feeds the next piece of plaintext (possibly empty) and appends the output it
    /// completes to `out` (the header first, on the first call).
    pub fn update(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.emit_header(out);
        if let Some(pending) = &mut self.pending {
            pending.extend_from_slice(input);
            return Ok(());
        }
        let result = self.encrypt_into(input, out);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    /// Ends the file: appends the header if no `update` did, any buffered data, and the
    /// final padded block.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.emit_header(out);
        if let Some(pending) = self.pending.take() {
            self.encrypt_into(&sha512(&pending), out)?;
            self.encrypt_into(&pending, out)?;
        }
        let mut last = [0u8; 2 * BLOCK_LEN];
        let written = self.cipher.finish(&mut last)?;
        out.extend_from_slice(&last[..written]);
        Ok(())
    }
}

impl fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encryptor")
            .field("format", &self.format)
            .field("header_sent", &self.header.is_none())
            .field("failed", &self.failed.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        assert_eq!((HEADER_LEN, MIN_LEN, LEGACY_MIN_LEN), (272, 288, 352));
        assert_eq!(encrypted_len(0, Format::Current), 288);
        assert_eq!(encrypted_len(15, Format::Current), 288);
        assert_eq!(encrypted_len(16, Format::Current), 304);
        assert_eq!(encrypted_len(0, Format::Sha512Prefixed), 352);
        assert_eq!(encrypted_len(15, Format::Sha512Prefixed), 352);
        assert_eq!(encrypted_len(16, Format::Sha512Prefixed), 368);
        assert_eq!(encrypted_len(u64::MAX, Format::Sha512Prefixed), u64::MAX);
        assert!(Format::Current.is_valid_len(288));
        assert!(!Format::Current.is_valid_len(293));
        assert!(!Format::Current.is_valid_len(272));
        assert!(!Format::Sha512Prefixed.is_valid_len(336));
        assert!(Format::Sha512Prefixed.is_valid_len(352));
        assert_eq!(Format::default(), Format::Current);
    }

    #[test]
    fn grow_zeroed_appends_zeros_and_keeps_the_prefix() {
        let mut v = b"abc".to_vec();
        assert_eq!(grow_zeroed(&mut v, 5).unwrap(), 3);
        assert_eq!(v, b"abc\0\0\0\0\0");
        let cap = v.capacity();
        v.truncate(3);
        assert_eq!(grow_zeroed(&mut v, 2).unwrap(), 3);
        assert_eq!(v.capacity(), cap);
        assert_eq!(v, b"abc\0\0");
        let mut big = vec![1u8; 10];
        grow_zeroed(&mut big, 1000).unwrap();
        assert_eq!(big.len(), 1010);
        assert!(big[..10].iter().all(|&b| b == 1) && big[10..].iter().all(|&b| b == 0));
        assert!(grow_zeroed(&mut big, usize::MAX).is_err());
        assert!(grow_zeroed(&mut big, isize::MAX as usize).is_err());
        assert_eq!(big.len(), 1010);
    }

    #[test]
    fn the_streaming_types_can_move_between_threads() {
        fn send<T: Send>() {}
        fn send_sync<T: Send + Sync>() {}
        send::<Decryptor>();
        send::<Encryptor>();
        send_sync::<PrivateKey>();
        send_sync::<PublicKey>();
    }

    #[test]
    fn debug_shows_no_secrets() {
        let key = PrivateKey::generate().unwrap();
        let d = Decryptor::new(&key, Format::Current);
        assert_eq!(
            format!("{d:?}"),
            r#"Decryptor { format: Current, bytes_in: 0, state: "header", .. }"#
        );
        let e = Encryptor::new(&key.public_key(), Format::Sha512Prefixed).unwrap();
        assert_eq!(
            format!("{e:?}"),
            "Encryptor { format: Sha512Prefixed, header_sent: false, failed: false, .. }"
        );
    }
}
