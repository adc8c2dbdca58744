//! The account and authorization lifecycle against the scripted server: reference
//! codes for the user-reauth, onboard and reauthorize pages, revoke, and deletion.

mod support;

use digime_protocol::auth::{
    OnboardServiceOptions, ReauthorizeAccountOptions, ReauthorizeOptions, SampleData,
};
use digime_protocol::{Error, ErrorCode};
use serde_json::{Value, json};
use support::{Answer, Seen, World};

/// A 201 answer to `oauth/token/reference`, signed by the server.
fn reference_answer(w: &World, code: &str) -> Answer {
    let claims =
        json!({"reference_code": code, "token_type": "Bearer", "expires_on": 4_000_000_000u64});
    let token = w.keys.sign("k1", &claims);
    Answer::status(201)
        .body(json!({"token": token, "session": {"key": "sess_9", "expiry": 1_718_000_900_000u64}}))
}

fn body_of(seen: &Seen) -> Value {
    serde_json::from_slice(seen.body.as_deref().expect("a JSON body")).unwrap()
}

fn claim_names(seen: &Seen) -> Vec<String> {
    let mut names: Vec<String> = seen.claims.as_ref().unwrap().keys().cloned().collect();
    names.sort();
    names
}

#[test]
fn reauthorize_signs_with_the_old_token_and_pkce_and_never_refreshes() {
    let w = World::new();
    let mut s = w.script();
    s.then(reference_answer(&w, "REF_1"));
    let options = ReauthorizeOptions {
        state: Some("st-1".into()),
        locale: Some("nl".into()),
        trigger_query: Some(false),
        ..Default::default()
    };
    let flow = w
        .sdk
        .reauthorize_url(&w.contract, "https://app.example/cb", &w.token, options)
        .unwrap();
    let url = s.run(flow).unwrap();

    assert_eq!(s.trace, ["POST oauth/token/reference"]);
    let sent = &s.requests[0];
    assert_eq!(
        claim_names(sent),
        [
            "access_token",
            "client_id",
            "code_challenge",
            "code_challenge_method",
            "nonce",
            "redirect_uri",
            "state",
            "timestamp"
        ]
    );
    assert_eq!(sent.claim("access_token"), "a1");
    assert_eq!(sent.claim("redirect_uri"), "https://app.example/cb");
    assert_eq!(sent.claim("code_challenge"), url.code_verifier.challenge());
    assert!(body_of(sent)["agent"].is_object());
    assert_eq!(
        url.url,
        "https://api.digi.me/apps/saas/user-reauth?code=REF_1&lng=nl&triggerQuery=false"
    );
    assert_eq!(url.session.as_ref().unwrap().key.as_str(), "sess_9");
    let shown = format!("{url:?}");
    assert!(
        !shown.contains("REF_1") && shown.contains("user-reauth?[redacted]"),
        "{shown}"
    );

    // A dead access token is the end: reauthorizing never refreshes.
    let mut s = w.script();
    s.then(Answer::api_error(401, "InvalidToken"));
    let flow = w
        .sdk
        .reauthorize_url(
            &w.contract,
            "https://app.example/cb",
            &w.token,
            ReauthorizeOptions::default(),
        )
        .unwrap();
    let err = s.run(flow).unwrap_err();
    assert_eq!(
        err.api().map(|a| &a.code),
        Some(&ErrorCode::InvalidToken),
        "{err:?}"
    );
    assert_eq!(s.trace, ["POST oauth/token/reference"]);
    // No state given: no state claim.
    assert!(!s.requests[0].claims.as_ref().unwrap().contains_key("state"));
}

#[test]
fn onboard_refreshes_on_401_and_builds_the_page_from_its_options() {
    let w = World::new();
    let mut s = w.script();
    s.then(Answer::api_error(401, "InvalidToken"))
        .then(w.keys.token_answer("a2", "r2"))
        .then(reference_answer(&w, "REF_2"));
    let options = OnboardServiceOptions {
        service_id: Some(30),
        sample_data: Some(SampleData {
            data_set: "default".into(),
            auto_onboard: false,
        }),
        trigger_query: Some(true),
        state: Some("add-1".into()),
        ..Default::default()
    };
    let flow = w
        .sdk
        .onboard_service_url(&w.contract, "https://app.example/added", &w.token, options)
        .unwrap();
    let done = s.run(flow).unwrap();

    assert_eq!(
        s.trace,
        [
            "POST oauth/token/reference",
            "POST oauth/token",
            "event TokenRefreshed a2",
            "POST oauth/token/reference",
        ]
    );
    let again = &s.requests[2];
    assert_eq!(again.claim("access_token"), "a2");
    assert_eq!(again.claim("state"), "add-1");
    assert_eq!(
        claim_names(again),
        [
            "access_token",
            "client_id",
            "nonce",
            "redirect_uri",
            "state",
            "timestamp"
        ],
        "no PKCE for onboarding"
    );
    assert_eq!(
        done.value.url,
        "https://api.digi.me/apps/saas/onboard?code=REF_2&sourceType=pull&service=30&sampleDataSet=default&triggerQuery=true"
    );
    assert!(!format!("{:?}", done.value).contains("REF_2"));
    assert_eq!(
        done.refreshed_token.unwrap().access_token.value.expose(),
        "a2"
    );
}

