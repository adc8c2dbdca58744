//! Compact JWS splitting and the server-token header check, on arbitrary text.
//!
//! Server tokens (code exchange, refresh) arrive from the network and reach
//! `Compact::parse` and `jwks::check_header` before any signature is checked.
#![no_main]

use digime_crypto::jws::Compact;
use digime_crypto::{PrivateKey, PublicKey};
use digime_protocol::jwks;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

const PINNED_JWKS_URL: &str = "https://api.digi.me/v1.7/jwks/oauth";

/// One key for the whole run: signature checks of forged tokens must fail cleanly.
static KEY: LazyLock<PublicKey> =
    LazyLock::new(|| PrivateKey::generate().expect("key generation").public_key());

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);

    let parsed = Compact::parse(&token);
    if let Ok(compact) = &parsed {
        let _ = compact.header();
        let _ = compact.payload();
        assert!(!compact.header_segment().is_empty());
        // Nobody can forge a PS512 signature by fuzzing; this only must not panic.
        assert!(compact.verify(&KEY).is_err());
    }

    match jwks::check_header(&token, PINNED_JWKS_URL) {
        Ok(header) => {
            // A header that passes the check came from a well-formed token.
            assert!(parsed.is_ok());
            let _ = header.kid.len();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
