//! The aws-lc-rs backend (feature `aws-lc`, the default): AWS-LC's assembly RSA and
//! AES-NI, as fast as OpenSSL on the same machine.

use crate::CryptoError;
use aws_lc_rs::cipher::{
    AES_256, DecryptionContext, EncryptionContext, StreamingDecryptingKey, StreamingEncryptingKey,
    UnboundCipherKey,
};
use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{
    KeyPair, KeySize, OAEP_SHA1_MGF1SHA1, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey,
};
use aws_lc_rs::signature::{self, KeyPair as _, ParsedPublicKey};
use aws_lc_rs::{constant_time, digest};
use std::sync::OnceLock;
use zeroize::Zeroizing;

/// The backend's name, as [`crate::BACKEND`] gives it.
pub const NAME: &str = "aws-lc-rs";

/// Input handed to aws-lc at a time (its length argument is an `i32`).
const MAX_STEP: usize = 1 << 30;

/// Runs `step` over `input` in pieces aws-lc takes, each writing on in `out`.
fn in_steps(
    input: &[u8],
    out: &mut [u8],
    mut step: impl FnMut(&[u8], &mut [u8]) -> Result<usize, aws_lc_rs::error::Unspecified>,
) -> Result<usize, CryptoError> {
    let mut written = 0;
    for piece in input.chunks(MAX_STEP) {
        written += step(piece, &mut out[written..]).map_err(|_| CryptoError::Backend)?;
    }
    Ok(written)
}

fn rejected(e: impl std::fmt::Display) -> CryptoError {
    CryptoError::KeyRejected(e.to_string())
}

/// A parsed RSA private key.
pub struct RsaPrivate {
    pair: KeyPair,
    /// Built on first use; `None` once it turned out aws-lc does not take the key for
    /// OAEP.
    oaep: OnceLock<Option<OaepPrivateDecryptingKey>>,
}

impl RsaPrivate {
    fn new(pair: KeyPair) -> Self {
        RsaPrivate {
            pair,
            oaep: OnceLock::new(),
        }
    }

    /// Parses a DER PKCS#1 `RSAPrivateKey`.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self, CryptoError> {
        KeyPair::from_der(der).map(Self::new).map_err(rejected)
    }

    /// Parses a DER PKCS#8 `PrivateKeyInfo`.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, CryptoError> {
        KeyPair::from_pkcs8(der).map(Self::new).map_err(rejected)
    }

    /// A fresh 2048-bit key.
    pub fn generate() -> Result<Self, CryptoError> {
        KeyPair::generate(KeySize::Rsa2048)
            .map(Self::new)
            .map_err(|_| CryptoError::Backend)
    }

    /// Modulus length in bytes.
    pub fn modulus_len(&self) -> usize {
        self.pair.public_modulus_len()
    }

    /// RSASSA-PSS, SHA-512, MGF1-SHA-512, 64-byte salt.
    pub fn sign_ps512(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut sig = vec![0u8; self.modulus_len()];
        self.pair
            .sign(
                &signature::RSA_PSS_SHA512,
                &SystemRandom::new(),
                message,
                &mut sig,
            )
            .map_err(|_| CryptoError::Backend)?;
        Ok(sig)
    }

    /// RSAES-OAEP, SHA-1, MGF1-SHA-1, empty label. Every failure is `KeyUnwrap`.
    pub fn decrypt_oaep_sha1(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let key = self
            .oaep
            .get_or_init(|| {
                // The PKCS#8 copy zeroizes itself when dropped.
                let pkcs8 = self.pair.as_der().ok()?;
                let key = PrivateDecryptingKey::from_pkcs8(pkcs8.as_ref()).ok()?;
                OaepPrivateDecryptingKey::new(key).ok()
            })
            .as_ref()
            .ok_or_else(|| rejected("the key is not usable for RSA-OAEP"))?;
        let mut plain = Zeroizing::new(vec![0u8; key.min_output_size()]);
        let len = key
            .decrypt(&OAEP_SHA1_MGF1SHA1, ciphertext, &mut plain, None)
            .map_err(|_| CryptoError::KeyUnwrap)?
            .len();
        plain.truncate(len);
        Ok(plain)
    }

    /// The public half, as DER (PKCS#1 `RSAPublicKey`).
    pub fn public_der(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// The key as DER PKCS#1 `RSAPrivateKey`.
    pub fn to_pkcs1_der(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let pkcs8 = self.pair.as_der().map_err(|_| CryptoError::Backend)?;
        let pkcs1 = crate::der::pkcs8_to_pkcs1(pkcs8.as_ref())?;
        Ok(Zeroizing::new(pkcs1.to_vec()))
    }
}

/// A parsed RSA public key.
pub struct RsaPublic {
    rsa: aws_lc_rs::rsa::PublicKey,
    pss: ParsedPublicKey,
    /// Built on first use; `None` once it turned out aws-lc does not take the key for
    /// OAEP.
    oaep: OnceLock<Option<OaepPublicEncryptingKey>>,
}