#[test]
fn reauthorize_account_asks_for_the_accounts_reference_too() {
    let w = World::new();
    let mut s = w.script();
    s.then(reference_answer(&w, "REF_3"))
        .then(Answer::json(r#"{"id":"acc ref/1"}"#));
    let options = ReauthorizeAccountOptions {
        locale: Some("en".into()),
    };
    let flow = w
        .sdk
        .reauthorize_account_url(
            &w.contract,
            "https://app.example/fixed",
            &w.token,
            "12_abc",
            options,
        )
        .unwrap();
    let done = s.run(flow).unwrap();

    assert_eq!(s.trace, ["POST oauth/token/reference", "POST reference"]);
    let (code, reference) = (&s.requests[0], &s.requests[1]);
    assert_eq!(
        claim_names(code),
        [
            "access_token",
            "client_id",
            "nonce",
            "redirect_uri",
            "timestamp"
        ],
        "no state, no PKCE"
    );
    let body = body_of(code);
    assert!(body.get("actions").is_none(), "{body}");
    assert_eq!(
        claim_names(reference),
        ["client_id", "nonce", "timestamp"],
        "the reference is the contract's call"
    );
    assert_eq!(
        body_of(reference),
        json!({"type": "accountId", "value": "12_abc"})
    );
    assert_eq!(
        done.value.url,
        "https://api.digi.me/apps/saas/reauthorize?code=REF_3&accountRef=acc+ref%2F1&lng=en"
    );
    assert!(done.refreshed_token.is_none());

    // A garbage answer is a typed error, not a URL with `undefined` in it.
    let mut s = w.script();
    let token = w.keys.sign("k1", &json!({"token_type": "Bearer"}));
    s.then(Answer::status(201).body(json!({ "token": token })));
    let flow = w
        .sdk
        .reauthorize_account_url(
            &w.contract,
            "https://app.example/fixed",
            &w.token,
            "12_abc",
            ReauthorizeAccountOptions::default(),
        )
        .unwrap();
    assert!(matches!(s.run(flow), Err(Error::Decode { .. })));
}

#[test]
fn revoke_and_deletions_put_the_account_in_a_header_of_a_literal_path() {
    let w = World::new();
    let mut s = w.script();
    s.then(
        Answer::status(201)
            .body(json!({"location": "https://api.digi.me/apps/saas/revoke?code=R"})),
    );
    let flow = w
        .sdk
        .revoke_account_permission_url(
            &w.contract,
            &w.token,
            "12_abc",
            "https://app.example/revoked",
        )
        .unwrap();
    let done = s.run(flow).unwrap();
    assert_eq!(
        done.value.location,
        "https://api.digi.me/apps/saas/revoke?code=R"
    );
    let seen = &s.requests[0];
    assert_eq!(s.trace, ["GET permission-access/revoke/h:accountId"]);
    assert_eq!(seen.headers["accountid"], "12_abc");
    assert_eq!(seen.headers["redirecturi"], "https://app.example/revoked");
    assert_eq!(
        claim_names(seen),
        ["access_token", "client_id", "nonce", "timestamp"]
    );

    let mut s = w.script();
    s.then(Answer::api_error(401, "InvalidToken"))
        .then(w.keys.token_answer("a2", "r2"))
        .then(Answer::status(204));
    let flow = w
        .sdk
        .delete_account(&w.contract, &w.token, "12_abc")
        .unwrap();
    let done = s.run(flow).unwrap();
    assert_eq!(
        s.trace,
        [
            "DELETE permission-access/service/h:accountId",
            "POST oauth/token",
            "event TokenRefreshed a2",
            "DELETE permission-access/service/h:accountId",
        ]
    );
    assert_eq!(s.requests[2].headers["accountid"], "12_abc");
    assert_eq!(s.requests[2].headers["content-type"], "application/json");
    assert_eq!(s.requests[2].headers["accept"], "application/json");
    assert_eq!(s.requests[2].claim("access_token"), "a2");
    assert!(done.refreshed_token.is_some());

    let mut s = w.script();
    s.then(Answer::json(r#"{"deleted":true}"#));
    s.run(w.sdk.delete_user(&w.contract, &w.token)).unwrap();
    assert_eq!(s.trace, ["DELETE user"]);
    assert_eq!(
        claim_names(&s.requests[0]),
        ["access_token", "client_id", "nonce", "timestamp"]
    );
    assert!(!s.requests[0].headers.contains_key("accountid"));

    // A deletion is repeated only when it was not processed (a 503): a lost answer may
    // hide a deletion that was done, and says so.
    let mut s = w.script();
    s.then(Answer::status(503)).then(Answer::status(500));
    // (`w.token` was refreshed above: the call goes with the new token, and an error
    // carries it.)
    let err = s.run(w.sdk.delete_user(&w.contract, &w.token)).unwrap_err();
    let Error::AfterRefresh { error, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(&**error, Error::OutcomeUnknown(e) if matches!(**e, Error::UnexpectedStatus { status: 500, .. })),
        "{err:?}"
    );
    assert!(err.outcome_unknown() && !err.is_retryable());
    assert_eq!(s.trace[0], "DELETE user");
    assert_eq!(s.trace[2], "DELETE user");
    assert_eq!(s.requests.len(), 2);

    // Refused before any IO.
    assert!(matches!(
        w.sdk.delete_account(&w.contract, &w.token, ""),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        w.sdk
            .revoke_account_permission_url(&w.contract, &w.token, "12_abc", "not a url"),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        w.sdk.onboard_service_url(
            &w.contract,
            "https://app.example/cb#frag",
            &w.token,
            OnboardServiceOptions::default()
        ),
        Err(Error::InvalidInput(_))
    ));
}
