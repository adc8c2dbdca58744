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
fn a_refresh_failing_otherwise_is_retried_only_if_unprocessed_and_never_a_reauthorization() {
    let w = World::new();
    let mut s = w.script();
    s.then(Answer::api_error(401, "InvalidToken"))
        .then(Answer::api_error(503, "Busy").header("retry-after", "1"))
        .then(Answer::api_error(503, "Busy").header("retry-after", "1"))
        .then(Answer::api_error(503, "Busy").header("retry-after", "1"));
    let err = s
        .run(w.sdk.read_accounts(&w.contract, &w.token))
        .unwrap_err();
    assert!(!err.needs_reauthorization(), "{err:?}");
    assert!(!err.outcome_unknown(), "a 503 was not processed: {err:?}");
    assert_eq!(err.api().unwrap().status, 503);
    assert_eq!(
        s.sleeps,
        [std::time::Duration::from_secs(1); 2],
        "a refresh the server did not take is retried per the policy"
    );
    let mut s = w.script();
    s.then(Answer::api_error(401, "InvalidToken"))
        .then(Answer::api_error(500, "InternalError"));
    let err = s
        .run(w.sdk.read_accounts(&w.contract, &w.token))
        .unwrap_err();
    assert!(
        !err.needs_reauthorization() && err.outcome_unknown(),
        "{err:?}"
    );
    assert!(
        s.sleeps.is_empty(),
        "a refresh that may have rotated the token is not repeated"
    );
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

// ---------------------------------------------------------------------------------
// One refresh shared by concurrent calls (`digime_protocol::single_flight`).

mod shared {
    use super::support::World;
    use digime_protocol::flow::{Event, Flow, Step};
    use digime_protocol::http::Response;
    use serde_json::json;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    fn answer(status: u16, body: &str) -> Response<Vec<u8>> {
        Response::builder()
            .status(status)
            .body(body.as_bytes().to_vec())
            .unwrap()
    }

    fn invalid_token() -> Response<Vec<u8>> {
        answer(
            401,
            r#"{"error":{"code":"InvalidToken","message":"expired"}}"#,
        )
    }

    fn token_answer(w: &World, access: &str, refresh: &str) -> Response<Vec<u8>> {
        let claims = json!({
            "access_token": {"value": access, "expires_on": 4_000_000_000u64},
            "refresh_token": {"value": refresh, "expires_on": 4_000_000_000u64},
            "sub": "user-1",
        });
        answer(
            201,
            &json!({"token": w.keys.sign("k1", &claims)}).to_string(),
        )
    }

    /// The access token a request was signed with, and its path.
    fn sent(step: Step<impl std::fmt::Debug>) -> (String, String) {
        let Step::Send(req) = step else {
            panic!("expected a request, got {step:?}")
        };
        let path = req.uri().path().to_owned();
        let auth = req.headers()["authorization"].to_str().unwrap();
        let jwt = auth.strip_prefix("Bearer ").unwrap();
        let payload = digime_crypto::jws::Compact::parse(jwt)
            .unwrap()
            .payload()
            .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        let at = claims["access_token"].as_str().unwrap_or("").to_owned();
        (path, at)
    }

    #[test]
    fn two_calls_on_one_expired_token_share_one_refresh() {
        let w = World::new();
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut a = w.sdk.read_accounts(&w.contract, &w.token);
        let mut b = w.sdk.read_accounts(&w.contract, &w.token);

        // Both are refused; A claims the refresh and sends it.
        assert_eq!(sent(a.poll(now)).1, "a1");
        a.handle_response(invalid_token());
        assert_eq!(sent(b.poll(now)).1, "a1");
        b.handle_response(invalid_token());
        let (path, _) = sent(a.poll(now));
        assert!(path.ends_with("oauth/token"), "{path}");
        // B waits for A's refresh instead of presenting the same refresh token.
        let Step::Sleep(d) = b.poll(now) else {
            panic!("B must wait")
        };
        assert!(d <= Duration::from_millis(50));
        let Step::Sleep(_) = b.poll(now + d) else {
            panic!("B still waits")
        };

        // A's refresh lands: A announces it and resends.
        a.handle_response(token_answer(&w, "a2", "r2"));
        let Step::Event(Event::TokenRefreshed(t)) = a.poll(now) else {
            panic!()
        };
        assert_eq!(t.access_token.value.expose(), "a2");
        assert_eq!(sent(a.poll(now)).1, "a2");
        a.handle_response(answer(200, "[]"));
        let Step::Done(Ok(done_a)) = a.poll(now) else {
            panic!()
        };
        assert!(done_a.refreshed_token.is_some());

        // B takes the new token without refreshing or announcing it, and returns it.
        let (path, at) = sent(b.poll(now + d));
        assert!(path.ends_with("permission-access/accounts"), "{path}");
        assert_eq!(at, "a2");
        b.handle_response(answer(200, "[]"));
        let Step::Done(Ok(done_b)) = b.poll(now) else {
            panic!()
        };
        let mine = done_b.refreshed_token.expect("B returns the token it used");
        assert_eq!(mine.refresh_token.value.expose(), "r2");

        // A call started later with the spent token goes with the new one at once.
        let mut c = w.sdk.read_accounts(&w.contract, &w.token);
        assert_eq!(sent(c.poll(now)).1, "a2");
        c.handle_response(answer(200, "[]"));
        let Step::Done(Ok(done_c)) = c.poll(now) else {
            panic!()
        };
        assert_eq!(
            done_c.refreshed_token.unwrap().access_token.value.expose(),
            "a2"
        );
    }

    #[test]
    fn a_failed_or_dropped_refresh_lets_the_next_call_refresh() {
        let w = World::new();
        let now: SystemTime = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut a = w.sdk.read_accounts(&w.contract, &w.token);
        let mut b = w.sdk.read_accounts(&w.contract, &w.token);
        sent(a.poll(now));
        a.handle_response(invalid_token());
        sent(b.poll(now));
        b.handle_response(invalid_token());
        sent(a.poll(now)); // A's refresh is in flight…
        assert!(matches!(b.poll(now), Step::Sleep(_)));
        drop(a); // …and A is dropped (its caller gave up).
        let (path, at) = sent(b.poll(now));
        assert!(path.ends_with("oauth/token"), "B refreshes itself: {path}");
        assert_eq!(at, "");
        // A refused refresh is B's own answer; the next call tries again.
        b.handle_response(answer(
            401,
            r#"{"error":{"code":"InvalidToken","message":"dead"}}"#,
        ));
        let Step::Done(Err(e)) = b.poll(now) else {
            panic!()
        };
        assert!(e.needs_reauthorization(), "{e:?}");
        let mut c = w.sdk.read_accounts(&w.contract, &w.token);
        sent(c.poll(now));
        c.handle_response(invalid_token());
        assert!(sent(c.poll(now)).0.ends_with("oauth/token"));
    }
}
