//! Randomness from the operating system (through aws-lc, or through `getrandom` with
//! the `rustcrypto` backend).

use crate::CryptoError;
use crate::backend::imp;

/// The 62-character alphabet of nonces and PKCE raw strings.
pub const ALPHANUMERIC: &[u8; 62] =
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Fills `out` with random bytes.
pub fn fill(out: &mut [u8]) -> Result<(), CryptoError> {
    imp::fill(out)
}

/// `len` characters drawn independently and uniformly from [`ALPHANUMERIC`]
/// (rejection sampling, so there is no modulo bias).
pub fn alphanumeric(len: usize) -> Result<String, CryptoError> {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        fill(&mut buf)?;
        for &b in &buf {
            // 248 = 4 * 62: bytes at or above it would bias the result.
            if b < 248 && out.len() < len {
                out.push(ALPHANUMERIC[(b % 62) as usize] as char);
            }
        }
    }
    Ok(out)
}

/// A request nonce: 32 characters of `[A-Za-z0-9]`.
pub fn nonce() -> Result<String, CryptoError> {
    alphanumeric(32)
}

/// A uniformly random integer in `0..bound` (for retry jitter and the like).
pub fn below(bound: u64) -> Result<u64, CryptoError> {
    if bound == 0 {
        return Ok(0);
    }
    let mut b = [0u8; 8];
    fill(&mut b)?;
    Ok(u64::from_le_bytes(b) % bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_is_32_alphanumerics_and_varies() {
        let a = nonce().unwrap();
        let b = nonce().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn alphanumeric_uses_the_whole_alphabet() {
        let s = alphanumeric(4000).unwrap();
        for c in ALPHANUMERIC {
            assert!(s.as_bytes().contains(c), "missing {}", *c as char);
        }
    }
}
