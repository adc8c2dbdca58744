//! The pure-Rust backend (feature `rustcrypto`): the RustCrypto crates `rsa`, `sha1`,
//! `sha2`, `aes` and `cbc`, with randomness from `getrandom`. No C compiler, no
//! assembly outside Rust; builds wherever Rust does.
//!
//! AES uses the CPU's AES instructions when they are there (detected at run time) and
//! a constant-time software AES otherwise. RSA private operations are blinded.

use crate::CryptoError;
use aes::Aes256;
use aes::cipher::array::Array;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use getrandom::SysRng;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::pss::{Signature, SigningKey, VerifyingKey};
use rsa::signature::{RandomizedSigner, SignatureEncoding, Verifier};
use rsa::traits::PublicKeyParts;
use sha2::Digest;
use zeroize::{Zeroize, Zeroizing};

/// The backend's name, as [`crate::BACKEND`] gives it.
pub const NAME: &str = "rustcrypto";

/// PS512's salt: as long as the SHA-512 digest.
const SALT_LEN: usize = 64;
const BLOCK: usize = 16;

fn rejected(e: impl std::fmt::Display) -> CryptoError {
    CryptoError::KeyRejected(e.to_string())
}

/// A parsed RSA private key.
pub struct RsaPrivate {
    /// Owns the key; the PSS parameters ride along.
    signing: SigningKey<sha2::Sha512>,
}

impl RsaPrivate {
    fn new(key: rsa::PrivateKey) -> Self {
        RsaPrivate {
            signing: SigningKey::new_with_salt_len(key, SALT_LEN),
        }
    }

    fn key(&self) -> &rsa::PrivateKey {
        self.signing.as_ref()
    }

    /// Parses a DER PKCS#1 `RSAPrivateKey`.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self, CryptoError> {
        rsa::PrivateKey::from_pkcs1_der(der)
            .map(Self::new)
            .map_err(rejected)
    }

    /// Parses a DER PKCS#8 `PrivateKeyInfo`.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, CryptoError> {
        rsa::PrivateKey::from_pkcs8_der(der)
            .map(Self::new)
            .map_err(rejected)
    }

    /// A fresh 2048-bit key.
    pub fn generate() -> Result<Self, CryptoError> {
        rsa::PrivateKey::new(&mut SysRng, 2048)
            .map(Self::new)
            .map_err(|_| CryptoError::Backend)
    }

    /// Modulus length in bytes.
    pub fn modulus_len(&self) -> usize {
        self.key().size()
    }

    /// RSASSA-PSS, SHA-512, MGF1-SHA-512, 64-byte salt.
    pub fn sign_ps512(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let sig: Signature = self
            .signing
            .try_sign_with_rng(&mut SysRng, message)
            .map_err(|_| CryptoError::Backend)?;
        Ok(sig.to_vec())
    }

    /// RSAES-OAEP, SHA-1, MGF1-SHA-1, empty label. Every failure is `KeyUnwrap`.
    pub fn decrypt_oaep_sha1(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.key()
            .oaep_decrypt_with_rng::<sha1::Sha1, _>(&mut SysRng, ciphertext)
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::KeyUnwrap)
    }

    /// The public half, as DER (PKCS#1 `RSAPublicKey`).
    pub fn public_der(&self) -> Vec<u8> {
        let public = self.key().to_public_key();
        crate::der::rsa_public_key(&public.n_bytes(), &public.e_bytes())
    }

    /// The key as DER PKCS#1 `RSAPrivateKey`.
    pub fn to_pkcs1_der(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let doc = self
            .key()
            .to_pkcs1_der()
            .map_err(|_| CryptoError::Backend)?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }
}

/// A parsed RSA public key.
pub struct RsaPublic {
    verifying: VerifyingKey<sha2::Sha512>,
}

