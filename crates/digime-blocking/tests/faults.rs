//! The blocking driver against a sandbox that fails on purpose (its fault injection):
//! what was not processed is retried, POSTs included; a write whose answer was lost
//! says its outcome is unknown and is stored once or not at all; reads come through
//! busy, lost, cut and short answers byte for byte; a token expiring mid-flow is
//! refreshed once and surfaced.

use digime_blocking::Client;
use digime_protocol::{
    AuthorizeOptions, Contract, FileDescriptor, PullOptions, ReadAllEvent, UserAccessToken,
    parse_callback,
};
use digime_sandbox::BackgroundSandbox;
use digime_testkit::control::{Control, quick_config};
use digime_testkit::fixtures::{fast, files_of, hex};
use serde_json::json;
use std::io::Cursor;
use std::sync::{Arc, Mutex};

struct Env {
    _sandbox: BackgroundSandbox,
    control: Control,
    client: Client,
    write: Contract,
    read: Contract,
    refreshes: Arc<Mutex<Vec<UserAccessToken>>>,
}

impl std::ops::Deref for Env {
    type Target = Control;
    fn deref(&self) -> &Control {
        &self.control
    }
}

/// A sandbox and a client that retries up to ten times, from 5 ms apart (at a 30%
/// fault rate a call then fails for good about twice in a million).
fn env() -> Env {
    let (sandbox, control) = digime_testkit::control::sandbox();
    let info = sandbox.info().clone();
    let refreshes = Arc::new(Mutex::new(Vec::new()));
    let seen = refreshes.clone();
    let mut config = quick_config(&info);
    config.retry.limit = 10;
    let client =
        Client::new(config).on_token_refreshed(move |t| seen.lock().unwrap().push(t.clone()));
    Env {
        write: info.demo.write.contract().unwrap(),
        read: info.demo.read.contract().unwrap(),
        _sandbox: sandbox,
        control,
        client,
        refreshes,
    }
}

impl Env {
    fn authorize(&self, contract: &Contract) -> UserAccessToken {
        let auth = self
            .client
            .authorize_url(
                contract,
                "http://localhost/cb",
                "st",
                AuthorizeOptions::default(),
            )
            .unwrap();
        let callback = parse_callback(&self.browse(&auth.url))
            .unwrap()
            .verify_state("st")
            .unwrap();
        self.client
            .exchange_code_for_token(contract, &callback.code, &auth.code_verifier)
            .unwrap()
    }

    fn push(&self, token: &UserAccessToken, body: &[u8]) -> Result<(), digime_protocol::Error> {
        let descriptor = FileDescriptor::new("text/plain");
        self.client
            .push_to_library(&self.write, token, &descriptor, Cursor::new(body.to_vec()))
            .map(|_| ())
    }

    /// How many of the user's library files hold exactly `body`.
    fn stored(&self, user: &str, body: &[u8]) -> usize {
        let sha = hex(&digime_crypto::sha256(body));
        self.files(user)
            .iter()
            .filter(|f| f["sha256"] == sha.as_str())
            .count()
    }
}

#[test]
fn busy_answers_are_retried_and_the_push_lands_once() {
    let env = env();
    let token = env.authorize(&env.write);
    let user = token.user_id().unwrap().to_owned();
    let before = env.requests_to("permission-access/import");
    env.force_faults(&["503", "429"]);
    env.push(&token, b"busy twice").unwrap();
    assert_eq!(env.stored(&user, b"busy twice"), 1);
    assert_eq!(env.requests_to("permission-access/import") - before, 3);
    assert_eq!((env.injected("503"), env.injected("429")), (1, 1));
}

#[test]
fn a_push_whose_answer_is_lost_after_processing_is_outcome_unknown_and_stored_once() {
    let env = env();
    let token = env.authorize(&env.write);
    let user = token.user_id().unwrap().to_owned();
    for kind in ["500", "reset"] {
        let body = format!("lost by {kind}");
        let before = env.requests_to("permission-access/import");
        env.force_faults(&[kind]);
        let err = env.push(&token, body.as_bytes()).unwrap_err();
        assert!(err.outcome_unknown(), "{kind}: {err:?}");
        assert_eq!(env.injected(kind), 1);
        assert_eq!(env.stored(&user, body.as_bytes()), 1, "{kind}: stored once");
        assert_eq!(
            env.requests_to("permission-access/import") - before,
            1,
            "{kind}: not repeated"
        );
    }
}

