//! The two backends against each other: what one signs, encrypts or exports, the other
//! verifies, decrypts or imports, and both refuse the same damaged inputs.
//!
//! Needs both features: `cargo test -p digime-crypto --features rustcrypto`. The rest
//! of the crate's tests run with whichever backend a build uses (CI runs them with
//! each).
#![cfg(all(feature = "aws-lc", feature = "rustcrypto"))]

use digime_crypto::__backends::{aws_lc as a, rust_crypto as r};
use digime_crypto::CryptoError;
use proptest::prelude::*;
use std::sync::OnceLock;

/// One key, held by both backends.
struct Pair {
    a: a::RsaPrivate,
    r: r::RsaPrivate,
}

fn pair_from_aws_lc() -> &'static Pair {
    static PAIR: OnceLock<Pair> = OnceLock::new();
    PAIR.get_or_init(|| {
        let a = a::RsaPrivate::generate().unwrap();
        let r = r::RsaPrivate::from_pkcs1_der(&a.to_pkcs1_der().unwrap()).unwrap();
        Pair { a, r }
    })
}

fn pair_from_rustcrypto() -> &'static Pair {
    static PAIR: OnceLock<Pair> = OnceLock::new();
    PAIR.get_or_init(|| {
        let r = r::RsaPrivate::generate().unwrap();
        let a = a::RsaPrivate::from_pkcs1_der(&r.to_pkcs1_der().unwrap()).unwrap();
        Pair { a, r }
    })
}

fn pairs() -> [&'static Pair; 2] {
    [pair_from_aws_lc(), pair_from_rustcrypto()]
}

#[test]
fn keys_made_by_either_read_the_same_in_both() {
    for pair in pairs() {
        assert_eq!(pair.a.modulus_len(), 256);
        assert_eq!(pair.r.modulus_len(), 256);
        assert_eq!(
            *pair.a.to_pkcs1_der().unwrap(),
            *pair.r.to_pkcs1_der().unwrap()
        );
        let pa = a::RsaPublic::from_der(&pair.a.public_der()).unwrap();
        let pr = r::RsaPublic::from_der(&pair.r.public_der()).unwrap();
        assert_eq!(pa.pkcs1_der(), pr.pkcs1_der());
        assert_eq!(pa.modulus(), pr.modulus());
        assert_eq!(pa.exponent(), pr.exponent());
        assert_eq!(pa.exponent(), [1, 0, 1]);
        // Each reads the other's public DER.
        assert_eq!(
            r::RsaPublic::from_der(&pair.a.public_der())
                .unwrap()
                .pkcs1_der(),
            pa.pkcs1_der()
        );
        assert_eq!(
            a::RsaPublic::from_der(&pair.r.public_der())
                .unwrap()
                .pkcs1_der(),
            pa.pkcs1_der()
        );
    }
}

#[test]
fn what_one_signs_the_other_verifies() {
    for pair in pairs() {
        let pa = a::RsaPublic::from_der(&pair.a.public_der()).unwrap();
        let pr = r::RsaPublic::from_der(&pair.r.public_der()).unwrap();
        let message = b"eyJhbGciOiJQUzUxMiJ9.eyJub25jZSI6IngifQ";
        let by_a = pair.a.sign_ps512(message).unwrap();
        let by_r = pair.r.sign_ps512(message).unwrap();
        assert_eq!((by_a.len(), by_r.len()), (256, 256));
        // PSS is randomised: the same message signs differently every time.
        assert_ne!(by_a, by_r);
        for sig in [&by_a, &by_r] {
            pa.verify_ps512(message, sig).unwrap();
            pr.verify_ps512(message, sig).unwrap();
            // Any damage is refused by both.
            let mut other = message.to_vec();
            other[0] ^= 1;
            assert_eq!(pa.verify_ps512(&other, sig), Err(CryptoError::BadSignature));
            assert_eq!(pr.verify_ps512(&other, sig), Err(CryptoError::BadSignature));
            let mut flipped = sig.clone();
            flipped[100] ^= 0x20;
            assert_eq!(
                pa.verify_ps512(message, &flipped),
                Err(CryptoError::BadSignature)
            );
            assert_eq!(
                pr.verify_ps512(message, &flipped),
                Err(CryptoError::BadSignature)
            );
            for cut in [&sig[1..], &sig[..255], &[][..]] {
                assert_eq!(
                    pa.verify_ps512(message, cut),
                    Err(CryptoError::BadSignature)
                );
                assert_eq!(
                    pr.verify_ps512(message, cut),
                    Err(CryptoError::BadSignature)
                );
            }
            let mut longer = vec![0u8];
            longer.extend_from_slice(sig);
            assert_eq!(
                pa.verify_ps512(message, &longer),
                Err(CryptoError::BadSignature)
            );
            assert_eq!(
                pr.verify_ps512(message, &longer),
                Err(CryptoError::BadSignature)
            );
        }
    }
}

