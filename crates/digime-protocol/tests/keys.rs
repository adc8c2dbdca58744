//! Server token verification: `jku` pinning, fetching the key set on an
//! unknown `kid`, and the key-set cache, against the scripted server.

mod support;

use digime_protocol::{Config, Error};
use serde_json::json;
use std::time::Duration;
use support::{Answer, Script, World};

/// Refreshes `w.token` once against the script `s`.
fn refresh(w: &World, s: &mut Script) -> Result<(), Error> {
    s.run(w.sdk.refresh_token(&w.contract, &w.token))
        .map(|_| ())
}

#[test]
fn a_token_naming_another_key_set_is_refused_and_that_set_never_fetched() {
    let w = World::pinned(|_| {});
    let header = json!({"alg": "PS512", "typ": "JWT", "kid": "k1",
                        "jku": "https://evil.example/jwks/oauth"});
    let token = w.keys.sign_with_header("k1", &header, &json!({}));
    let mut s = w.script();
    s.then(Answer::status(201).body(json!({ "token": token })));
    match refresh(&w, &mut s) {
        Err(Error::UntrustedKeySet { jku, expected }) => {
            assert_eq!(jku, "https://evil.example/jwks/oauth");
            assert_eq!(expected, w.keys.jwks_url);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.endpoints(), ["POST oauth/token"]);
}

#[test]
fn an_unknown_kid_fetches_the_pinned_key_set_once_and_then_uses_the_cache() {
    let w = World::pinned(|_| {});
    let mut s = w.script();
    s.then(w.keys.token_answer_signed("k1", "a2", "r2"))
        .then(w.keys.jwks())
        .then(w.keys.token_answer_signed("k2", "a3", "r3"));
    refresh(&w, &mut s).unwrap();
    // k2 came with the first fetch: the second verification needs no fetch.
    refresh(&w, &mut s).unwrap();
    assert_eq!(
        s.endpoints(),
        ["POST oauth/token", "GET jwks/oauth", "POST oauth/token"]
    );
    let fetch = &s.requests[1];
    assert!(
        fetch.claims.is_none(),
        "the key set is fetched without auth"
    );
}

#[test]
fn a_kid_missing_from_the_fetched_set_is_an_unknown_signing_key() {
    let w = World::pinned(|_| {});
    let mut s = w.script();
    s.then(w.keys.token_answer_signed("k1", "a2", "r2"))
        .then(w.keys.jwks_of(&["k2"]));
    match refresh(&w, &mut s) {
        Err(Error::UnknownSigningKey { kid }) => assert_eq!(kid, "k1"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_token_signed_by_another_key_than_its_kid_says_is_refused() {
    let w = World::pinned(|_| {});
    let header = json!({"alg": "PS512", "typ": "JWT", "kid": "k1", "jku": w.keys.jwks_url});
    let forged = w.keys.sign_with_header("k2", &header, &json!({}));
    let mut s = w.script();
    s.then(Answer::status(201).body(json!({ "token": forged })))
        .then(w.keys.jwks());
    assert!(matches!(refresh(&w, &mut s), Err(Error::ServerToken(_))));
}

#[test]
fn the_key_set_is_fetched_again_only_once_its_ttl_has_passed() {
    let w = World::pinned(|c| c.jwks_ttl = Duration::from_secs(60));
    let mut s = w.script();
    s.then(w.keys.token_answer("a2", "r2")).then(w.keys.jwks());
    refresh(&w, &mut s).unwrap();
    // Exactly the TTL old: still fresh.
    s.advance(Duration::from_secs(60));
    s.then(w.keys.token_answer("a3", "r3"));
    refresh(&w, &mut s).unwrap();
    // Older than the TTL: fetched again.
    s.advance(Duration::from_secs(1));
    s.then(w.keys.token_answer("a4", "r4")).then(w.keys.jwks());
    refresh(&w, &mut s).unwrap();
    let fetches = s
        .endpoints()
        .iter()
        .filter(|e| *e == "GET jwks/oauth")
        .count();
    assert_eq!(fetches, 2, "{:?}", s.endpoints());
}

#[test]
fn a_configured_key_set_url_is_the_one_pinned_and_fetched_with_retries() {
    let url = "https://keys.example/v1/jwks";
    let w = World::pinned(|c| *c = Config::new("app").unwrap().with_jwks_url(url).unwrap());
    assert_eq!(w.keys.jwks_url, url);
    let mut s = w.script();
    s.then(w.keys.token_answer("a2", "r2"))
        .then(Answer::status(503).header("retry-after", "2"))
        .then(w.keys.jwks());
    refresh(&w, &mut s).unwrap();
    assert_eq!(
        s.endpoints(),
        [
            "POST oauth/token",
            &format!("GET {url}"),
            &format!("GET {url}")
        ]
    );
    assert_eq!(s.sleeps, [Duration::from_secs(2)]);
}

#[test]
fn static_keys_are_a_pin_an_unknown_kid_is_refused_and_nothing_fetched() {
    // `World::new` trusts k1 statically; the server signs with k2, which the pinned
    // URL's key set would hold.
    let w = World::new();
    let mut s = w.script();
    s.then(w.keys.token_answer_signed("k2", "a2", "r2"));
    match refresh(&w, &mut s) {
        Err(Error::UnknownSigningKey { kid }) => assert_eq!(kid, "k2"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.endpoints(),
        ["POST oauth/token"],
        "no key set was fetched"
    );
    // A fetched set stored later is ignored too.
    w.sdk.key_cache().store(
        digime_protocol::KeySet::from_keys([("k2".to_string(), w.keys.key("k2").public_key())]),
        s.now(),
    );
    assert!(
        w.sdk
            .key_cache()
            .get("k2", s.now(), Duration::from_secs(60))
            .is_none()
    );
}
