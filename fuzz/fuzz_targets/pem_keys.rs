//! PEM and DER keys: contract keys from files or settings, server keys from a key set.
#![no_main]

use digime_crypto::{MIN_RSA_BITS, PrivateKey, PublicKey};
use libfuzzer_sys::fuzz_target;

/// A parsed public key re-encodes to the same key by every route.
fn check_public(key: &PublicKey) {
    assert!(key.bits() >= MIN_RSA_BITS);
    let from_pem = PublicKey::from_pem(&key.to_pkcs1_pem()).expect("own PEM parses");
    assert_eq!(&from_pem, key);
    let from_der = PublicKey::from_der(key.to_pkcs1_der()).expect("own DER parses");
    assert_eq!(&from_der, key);
    let from_parts =
        PublicKey::from_components(key.modulus(), key.exponent()).expect("own n, e parse");
    assert_eq!(&from_parts, key);
    let _ = format!("{key:?}");
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    match PrivateKey::from_pem(&text) {
        Ok(key) => {
            assert!(key.bits() >= MIN_RSA_BITS);
            check_public(&key.public_key());
            let _ = format!("{key:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }

    match PublicKey::from_pem(&text) {
        Ok(key) => check_public(&key),
        Err(e) => {
            let _ = e.to_string();
        }
    }

    match PublicKey::from_der(data) {
        Ok(key) => check_public(&key),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