impl RsaPublic {
    /// Parses DER: PKCS#1 `RSAPublicKey` or SPKI.
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        let rsa = aws_lc_rs::rsa::PublicKey::from_der(der).map_err(rejected)?;
        let pss = ParsedPublicKey::new(&signature::RSA_PSS_2048_8192_SHA512, rsa.as_ref())
            .map_err(rejected)?;
        Ok(RsaPublic {
            rsa,
            pss,
            oaep: OnceLock::new(),
        })
    }

    /// Big-endian modulus without leading zeros.
    pub fn modulus(&self) -> Vec<u8> {
        self.rsa
            .modulus()
            .big_endian_without_leading_zero()
            .to_vec()
    }

    /// Big-endian public exponent without leading zeros.
    pub fn exponent(&self) -> Vec<u8> {
        self.rsa
            .exponent()
            .big_endian_without_leading_zero()
            .to_vec()
    }

    /// DER PKCS#1 `RSAPublicKey`.
    pub fn pkcs1_der(&self) -> Vec<u8> {
        self.rsa.as_ref().to_vec()
    }

    /// Verifies PS512 (salt of exactly 64 bytes). Every failure is `BadSignature`.
    pub fn verify_ps512(&self, message: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        self.pss
            .verify_sig(message, sig)
            .map_err(|_| CryptoError::BadSignature)
    }

    /// RSAES-OAEP, SHA-1, MGF1-SHA-1, empty label; the caller has checked the length.
    pub fn encrypt_oaep_sha1(&self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let key = self
            .oaep
            .get_or_init(|| {
                // aws-lc's encrypting key reads SPKI only.
                let spki = AsDer::<PublicKeyX509Der>::as_der(&self.rsa).ok()?;
                let key = PublicEncryptingKey::from_der(spki.as_ref()).ok()?;
                OaepPublicEncryptingKey::new(key).ok()
            })
            .as_ref()
            .ok_or_else(|| rejected("the key is not usable for RSA-OAEP"))?;
        let mut out = vec![0u8; key.ciphertext_size()];
        let len = key
            .encrypt(&OAEP_SHA1_MGF1SHA1, plaintext, &mut out, None)
            .map_err(|_| CryptoError::Backend)?
            .len();
        out.truncate(len);
        Ok(out)
    }
}

/// Streaming AES-256-CBC encryption with PKCS#7 padding.
pub struct CbcEncrypt(StreamingEncryptingKey);

impl CbcEncrypt {
    /// An encryptor with this key and IV.
    pub fn new(key: &[u8; 32], iv: &[u8; 16]) -> Result<Self, CryptoError> {
        let aes = UnboundCipherKey::new(&AES_256, key).map_err(|_| CryptoError::Backend)?;
        // The IV is the caller's (the postbox protocol reuses it for the metadata).
        StreamingEncryptingKey::less_safe_cbc_pkcs7(
            aes,
            EncryptionContext::Iv128(FixedLength::from(*iv)),
        )
        .map(CbcEncrypt)
        .map_err(|_| CryptoError::Backend)
    }

    /// Encrypts `input` into `out` (at least `input.len() + 16` long); returns how many
    /// bytes were written (whole blocks only).
    pub fn update(&mut self, input: &[u8], out: &mut [u8]) -> Result<usize, CryptoError> {
        in_steps(input, out, |piece, buf| {
            self.0.update(piece, buf).map(|u| u.written().len())
        })
    }

    /// The final, padded block (16 bytes) into `out`; returns its length.
    pub fn finish(self, out: &mut [u8; 32]) -> Result<usize, CryptoError> {
        let (_, update) = self.0.finish(out).map_err(|_| CryptoError::Backend)?;
        Ok(update.written().len())
    }
}

/// Streaming AES-256-CBC decryption with PKCS#7 padding: the last block is held back
/// until `finish` has checked its padding.
pub struct CbcDecrypt(StreamingDecryptingKey);

impl CbcDecrypt {
    /// A decryptor with this key and IV.
    pub fn new(key: &[u8; 32], iv: &[u8; 16]) -> Result<Self, CryptoError> {
        let aes = UnboundCipherKey::new(&AES_256, key).map_err(|_| CryptoError::Backend)?;
        StreamingDecryptingKey::cbc_pkcs7(aes, DecryptionContext::Iv128(FixedLength::from(*iv)))
            .map(CbcDecrypt)
            .map_err(|_| CryptoError::Backend)
    }

    /// Decrypts `input` into `out` (at least `input.len() + 16` long); returns how many
    /// bytes were written (never the last block).
    pub fn update(&mut self, input: &[u8], out: &mut [u8]) -> Result<usize, CryptoError> {
        in_steps(input, out, |piece, buf| {
            self.0.update(piece, buf).map(|u| u.written().len())
        })
    }

    /// Checks the held-back last block's padding and writes its plaintext to `out`;
    /// returns its length. A bad padding (or no whole last block) is `BadPadding`.
    pub fn finish(self, out: &mut [u8; 32]) -> Result<usize, CryptoError> {
        Ok(self
            .0
            .finish(out)
            .map_err(|_| CryptoError::BadPadding)?
            .written()
            .len())
    }
}

/// Incremental SHA-512.
pub struct Sha512(digest::Context);

impl Sha512 {
    /// An empty hash.
    pub fn new() -> Self {
        Sha512(digest::Context::new(&digest::SHA512))
    }

    /// Hashes `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest.
    pub fn finish(self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }
}

impl Default for Sha512 {
    fn default() -> Self {
        Self::new()
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

/// Fills `out` from the operating system's random source.
pub fn fill(out: &mut [u8]) -> Result<(), CryptoError> {
    SystemRandom::new()
        .fill(out)
        .map_err(|_| CryptoError::Backend)
}

/// Compares equal-length byte strings in constant time.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && constant_time::verify_slices_are_equal(a, b).is_ok()
}
