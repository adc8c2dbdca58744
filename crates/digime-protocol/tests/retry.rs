//! Retries: `Retry-After`, backoff, limits, methods, transport errors,
//! against the scripted server and its fake clock.

mod support;

use digime_protocol::http::Method;
use digime_protocol::push::PushToLibrary;
use digime_protocol::{
    AuthedCall, AuthorizationCode, CodeVerifier, Error, FileDescriptor, PullOptions,
    TransportErrorKind,
};
use std::time::Duration;
use support::{Answer, World};

/// A library push of a text file.
fn text_push(w: &World) -> AuthedCall<PushToLibrary> {
    w.sdk
        .push_to_library(&w.contract, &w.token, &FileDescriptor::new("text/plain"))
        .unwrap()
}

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
fn what_was_not_processed_is_retried_for_every_method_posts_included() {
    let w = World::new();
    // A push (POST): a 503, a 429 with `Retry-After` and a refused connection were
    // not processed; the fourth attempt lands.
    let mut s = w.script();
    s.then(Answer::status(503))
        .then(Answer::status(429).header("retry-after", "3"))
        .then(Answer::status(201));
    let push = text_push(&w);
    s.run(push).unwrap();
    assert_eq!(s.requests.len(), 3);
    assert_eq!(s.sleeps[1], Duration::from_secs(3));
    assert_ne!(s.requests[0].claim("nonce"), s.requests[2].claim("nonce"));
    // A read session (POST trigger) and a refresh (POST oauth/token) likewise.
    let mut s = w.script();
    s.then(Answer::api_error(401, "InvalidToken"))
        .then(Answer::transport(TransportErrorKind::Connect))
        .then(Answer::status(503).header("retry-after", "0"))
        .then(w.keys.token_answer("a2", "r2"))
        .then(Answer::status(503))
        .then(Answer::json(r#"{"session":{"key":"sk","expiry":1}}"#));
    let session = s.run(
        w.sdk
            .read_session(&w.contract, &w.token, &PullOptions::default()),
    );
    assert!(session.is_ok(), "{session:?}");
    assert_eq!(
        s.endpoints(),
        [
            "POST permission-access/trigger",
            "POST oauth/token",
            "POST oauth/token",
            "POST oauth/token",
            "POST permission-access/trigger",
            "POST permission-access/trigger"
        ]
    );
    // The limit still holds: two retries.
    let mut s = w.script();
    s.then(Answer::status(503))
        .then(Answer::status(503))
        .then(Answer::status(503));
    let push = text_push(&w);
    let err = s.run(push).unwrap_err();
    assert!(!err.outcome_unknown(), "a 503 was not processed: {err:?}");
    assert_eq!(s.requests.len(), 3);
}

#[test]
fn a_write_that_may_have_been_processed_is_not_repeated_and_says_so() {
    let w = World::new();
    for lost in [
        Answer::transport(TransportErrorKind::Reset),
        Answer::transport(TransportErrorKind::Timeout),
        Answer::status(500),
        Answer::api_error(502, "BadGateway"),
    ] {
        let mut s = w.script();
        s.then(lost);
        let push = text_push(&w);
        let err = s.run(push).unwrap_err();
        assert!(err.outcome_unknown(), "{err:?}");
        assert!(!err.is_retryable() && !err.needs_reauthorization());
        assert!(err.to_string().contains("may have been processed"), "{err}");
        assert_eq!(s.requests.len(), 1);
    }
    // A refresh whose answer was lost may have rotated the refresh token: not repeated
    // (it would present a spent token), and not "reauthorization needed".
    let mut s = w.script();
    s.then(Answer::api_error(401, "InvalidToken"))
        .then(Answer::transport(TransportErrorKind::Reset));
    let err = s
        .run(w.sdk.read_accounts(&w.contract, &w.token))
        .unwrap_err();
    assert!(
        err.outcome_unknown() && !err.needs_reauthorization(),
        "{err:?}"
    );
    assert_eq!(
        s.endpoints(),
        ["GET permission-access/accounts", "POST oauth/token"]
    );
    // A read is repeated whatever happened to it, and never has an unknown outcome.
    let mut s = w.script();
    s.then(Answer::transport(TransportErrorKind::Reset))
        .then(Answer::status(500))
        .then(Answer::status(502));
    let err = s
        .run(w.sdk.read_accounts(&w.contract, &w.token))
        .unwrap_err();
    assert!(!err.outcome_unknown() && err.is_retryable(), "{err:?}");
    assert_eq!(s.requests.len(), 3);
    // The caller's own body failing is not an unknown outcome.
    let mut s = w.script();
    s.then(Answer::transport(TransportErrorKind::BodySource));
    let push = text_push(&w);
    assert!(!s.run(push).unwrap_err().outcome_unknown());
}

#[test]
fn a_read_whose_answer_is_cut_short_is_asked_again_and_a_write_is_not() {
    let w = World::new();
    // Half an answer, cleanly ended (a proxy cut it): a GET is repeated.
    let mut s = w.script();
    s.then(Answer::json(r#"[{"id":"acc"#))
        .then(Answer::json(r#"{"sessi"#))
        .then(Answer::json("[]"));
    let accounts = s.run(w.sdk.read_accounts(&w.contract, &w.token)).unwrap();
    assert!(accounts.value.is_empty());
    assert_eq!(s.requests.len(), 3);
    assert_eq!(s.sleeps.len(), 2);
    // As many times as the policy allows, then the decoding error.
    let mut s = w.script();
    for _ in 0..3 {
        s.then(Answer::json("{"));
    }
    let err = s
        .run(w.sdk.read_accounts(&w.contract, &w.token))
        .unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert_eq!(s.requests.len(), 3);
    // A write whose 2xx answer does not parse was processed: not repeated.
    let mut s = w.script();
    s.then(Answer::json(r#"{"session":{"ke"#));
    let err = s
        .run(
            w.sdk
                .read_session(&w.contract, &w.token, &PullOptions::default()),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert_eq!(s.requests.len(), 1);
}

#[test]
fn a_policy_that_lists_post_repeats_the_code_exchange_after_a_lost_answer() {
    let w = World::pinned(|c| c.retry.methods.push(Method::POST));
    let mut s = w.script();
    s.then(Answer::transport(TransportErrorKind::Reset))
        .then(w.keys.token_answer("a", "r"));
    s.then(w.keys.jwks());
    let code = AuthorizationCode::new("code");
    let exchange = w
        .sdk
        .exchange_code_for_token(&w.contract, &code, &CodeVerifier::generate().unwrap())
        .unwrap();
    s.run(exchange).unwrap();
    assert_eq!(s.sleeps.len(), 1);
    // The default does not: the exchange's outcome is unknown (the code may be spent).
    let w = World::new();
    let mut s = w.script();
    s.then(Answer::transport(TransportErrorKind::Reset));
    let exchange = w
        .sdk
        .exchange_code_for_token(&w.contract, &code, &CodeVerifier::generate().unwrap())
        .unwrap();
    assert!(s.run(exchange).unwrap_err().outcome_unknown());
    // A push never repeats a lost answer, whatever the policy lists.
    let w = World::pinned(|c| c.retry.methods.push(Method::POST));
    let mut s = w.script();
    s.then(Answer::transport(TransportErrorKind::Reset));
    let push = text_push(&w);
    assert!(s.run(push).unwrap_err().outcome_unknown());
    assert_eq!(s.requests.len(), 1);
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
