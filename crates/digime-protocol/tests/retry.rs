//! Retries: `Retry-After`, backoff, limits, methods, transport errors,
//! against the scripted server and its fake clock.

mod support;

use digime_protocol::http::Method;
use digime_protocol::{
    AuthorizationCode, CodeVerifier, Error, FileDescriptor, PullOptions, TransportErrorKind,
};
use std::time::Duration;
use support::{Answer, World};

fn millis(s: &support::Seen) -> u64 {
    s.claims.as_ref().unwrap()["timestamp"].as_u64().unwrap()
}

#[test]
fn retry_after_in_seconds_is_slept_exactly_and_the_retry_is_signed_afresh() {
    let w = World::new();
    let mut s = w.script();
    s.then(Answer::api_error(503, "Busy").header("retry-after", "7"))
        .then(World::list("running", &[]));
    s.run(w.sdk.read_file_list(&w.contract, &w.token, &w.session))
        .unwrap();
    assert_eq!(s.sleeps, [Duration::from_secs(7)]);
    let (first, second) = (&s.requests[0], &s.requests[1]);
    assert_ne!(first.claim("nonce"), second.claim("nonce"));
    assert_eq!(
        millis(second) - millis(first),
        7000,
        "signed at the new time"
    );
}

#[test]
fn retry_after_as_an_http_date_counts_from_now() {
    let w = World::new();
    let mut s = w.script();
    let date = httpdate::fmt_http_date(s.now() + Duration::from_secs(30));
    s.then(Answer::status(429).header("retry-after", &date))
        .then(Answer::json("[]"));
    s.run(w.sdk.read_accounts(&w.contract, &w.token)).unwrap();
    assert_eq!(s.sleeps, [Duration::from_secs(30)]);
}

#[test]
fn the_default_backoff_doubles_with_jitter_under_100ms_and_stops_after_two_retries() {
    let w = World::new();
    let mut s = w.script();
    for _ in 0..3 {
        s.then(Answer::api_error(500, "Oops"));
    }
    let err = s
        .run(w.sdk.read_accounts(&w.contract, &w.token))
        .unwrap_err();
    assert_eq!(err.api().unwrap().status, 500);
    let ms: Vec<u128> = s.sleeps.iter().map(Duration::as_millis).collect();
    assert_eq!(ms.len(), 2, "{ms:?}");
    assert!(
        (1000..1100).contains(&ms[0]) && (2000..2100).contains(&ms[1]),
        "{ms:?}"
    );
}

#[test]
fn a_configured_policy_sets_the_base_delay_and_the_limit() {
    let w = World::pinned(|c| {
        c.retry.base_delay = Duration::from_millis(10);
        c.retry.max_jitter = Duration::ZERO;
        c.retry.limit = 3;
    });
    let mut s = w.script();
    for _ in 0..3 {
        s.then(Answer::status(502));
    }
    s.then(Answer::json("[]"));
    s.run(w.sdk.read_accounts(&w.contract, &w.token)).unwrap();
    let ms: Vec<u128> = s.sleeps.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, [10, 20, 40]);
}

#[test]
fn posts_are_not_retried_unless_the_call_follows_a_policy_that_lists_post() {
    let w = World::pinned(|c| c.retry.methods.push(Method::POST));
    // The code exchange follows the caller's policy, which now lists POST.
    let mut s = w.script();
    s.then(Answer::status(503))
        .then(w.keys.token_answer("a", "r"));
    s.then(w.keys.jwks());
    let code = AuthorizationCode::new("code");
    let exchange = w
        .sdk
        .exchange_code_for_token(&w.contract, &code, &CodeVerifier::generate().unwrap())
        .unwrap();
    s.run(exchange).unwrap();
    assert_eq!(s.sleeps.len(), 1);
    // A read session and a push never follow it: one attempt each.
    let mut s = w.script();
    s.then(Answer::status(503)).then(Answer::status(503));
    let session = s.run(
        w.sdk
            .read_session(&w.contract, &w.token, &PullOptions::default()),
    );
    assert!(matches!(
        session,
        Err(Error::UnexpectedStatus { status: 503, .. })
    ));
    let push = w
        .sdk
        .push_to_library(&w.contract, &w.token, &FileDescriptor::new("text/plain"))
        .unwrap();
    assert!(s.run(push).is_err());
    assert_eq!(
        s.endpoints(),
        [
            "POST permission-access/trigger",
            "POST permission-access/import"
        ]
    );
    assert!(s.sleeps.is_empty());
}

/// The official SDK honours any `Retry-After`; this core, on purpose, refuses one above
/// `RetryPolicy::max_retry_after` (60 s by default) and reports it instead.
#[test]
fn a_retry_after_above_the_cap_ends_the_retries_and_is_reported() {
    let w = World::new();
    let mut s = w.script();
    s.then(Answer::api_error(503, "Busy").header("retry-after", "61"));
    let err = s
        .run(w.sdk.read_accounts(&w.contract, &w.token))
        .unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(61)));
    assert!(s.sleeps.is_empty());

    let w = World::pinned(|c| c.retry.max_retry_after = None);
    let mut s = w.script();
    s.then(Answer::status(503).header("retry-after", "3600"))
        .then(Answer::json("[]"));
    s.run(w.sdk.read_accounts(&w.contract, &w.token)).unwrap();
    assert_eq!(s.sleeps, [Duration::from_secs(3600)]);
}

#[test]
fn only_retryable_transport_errors_are_retried() {
    let w = World::new();
    let mut s = w.script();
    s.then(Answer::transport(TransportErrorKind::Connect))
        .then(Answer::transport(TransportErrorKind::Timeout))
        .then(Answer::json("[]"));
    s.run(w.sdk.read_accounts(&w.contract, &w.token)).unwrap();
    assert_eq!(s.sleeps.len(), 2);

    let mut s = w.script();
    s.then(Answer::transport(TransportErrorKind::Other));
    let err = s
        .run(w.sdk.read_accounts(&w.contract, &w.token))
        .unwrap_err();
    assert!(matches!(err, Error::Transport(t) if t.kind == TransportErrorKind::Other));
    assert!(s.sleeps.is_empty());
}
