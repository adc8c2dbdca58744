//! The client side of the postbox era fed arbitrary input: the callbacks of every era
//! (deep-link `state`/`result`/`postboxId`/`publicKey`, ongoing with `code`/`state`, SaaS with
//! `success`), the postbox key text, the push answer, the establish-session answer and
//! SDK v4's flat token claims. None may panic; what parses must be coherent.
#![no_main]

use digime_crypto::PublicKey;
use digime_protocol::legacy::{
    parse_ongoing_postbox_callback, parse_postbox_callback, parse_push_response,
    parse_saas_postbox_callback, parse_session_response, token_from_flat_claims,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        let _ = parse_push_response(data);
        return;
    };
    for url in [text.to_owned(), format!("https://app.example/cb?{text}")] {
        if let Ok(cb) = parse_postbox_callback(&url, "s") {
            assert!(!cb.postbox.id.as_str().is_empty());
        }
        if let Ok(cb) = parse_postbox_callback(&format!("{url}&state=s"), "s") {
            assert!(!cb.postbox.id.as_str().is_empty());
        }
        if let Ok(cb) = parse_ongoing_postbox_callback(&url) {
            let _ = cb.clone().verify_state("s");
            let _ = format!("{cb:?}");
        }
        if let Ok(cb) = parse_saas_postbox_callback(&url) {
            let _ = cb.verify_state("s");
        }
    }
    let _ = PublicKey::from_postbox_key(text);
    let _ = parse_push_response(data);
    let response = http::Response::builder()
        .status(200)
        .body(data.to_vec())
        .expect("a response");
    if let Ok(session) = parse_session_response(&response) {
        assert!(!session.session_key.as_str().is_empty());
        let _ = format!("{session:?}");
    }
    if let Ok(claims) = serde_json::from_slice(data) {
        let _ = token_from_flat_claims(&claims);
    }
});