impl RsaPublic {
    /// Parses DER: PKCS#1 `RSAPublicKey` or SPKI.
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        let key = match rsa::PublicKey::from_pkcs1_der(der) {
            Ok(key) => key,
            Err(pkcs1) => rsa::PublicKey::from_public_key_der(der).map_err(|spki| {
                // Say why in the form the bytes most look like.
                if crate::der::is_pkcs1_public_key(der) {
                    rejected(pkcs1)
                } else {
                    rejected(spki)
                }
            })?,
        };
        Ok(RsaPublic {
            verifying: VerifyingKey::new_with_salt_len(key, SALT_LEN),
        })
    }

    fn key(&self) -> &rsa::PublicKey {
        self.verifying.as_ref()
    }

    /// Big-endian modulus without leading zeros.
    pub fn modulus(&self) -> Vec<u8> {
        self.key().n_bytes().into_vec()
    }

    /// Big-endian public exponent without leading zeros.
    pub fn exponent(&self) -> Vec<u8> {
        self.key().e_bytes().into_vec()
    }

    /// DER PKCS#1 `RSAPublicKey`.
    pub fn pkcs1_der(&self) -> Vec<u8> {
        crate::der::rsa_public_key(&self.modulus(), &self.exponent())
    }

    /// Verifies PS512 (salt of exactly 64 bytes). Every failure is `BadSignature`.
    pub fn verify_ps512(&self, message: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        // A signature is exactly as long as the modulus (RFC 8017, 8.1.2 step 1).
        if sig.len() != self.key().size() {
            return Err(CryptoError::BadSignature);
        }
        let sig = Signature::try_from(sig).map_err(|_| CryptoError::BadSignature)?;
        self.verifying
            .verify(message, &sig)
            .map_err(|_| CryptoError::BadSignature)
    }

    /// RSAES-OAEP, SHA-1, MGF1-SHA-1, empty label; the caller has checked the length.
    pub fn encrypt_oaep_sha1(&self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.key()
            .oaep_encrypt_with_rng::<sha1::Sha1, _>(&mut SysRng, plaintext)
            .map_err(|_| CryptoError::Backend)
    }
}

type Block = Array<u8, aes::cipher::consts::U16>;

/// Splits a block-aligned byte slice into AES blocks.
fn blocks(bytes: &[u8]) -> &[Block] {
    let (blocks, rest) = Array::slice_as_chunks(bytes);
    debug_assert!(rest.is_empty());
    blocks
}

fn blocks_mut(bytes: &mut [u8]) -> &mut [Block] {
    let (blocks, rest) = Array::slice_as_chunks_mut(bytes);
    debug_assert!(rest.is_empty());
    blocks
}

/// Streaming AES-256-CBC encryption with PKCS#7 padding.
pub struct CbcEncrypt {
    /// Boxed: the key schedule is half a kilobyte.
    mode: Box<cbc::Encryptor<Aes256>>,
    /// The start of a block still being filled.
    partial: [u8; BLOCK],
    have: usize,
}

impl CbcEncrypt {
    /// An encryptor with this key and IV.
    pub fn new(key: &[u8; 32], iv: &[u8; 16]) -> Result<Self, CryptoError> {
        Ok(CbcEncrypt {
            mode: Box::new(cbc::Encryptor::new(&(*key).into(), &(*iv).into())),
            partial: [0; BLOCK],
            have: 0,
        })
    }

    /// Encrypts `input` into `out` (at least `input.len() + 16` long); returns how many
    /// bytes were written (whole blocks only).
    pub fn update(&mut self, mut input: &[u8], out: &mut [u8]) -> Result<usize, CryptoError> {
        let mut written = 0;
        if self.have > 0 {
            let take = (BLOCK - self.have).min(input.len());
            self.partial[self.have..self.have + take].copy_from_slice(&input[..take]);
            self.have += take;
            input = &input[take..];
            if self.have < BLOCK {
                return Ok(0);
            }
            let block = Block::from(self.partial);
            self.mode
                .encrypt_block_b2b(&block, &mut blocks_mut(&mut out[..BLOCK])[0]);
            self.have = 0;
            written = BLOCK;
        }
        let whole = input.len() - input.len() % BLOCK;
        let (aligned, rest) = input.split_at(whole);
        self.mode
            .encrypt_blocks_b2b(
                blocks(aligned),
                blocks_mut(&mut out[written..written + whole]),
            )
            .map_err(|_| CryptoError::Backend)?;
        written += whole;
        self.partial[..rest.len()].copy_from_slice(rest);
        self.have = rest.len();
        Ok(written)
    }

    /// The final, padded block (16 bytes) into `out`; returns its length.
    pub fn finish(mut self, out: &mut [u8; 32]) -> Result<usize, CryptoError> {
        let pad = (BLOCK - self.have) as u8;
        self.partial[self.have..].fill(pad);
        let block = Block::from(self.partial);
        self.mode
            .encrypt_block_b2b(&block, &mut blocks_mut(&mut out[..BLOCK])[0]);
        self.partial.zeroize();
        Ok(BLOCK)
    }
}

impl Drop for CbcEncrypt {
    fn drop(&mut self) {
        self.partial.zeroize();
    }
}