#[test]
fn a_dropped_push_is_outcome_unknown_and_nothing_is_stored() {
    let env = env();
    let token = env.authorize(&env.write);
    let user = token.user_id().unwrap().to_owned();
    env.force_faults(&["drop"]);
    let err = env.push(&token, b"dropped").unwrap_err();
    assert!(err.outcome_unknown(), "{err:?}");
    assert_eq!(env.injected("drop"), 1);
    assert_eq!(env.stored(&user, b"dropped"), 0);
    // The app, told the outcome is unknown, checks and pushes again: once.
    env.push(&token, b"dropped").unwrap();
    assert_eq!(env.stored(&user, b"dropped"), 1);
}

#[test]
fn read_all_reads_every_file_through_busy_lost_cut_and_short_answers() {
    let env = env();
    let token = env.authorize(&env.read);
    let user = token.user_id().unwrap().to_owned();
    // Streamed (over 64 KiB) and whole; sizes whose halves fall inside a block and on
    // a block boundary of the envelope.
    let mut generated = env.generate(&user, json!({"count": 3, "size": 100_020, "prefix": "big"}));
    generated.extend(env.generate(&user, json!({"count": 3, "size": 5_000, "prefix": "small"})));
    let session = env
        .client
        .read_session(&env.read, &token, &PullOptions::default())
        .unwrap()
        .value
        .key;
    // The first list call is answered busy, then cut, then short; after that three
    // requests in ten get a fault.
    let kinds = ["503", "429", "500", "drop", "reset", "truncate"];
    env.set_faults(json!({
        "rate": 0.3, "seed": 11, "kinds": kinds, "next": ["503", "reset", "truncate"]
    }));
    let mut events = Vec::new();
    let summary = env
        .client
        .read_all_files(&env.read, &token, &session, fast(), |e| events.push(e))
        .unwrap();
    let errors: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            ReadAllEvent::FileError { entry, error } => Some(format!("{}: {error}", entry.name)),
            _ => None,
        })
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(summary.files_failed, 0);
    let files = files_of(&events);
    for g in &generated {
        let name = g["name"].as_str().unwrap();
        assert_eq!(
            hex(&digime_crypto::sha256(&files[name])),
            g["sha256"].as_str().unwrap(),
            "{name}"
        );
    }
    let injected: u64 = kinds.iter().map(|k| env.injected(k)).sum();
    assert!(injected >= 3, "{injected}");
    assert!(env.injected("truncate") >= 1 && env.injected("reset") >= 1);
}

#[test]
fn a_token_expiring_mid_flow_is_refreshed_once_and_surfaced() {
    let env = env();
    let token = env.authorize(&env.read);
    let before = env.requests_to("oauth/token");
    env.force_faults(&["expire"]);
    let accounts = env.client.read_accounts(&env.read, &token).unwrap();
    let new = accounts.refreshed_token.expect("the new token is returned");
    assert_eq!(env.requests_to("oauth/token") - before, 1);
    let announced = env.refreshes.lock().unwrap().clone();
    assert_eq!(announced.len(), 1);
    assert_eq!(
        announced[0].access_token.value.expose(),
        new.access_token.value.expose()
    );
    assert_eq!(env.injected("expire"), 1);
}

#[test]
fn calls_succeed_on_servers_whose_clocks_are_a_minute_off() {
    let env = env();
    let token = env.authorize(&env.write);
    let user = token.user_id().unwrap().to_owned();
    env.set_faults(json!({"skewMs": 60_000, "next": ["skew", "skew", "skew", "skew"]}));
    for i in 0..4 {
        env.push(&token, format!("skewed {i}").as_bytes()).unwrap();
    }
    assert_eq!(env.injected("skew"), 4);
    for i in 0..4 {
        assert_eq!(env.stored(&user, format!("skewed {i}").as_bytes()), 1);
    }
}