#[test]
fn a_pss_signature_with_another_salt_length_is_refused_by_both() {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::signature::{RandomizedSigner, SignatureEncoding};
    let pair = pair_from_aws_lc();
    let key = rsa::PrivateKey::from_pkcs1_der(&pair.a.to_pkcs1_der().unwrap()).unwrap();
    let pa = a::RsaPublic::from_der(&pair.a.public_der()).unwrap();
    let pr = r::RsaPublic::from_der(&pair.r.public_der()).unwrap();
    for salt in [0, 32, 63, 65] {
        let signer = rsa::pss::SigningKey::<sha2::Sha512>::new_with_salt_len(key.clone(), salt);
        let sig = signer
            .try_sign_with_rng(&mut getrandom::SysRng, b"message")
            .unwrap()
            .to_vec();
        assert_eq!(
            pa.verify_ps512(b"message", &sig),
            Err(CryptoError::BadSignature),
            "{salt}"
        );
        assert_eq!(
            pr.verify_ps512(b"message", &sig),
            Err(CryptoError::BadSignature),
            "{salt}"
        );
    }
}

#[test]
fn what_one_wraps_the_other_unwraps() {
    for pair in pairs() {
        let pa = a::RsaPublic::from_der(&pair.a.public_der()).unwrap();
        let pr = r::RsaPublic::from_der(&pair.r.public_der()).unwrap();
        for len in [0usize, 1, 32, 214] {
            let dek: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37)).collect();
            let by_a = pa.encrypt_oaep_sha1(&dek).unwrap();
            let by_r = pr.encrypt_oaep_sha1(&dek).unwrap();
            assert_eq!((by_a.len(), by_r.len()), (256, 256));
            for wrapped in [&by_a, &by_r] {
                assert_eq!(*pair.a.decrypt_oaep_sha1(wrapped).unwrap(), dek);
                assert_eq!(*pair.r.decrypt_oaep_sha1(wrapped).unwrap(), dek);
                let mut bad = wrapped.clone();
                bad[7] ^= 1;
                assert_eq!(pair.a.decrypt_oaep_sha1(&bad), Err(CryptoError::KeyUnwrap));
                assert_eq!(pair.r.decrypt_oaep_sha1(&bad), Err(CryptoError::KeyUnwrap));
            }
        }
    }
    // A block wrapped for another key unwraps in neither.
    let [one, other] = pairs();
    let wrapped = a::RsaPublic::from_der(&one.a.public_der())
        .unwrap()
        .encrypt_oaep_sha1(&[9; 32])
        .unwrap();
    assert_eq!(
        other.a.decrypt_oaep_sha1(&wrapped),
        Err(CryptoError::KeyUnwrap)
    );
    assert_eq!(
        other.r.decrypt_oaep_sha1(&wrapped),
        Err(CryptoError::KeyUnwrap)
    );
}

#[test]
fn garbage_keys_are_refused_by_both() {
    let pkcs1 = pair_from_aws_lc().a.to_pkcs1_der().unwrap();
    let public = pair_from_aws_lc().a.public_der();
    let mut cases: Vec<Vec<u8>> = vec![vec![], vec![0x30], vec![0x30, 0x00], b"garbage".to_vec()];
    cases.push(pkcs1[..pkcs1.len() - 1].to_vec());
    cases.push(public[..public.len() - 1].to_vec());
    for case in &cases {
        assert!(matches!(
            a::RsaPrivate::from_pkcs1_der(case),
            Err(CryptoError::KeyRejected(_))
        ));
        assert!(matches!(
            r::RsaPrivate::from_pkcs1_der(case),
            Err(CryptoError::KeyRejected(_))
        ));
        assert!(matches!(
            a::RsaPrivate::from_pkcs8_der(case),
            Err(CryptoError::KeyRejected(_))
        ));
        assert!(matches!(
            r::RsaPrivate::from_pkcs8_der(case),
            Err(CryptoError::KeyRejected(_))
        ));
        assert!(matches!(
            a::RsaPublic::from_der(case),
            Err(CryptoError::KeyRejected(_))
        ));
        assert!(matches!(
            r::RsaPublic::from_der(case),
            Err(CryptoError::KeyRejected(_))
        ));
    }
    // A private key is not a public key, in either.
    assert!(a::RsaPublic::from_der(&pkcs1).is_err());
    assert!(r::RsaPublic::from_der(&pkcs1).is_err());
}

/// The streaming CBC types of both backends, for one test helper.
trait Cbc: Sized {
    /// A decryptor holds the last block back until `finish`.
    const HOLDS_BACK: bool;
    fn start(key: &[u8; 32], iv: &[u8; 16]) -> Self;
    fn step(&mut self, input: &[u8], out: &mut [u8]) -> Result<usize, CryptoError>;
    fn end(self, out: &mut [u8; 32]) -> Result<usize, CryptoError>;
}

macro_rules! cbc {
    ($($t:ty => $holds:expr),*) => {$(
        impl Cbc for $t {
            const HOLDS_BACK: bool = $holds;
            fn start(key: &[u8; 32], iv: &[u8; 16]) -> Self {
                <$t>::new(key, iv).unwrap()
            }
            fn step(&mut self, input: &[u8], out: &mut [u8]) -> Result<usize, CryptoError> {
                self.update(input, out)
            }
            fn end(self, out: &mut [u8; 32]) -> Result<usize, CryptoError> {
                self.finish(out)
            }
        }
    )*};
}