/// Streaming AES-256-CBC decryption with PKCS#7 padding: the last block is held back
/// until `finish` has checked its padding.
pub struct CbcDecrypt {
    /// Boxed: the key schedule is half a kilobyte.
    mode: Box<cbc::Decryptor<Aes256>>,
    /// Ciphertext not yet decrypted: a partial block, or the last whole block seen.
    held: [u8; BLOCK],
    have: usize,
}

impl CbcDecrypt {
    /// A decryptor with this key and IV.
    pub fn new(key: &[u8; 32], iv: &[u8; 16]) -> Result<Self, CryptoError> {
        Ok(CbcDecrypt {
            mode: Box::new(cbc::Decryptor::new(&(*key).into(), &(*iv).into())),
            held: [0; BLOCK],
            have: 0,
        })
    }

    /// Decrypts `input` into `out` (at least `input.len() + 16` long); returns how many
    /// bytes were written (never the last block).
    pub fn update(&mut self, mut input: &[u8], out: &mut [u8]) -> Result<usize, CryptoError> {
        if self.have + input.len() <= BLOCK {
            self.held[self.have..self.have + input.len()].copy_from_slice(input);
            self.have += input.len();
            return Ok(0);
        }
        // More than a block in all, so at least one byte stays held after this.
        let mut written = 0;
        if self.have > 0 {
            let take = BLOCK - self.have;
            self.held[self.have..].copy_from_slice(&input[..take]);
            input = &input[take..];
            let block = Block::from(self.held);
            self.mode
                .decrypt_block_b2b(&block, &mut blocks_mut(&mut out[..BLOCK])[0]);
            written = BLOCK;
        }
        // Keep 1 to 16 bytes back: the last block may be the padded one.
        let keep = (input.len() - 1) % BLOCK + 1;
        let (aligned, rest) = input.split_at(input.len() - keep);
        self.mode
            .decrypt_blocks_b2b(
                blocks(aligned),
                blocks_mut(&mut out[written..written + aligned.len()]),
            )
            .map_err(|_| CryptoError::Backend)?;
        written += aligned.len();
        self.held[..keep].copy_from_slice(rest);
        self.have = keep;
        Ok(written)
    }

    /// Checks the held-back last block's padding and writes its plaintext to `out`;
    /// returns its length. A bad padding (or no whole last block) is `BadPadding`.
    pub fn finish(mut self, out: &mut [u8; 32]) -> Result<usize, CryptoError> {
        if self.have != BLOCK {
            return Err(CryptoError::BadPadding);
        }
        let mut block = Block::from(self.held);
        self.mode.decrypt_block(&mut block);
        let len = unpad(&block).ok_or(CryptoError::BadPadding);
        if let Ok(len) = len {
            out[..len].copy_from_slice(&block[..len]);
        }
        block.zeroize();
        len
    }
}

/// The data length of a PKCS#7-padded block, looking at every byte whatever the
/// padding claims.
fn unpad(block: &[u8]) -> Option<usize> {
    let pad = block[BLOCK - 1];
    let mut bad = u8::from(pad == 0) | u8::from(pad as usize > BLOCK);
    for (i, &byte) in block.iter().enumerate() {
        // Bytes in the padding (i >= 16 - pad) must equal pad.
        let in_pad = u8::from(i + pad as usize >= BLOCK);
        bad |= in_pad & u8::from(byte != pad);
    }
    (bad == 0).then(|| BLOCK - pad as usize)
}

/// Incremental SHA-512.
pub struct Sha512(sha2::Sha512);

impl Sha512 {
    /// An empty hash.
    pub fn new() -> Self {
        Sha512(sha2::Sha512::new())
    }

    /// Hashes `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest.
    pub fn finish(self) -> [u8; 64] {
        self.0.finalize().into()
    }
}

impl Default for Sha512 {
    fn default() -> Self {
        Self::new()
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

/// Fills `out` from the operating system's random source.
pub fn fill(out: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(out).map_err(|_| CryptoError::Backend)
}

/// Compares equal-length byte strings in constant time.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpad_takes_only_valid_padding() {
        let mut block = [7u8; BLOCK];
        block[15] = 1;
        assert_eq!(unpad(&block), Some(15));
        assert_eq!(unpad(&[16u8; BLOCK]), Some(0));
        let mut three = [0xaau8; BLOCK];
        three[13..].fill(3);
        assert_eq!(unpad(&three), Some(13));
        three[13] = 2;
        assert_eq!(unpad(&three), None);
        assert_eq!(unpad(&[0u8; BLOCK]), None);
        assert_eq!(unpad(&[17u8; BLOCK]), None);
    }
}
