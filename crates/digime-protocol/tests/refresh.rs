//! Refresh-on-401 through the public API, against the scripted server.

mod support;

use digime_protocol::{Error, ErrorCode, FileDescriptor, Output};
use support::{Answer, World};

#[test]
fn a_401_invalid_token_refreshes_once_and_resends_with_the_new_token() {
    let w = World::new();
    let mut s = w.script();
    s.then(Answer::api_error(401, "InvalidToken"))
        .then(w.keys.token_answer("a2", "r2"))
        .then(Answer::json("[]"));
    let done = s.run(w.sdk.read_accounts(&w.contract, &w.token)).unwrap();

    assert_eq!(
        s.trace,
        [
            "GET permission-access/accounts",
            "POST oauth/token",
            "event TokenRefreshed a2",
            "GET permission-access/accounts",
        ]
    );
    let (first, refresh, again) = (&s.requests[0], &s.requests[1], &s.requests[2]);
    assert_eq!(first.claim("access_token"), "a1");
    assert_eq!(refresh.claim("grant_type"), "refresh_token");
    assert_eq!(
        refresh.claim("refresh_token"),
        "r1",
        "the old refresh token"
    );
    assert_eq!(refresh.headers["content-type"], "application/json");
    assert_eq!(again.claim("access_token"), "a2");
    assert_ne!(first.claim("nonce"), again.claim("nonce"));
    let new = done
        .refreshed_token
        .expect("the refreshed token is returned");
    assert_eq!(new.refresh_token.value.expose(), "r2");
}

#[test]
fn a_second_401_after_the_refresh_does_not_refresh_again_and_keeps_the_new_token() {
    let w = World::new();
    let mut s = w.script();
    s.then(Answer::api_error(401, "InvalidToken"))
        .then(w.keys.token_answer("a2", "r2"))
        .then(Answer::api_error(401, "InvalidToken"));
    // A fourth request (a second refresh) would be unscripted and panic.
    let err = s
        .run(w.sdk.read_file_list(&w.contract, &w.token, &w.session))
        .unwrap_err();

    let Error::AfterRefresh {
        refreshed_token,
        error,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(refreshed_token.access_token.value.expose(), "a2");
    assert_eq!(error.api().unwrap().code, ErrorCode::InvalidToken);
    assert!(!err.needs_reauthorization());
    assert_eq!(s.events.len(), 1);
}

#[test]
fn read_calls_refresh_only_on_invalid_token_or_a_body_that_is_no_error() {
    for (body, refreshes) in [
        (r#"{"error":{"code":"InvalidToken","message":"x"}}"#, true),
        ("", true),
        ("Unauthorized", true),
        ("[1,2]", true),
        (r#"{"error":{"code":"InvalidClient","message":"x"}}"#, false),
        (
            r#"{"error":{"code":"InsufficientScope","message":"x"}}"#,
            false,
        ),
    ] {
        let w = World::new();
        let mut s = w.script();
        s.then(Answer::status(401).body(body));
        if refreshes {
            s.then(w.keys.token_answer("a2", "r2"))
                .then(Answer::json("[]"));
        }
        let r = s.run(w.sdk.read_accounts(&w.contract, &w.token));
        match r {
            Ok(done) => assert!(refreshes && done.refreshed_token.is_some(), "{body}"),
            Err(e) => {
                assert!(!refreshes, "{body}: {e}");
                assert_eq!(e.api().unwrap().status, 401, "{body}");
                assert!(e.refreshed_token().is_none());
            }
        }
    }
}

/// The wire protocol's refresh rule: only the standard shape
/// `{"error":{"code","message"}}` with another code stops the refresh; "any other
/// shape" refreshes. A flat `{"message":"Unauthorized"}` (an API gateway's 401) is
/// not the standard shape.
#[test]
fn a_401_with_a_flat_error_body_refreshes() {
    let w = World::new();
    let mut s = w.script();
    s.then(Answer::status(401).body(r#"{"message":"Unauthorized"}"#))
        .then(w.keys.token_answer("a2", "r2"))
        .then(Answer::json("[]"));
    let done = s.run(w.sdk.read_accounts(&w.contract, &w.token)).unwrap();
    assert!(done.refreshed_token.is_some());
}

#[test]
fn pushes_and_downloads_refresh_on_any_401() {
    let w = World::new();
    let mut s = w.script();
    s.then(Answer::api_error(401, "InvalidClient"))
        .then(w.keys.token_answer("a2", "r2"))
        .then(Answer::status(201));
    let push = w
        .sdk
        .push_to_library(&w.contract, &w.token, &FileDescriptor::new("text/plain"))
        .unwrap();
    let pushed = s.run(push).unwrap();
    assert_eq!(s.last().claim("access_token"), "a2");
    assert!(pushed.refreshed_token.is_some());

    let mut s = w.script();
    s.then(Answer::api_error(401, "InsufficientScope"))
        .then(w.keys.token_answer("a3", "r3"))
        .then(w.file(b"hello"));
    let read = w
        .sdk
        .read_file(&w.contract, &w.token, &w.session, "f.json", Output::Buffer)
        .unwrap();
    let file = s.run(read).unwrap();
    assert_eq!(s.endpoints()[2], "GET permission-access/query/s1/f.json");
    assert_eq!(s.last().claim("access_token"), "a3");
    assert_eq!(file.value.data, b"hello");
    assert_eq!(
        file.refreshed_token.unwrap().access_token.value.expose(),
        "a3"
    );
}

#[test]
fn a_dead_refresh_token_needs_reauthorization_and_sends_nothing_more() {
    let w = World::new();
    let mut s = w.script();
    s.then(Answer::api_error(401, "InvalidToken"))
        .then(Answer::api_error(401, "InvalidToken"));
    let err = s
        .run(w.sdk.read_accounts(&w.contract, &w.token))
        .unwrap_err();
    assert!(matches!(err, Error::ReauthorizationRequired(_)), "{err:?}");
    assert!(err.needs_reauthorization());
    assert!(s.events.is_empty());
    assert_eq!(s.requests.len(), 2);
}

#[test]
fn a_refresh_failing_otherwise_is_neither_retried_nor_a_reauthorization() {
    let w = World::new();
    let mut s = w.script();
    s.then(Answer::api_error(401, "InvalidToken"))
        .then(Answer::api_error(503, "Busy").header("retry-after", "1"));
    let err = s
        .run(w.sdk.read_accounts(&w.contract, &w.token))
        .unwrap_err();
    assert!(!err.needs_reauthorization(), "{err:?}");
    assert_eq!(err.api().unwrap().status, 503);
    assert!(s.sleeps.is_empty(), "the refresh POST is never retried");
}

/// A buffered download whose body broke off is fetched again; the call has already
/// refreshed once, so a 401 on the new GET must end it (a call refreshes at most once).
#[test]
fn a_download_fetched_again_after_a_cut_body_does_not_refresh_twice() {
    let w = World::new();
    let mut s = w.script();
    s.then(Answer::status(401))
        .then(w.keys.token_answer("a2", "r2"))
        .then(w.file(&[7; 5000]).cut_after(1500))
        .then(Answer::status(401));
    let read = w
        .sdk
        .read_file(&w.contract, &w.token, &w.session, "f.json", Output::Buffer)
        .unwrap();
    let err = s.run(read).unwrap_err();
    assert_eq!(
        err.refreshed_token().unwrap().access_token.value.expose(),
        "a2"
    );
    assert_eq!(s.sleeps.len(), 1, "one backoff before the GET again");
}
