//! The async driver against a sandbox that fails on purpose (its fault injection):
//! what was not processed is retried, POSTs included; a write whose answer was lost
//! says its outcome is unknown and is stored once or not at all; reads come through
//! busy, lost, cut and short answers byte for byte; a token expiring mid-flow is
//! refreshed once and surfaced.

use digime_async::Client;
use digime_protocol::{
    AuthorizeOptions, Contract, FileDescriptor, PullOptions, ReadAllEvent, UserAccessToken,
    parse_callback,
};
use digime_sandbox::{ConsentMode, RunningSandbox, Sandbox, SandboxConfig};
use digime_testkit::control::{AsyncControl, quick_config};
use digime_testkit::fixtures::{fast, files_of, hex};
use serde_json::json;
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Env {
    _sandbox: RunningSandbox,
    control: AsyncControl,
    client: Client,
    write: Contract,
    read: Contract,
    refreshes: Arc<Mutex<Vec<UserAccessToken>>>,
}

impl std::ops::Deref for Env {
    type Target = AsyncControl;
    fn deref(&self) -> &AsyncControl {
        &self.control
    }
}

/// A sandbox and a client that retries up to ten times, from 5 ms apart (at a 30%
/// fault rate a call then fails for good about twice in a million).
async fn env() -> Env {
    let sandbox = Sandbox::start(SandboxConfig {
        consent: ConsentMode::Auto,
        sync_step: Duration::from_millis(30),
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let info = sandbox.info().clone();
    let control = AsyncControl::new(&info);
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
    async fn authorize(&self, contract: &Contract) -> UserAccessToken {
        let auth = self
            .client
            .authorize_url(
                contract,
                "http://localhost/cb",
                "st",
                AuthorizeOptions::default(),
            )
            .await
            .unwrap();
        let callback = parse_callback(&self.browse(&auth.url).await)
            .unwrap()
            .verify_state("st")
            .unwrap();
        self.client
            .exchange_code_for_token(contract, &callback.code, &auth.code_verifier)
            .await
            .unwrap()
    }

    async fn push(
        &self,
        token: &UserAccessToken,
        body: &[u8],
    ) -> Result<(), digime_protocol::Error> {
        let descriptor = FileDescriptor::new("text/plain");
        self.client
            .push_to_library(&self.write, token, &descriptor, Cursor::new(body.to_vec()))
            .await
            .map(|_| ())
    }

    /// How many of the user's library files hold exactly `body`.
    async fn stored(&self, user: &str, body: &[u8]) -> usize {
        let sha = hex(&digime_crypto::sha256(body));
        self.files(user)
            .await
            .iter()
            .filter(|f| f["sha256"] == sha.as_str())
            .count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_answers_are_retried_and_the_push_lands_once() {
    let env = env().await;
    let token = env.authorize(&env.write).await;
    let user = token.user_id().unwrap().to_owned();
    let before = env.requests_to("permission-access/import").await;
    env.force_faults(&["503", "429"]).await;
    env.push(&token, b"busy twice").await.unwrap();
    assert_eq!(env.stored(&user, b"busy twice").await, 1);
    assert_eq!(
        env.requests_to("permission-access/import").await - before,
        3
    );
    assert_eq!(
        (env.injected("503").await, env.injected("429").await),
        (1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_whose_answer_is_lost_after_processing_is_outcome_unknown_and_stored_once() {
    let env = env().await;
    let token = env.authorize(&env.write).await;
    let user = token.user_id().unwrap().to_owned();
    for kind in ["500", "reset"] {
        let body = format!("lost by {kind}");
        let before = env.requests_to("permission-access/import").await;
        env.force_faults(&[kind]).await;
        let err = env.push(&token, body.as_bytes()).await.unwrap_err();
        assert!(err.outcome_unknown(), "{kind}: {err:?}");
        assert_eq!(env.injected(kind).await, 1);
        assert_eq!(
            env.stored(&user, body.as_bytes()).await,
            1,
            "{kind}: stored once"
        );
        assert_eq!(
            env.requests_to("permission-access/import").await - before,
            1,
            "{kind}: not repeated"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_push_is_outcome_unknown_and_nothing_is_stored() {
    let env = env().await;
    let token = env.authorize(&env.write).await;
    let user = token.user_id().unwrap().to_owned();
    env.force_faults(&["drop"]).await;
    let err = env.push(&token, b"dropped").await.unwrap_err();
    assert!(err.outcome_unknown(), "{err:?}");
    assert_eq!(env.injected("drop").await, 1);
    assert_eq!(env.stored(&user, b"dropped").await, 0);
    // The app, told the outcome is unknown, checks and pushes again: once.
    env.push(&token, b"dropped").await.unwrap();
    assert_eq!(env.stored(&user, b"dropped").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_all_reads_every_file_through_busy_lost_cut_and_short_answers() {
    let env = env().await;
    let token = env.authorize(&env.read).await;
    let user = token.user_id().unwrap().to_owned();
    // Streamed (over 64 KiB) and whole; sizes whose halves fall inside a block and on
    // a block boundary of the envelope.
    let mut generated = env
        .generate(&user, json!({"count": 3, "size": 100_020, "prefix": "big"}))
        .await;
    generated.extend(
        env.generate(&user, json!({"count": 3, "size": 5_000, "prefix": "small"}))
            .await,
    );
    let session = env
        .client
        .read_session(&env.read, &token, &PullOptions::default())
        .await
        .unwrap()
        .value
        .key;
    // The first list call is answered busy, then cut, then short; after that three
    // requests in ten get a fault.
    let kinds = ["503", "429", "500", "drop", "reset", "truncate"];
    env.set_faults(json!({
        "rate": 0.3, "seed": 11, "kinds": kinds, "next": ["503", "reset", "truncate"]
    }))
    .await;
    let mut events = Vec::new();
    let summary = env
        .client
        .read_all_files(&env.read, &token, &session, fast(), |e| events.push(e))
        .await
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
    let faults = env.faults().await;
    let injected: u64 = kinds
        .iter()
        .map(|k| faults["injected"][k].as_u64().unwrap())
        .sum();
    assert!(injected >= 3, "{injected}");
    assert!(env.injected("truncate").await >= 1 && env.injected("reset").await >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_expiring_mid_flow_is_refreshed_once_and_surfaced() {
    let env = env().await;
    let token = env.authorize(&env.read).await;
    let before = env.requests_to("oauth/token").await;
    env.force_faults(&["expire"]).await;
    let accounts = env.client.read_accounts(&env.read, &token).await.unwrap();
    let new = accounts.refreshed_token.expect("the new token is returned");
    assert_eq!(env.requests_to("oauth/token").await - before, 1);
    let announced = env.refreshes.lock().unwrap().clone();
    assert_eq!(announced.len(), 1);
    assert_eq!(
        announced[0].access_token.value.expose(),
        new.access_token.value.expose()
    );
    assert_eq!(env.injected("expire").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_succeed_on_servers_whose_clocks_are_a_minute_off() {
    let env = env().await;
    let token = env.authorize(&env.write).await;
    let user = token.user_id().unwrap().to_owned();
    env.set_faults(json!({"skewMs": 60_000, "next": ["skew", "skew", "skew", "skew"]}))
        .await;
    for i in 0..4 {
        env.push(&token, format!("skewed {i}").as_bytes())
            .await
            .unwrap();
    }
    assert_eq!(env.injected("skew").await, 4);
    for i in 0..4 {
        assert_eq!(env.stored(&user, format!("skewed {i}").as_bytes()).await, 1);
    }
}