cbc!(a::CbcEncrypt => false, r::CbcEncrypt => false, a::CbcDecrypt => true, r::CbcDecrypt => true);

/// Runs `data` through `C` in pieces of `split` bytes; the error `finish` gives, if any.
fn cbc<C: Cbc>(
    key: &[u8; 32],
    iv: &[u8; 16],
    data: &[u8],
    split: usize,
) -> Result<Vec<u8>, CryptoError> {
    let mut cipher = C::start(key, iv);
    let mut out = Vec::new();
    let mut fed = 0;
    for piece in data.chunks(split.max(1)) {
        let start = out.len();
        out.resize(start + piece.len() + 16, 0);
        let n = cipher.step(piece, &mut out[start..]).unwrap();
        out.truncate(start + n);
        fed += piece.len();
        // Whole blocks only; a decryptor keeps the last one (whole or not) back.
        assert_eq!(out.len() % 16, 0);
        assert!(
            out.len() <= fed && (!C::HOLDS_BACK || out.len() < fed),
            "{} of {fed}",
            out.len()
        );
    }
    let mut last = [0u8; 32];
    let n = cipher.end(&mut last)?;
    out.extend_from_slice(&last[..n]);
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn cbc_is_the_same_cipher_in_both(
        key in any::<[u8; 32]>(),
        iv in any::<[u8; 16]>(),
        plain in proptest::collection::vec(any::<u8>(), 0..300),
        split_enc in 1usize..70,
        split_dec in 1usize..70,
    ) {
        let by_a = cbc::<a::CbcEncrypt>(&key, &iv, &plain, split_enc).unwrap();
        let by_r = cbc::<r::CbcEncrypt>(&key, &iv, &plain, split_dec).unwrap();
        prop_assert_eq!(&by_a, &by_r);
        prop_assert_eq!(by_a.len(), (plain.len() / 16 + 1) * 16);
        prop_assert_eq!(&cbc::<a::CbcDecrypt>(&key, &iv, &by_r, split_dec).unwrap(), &plain);
        prop_assert_eq!(&cbc::<r::CbcDecrypt>(&key, &iv, &by_a, split_enc).unwrap(), &plain);
    }

    #[test]
    fn cbc_damage_is_judged_alike(
        key in any::<[u8; 32]>(),
        iv in any::<[u8; 16]>(),
        blocks in proptest::collection::vec(any::<[u8; 16]>(), 1..6),
        split in 1usize..40,
    ) {
        // Arbitrary whole blocks: most have no valid padding, some do.
        let data: Vec<u8> = blocks.concat();
        let by_a = cbc::<a::CbcDecrypt>(&key, &iv, &data, split);
        let by_r = cbc::<r::CbcDecrypt>(&key, &iv, &data, split);
        prop_assert_eq!(&by_a, &by_r);
        if let Err(e) = by_a {
            prop_assert_eq!(e, CryptoError::BadPadding);
        }
    }

    #[test]
    fn digests_agree(data in proptest::collection::vec(any::<u8>(), 0..600), split in 1usize..200) {
        prop_assert_eq!(a::sha256(&data), r::sha256(&data));
        let mut ha = a::Sha512::new();
        let mut hr = r::Sha512::new();
        for piece in data.chunks(split) {
            ha.update(piece);
            hr.update(piece);
        }
        let (da, dr) = (ha.finish(), hr.finish());
        prop_assert_eq!(da, dr);
        let mut other = da;
        other[63] ^= 1;
        prop_assert!(a::constant_time_eq(&da, &dr) && r::constant_time_eq(&da, &dr));
        prop_assert!(!a::constant_time_eq(&da, &other) && !r::constant_time_eq(&da, &other));
        prop_assert!(!a::constant_time_eq(&da, &da[1..]) && !r::constant_time_eq(&da, &da[1..]));
    }
}

#[test]
fn cbc_short_and_partial_tails_are_bad_padding_in_both() {
    let (key, iv) = ([1u8; 32], [2u8; 16]);
    for data in [&[][..], &[0u8; 5][..], &[0u8; 21][..]] {
        for result in [
            cbc::<a::CbcDecrypt>(&key, &iv, data, 7),
            cbc::<r::CbcDecrypt>(&key, &iv, data, 7),
        ] {
            assert_eq!(result, Err(CryptoError::BadPadding), "{}", data.len());
        }
    }
}

#[test]
fn randomness_fills_and_varies_in_both() {
    let (mut x, mut y) = ([0u8; 64], [0u8; 64]);
    a::fill(&mut x).unwrap();
    r::fill(&mut y).unwrap();
    assert_ne!(x, [0; 64]);
    assert_ne!(y, [0; 64]);
    assert_ne!(x, y);
    r::fill(&mut x).unwrap();
    assert_ne!(x, y);
}
