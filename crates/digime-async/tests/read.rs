//! Reading through the async driver against the strict sandbox: the same scenarios as
//! the blocking driver's read tests, with the same outcomes.

use digime_async::Client;
use digime_protocol::read::{AccountSyncStatus, FileMetadata};
use digime_protocol::{
    AuthorizeOptions, Contract, Error, FileData, FileDescriptor, PullOptions, ReadAllEvent,
    ReadAllOptions, ReadAllSummary, SessionKey, StopHandle, SyncState, UserAccessToken,
    parse_callback,
};
use digime_sandbox::{ConsentMode, RunningSandbox, Sandbox, SandboxConfig};
use digime_testkit::control::{AsyncControl, quick_config};
use digime_testkit::fixtures::{fast, files_of, hex};
use serde_json::json;
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CALLBACK: &str = "http://127.0.0.1:9/cb";

struct Env {
    _sandbox: RunningSandbox,
    /// The control plane, called from the blocking pool while this runtime serves.
    control: AsyncControl,
    client: Client,
    write: Contract,
    read: Contract,
    refreshes: Arc<Mutex<Vec<UserAccessToken>>>,
}

/// The sandbox's control plane (`post_json`, `requests_to`, `generate`, ...) is the
/// shared harness's.
impl std::ops::Deref for Env {
    type Target = AsyncControl;
    fn deref(&self) -> &AsyncControl {
        &self.control
    }
}

async fn env() -> Env {
    let sandbox = Sandbox::start(SandboxConfig {
        consent: ConsentMode::Auto,
        sync_step: Duration::from_millis(30),
        ..Default::default()
    })
    .await
    .unwrap();
    let info = sandbox.info().clone();
    let refreshes = Arc::new(Mutex::new(Vec::new()));
    let seen = refreshes.clone();
    Env {
        client: Client::new(quick_config(&info))
            .on_token_refreshed(move |t| seen.lock().unwrap().push(t.clone())),
        control: AsyncControl::new(&info),
        write: info.demo.write.contract().unwrap(),
        read: info.demo.read.contract().unwrap(),
        _sandbox: sandbox,
        refreshes,
    }
}

impl Env {
    async fn authorize(&self, contract: &Contract, options: AuthorizeOptions) -> UserAccessToken {
        let auth = self
            .client
            .authorize_url(contract, CALLBACK, "st", options)
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
    async fn session(&self, token: &UserAccessToken) -> SessionKey {
        self.client
            .read_session(&self.read, token, &PullOptions::default())
            .await
            .unwrap()
            .value
            .key
    }
    async fn read_all(
        &self,
        token: &UserAccessToken,
        options: ReadAllOptions,
    ) -> (Vec<ReadAllEvent<FileData>>, Result<ReadAllSummary, Error>) {
        let session = self.session(token).await;
        let mut events = Vec::new();
        let r = self
            .client
            .read_all_files(&self.read, token, &session, options, |e| events.push(e))
            .await;
        (events, r)
    }
    async fn wait_final(&self, token: &UserAccessToken, session: &SessionKey) {
        loop {
            let l = self
                .client
                .read_file_list(&self.read, token, session)
                .await
                .unwrap()
                .value;
            if l.status.state.is_final() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_write_contract_pushed_is_read_back_byte_for_byte() {
    let env = env().await;
    let write_token = env.authorize(&env.write, AuthorizeOptions::default()).await;
    let receipt = br#"{"receipt":7}"#.to_vec();
    let mut descriptor = FileDescriptor::new("application/json");
    descriptor.tags = Some(vec!["async-receipt".into()]);
    env.client
        .push_to_library(
            &env.write,
            &write_token,
            &descriptor,
            Cursor::new(receipt.clone()),
        )
        .await
        .unwrap();
    let read_token = env
        .authorize(
            &env.read,
            AuthorizeOptions {
                user_access_token: Some(write_token),
                ..Default::default()
            },
        )
        .await;
    let (events, summary) = env.read_all(&read_token, fast()).await;
    assert_eq!(summary.unwrap().status.state, SyncState::Completed);
    let pushed: Vec<&FileData> = events
        .iter()
        .filter_map(|e| match e {
            ReadAllEvent::File(f) => Some(f),
            _ => None,
        })
        .filter(|f| matches!(&f.head.metadata, FileMetadata::Raw(m) if m.tags.as_deref() == Some(&["async-receipt".to_string()][..])))
        .collect();
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0].data, receipt);
    assert!(events.iter().any(
        |e| matches!(e, ReadAllEvent::File(f) if matches!(f.head.metadata, FileMetadata::Mapped(_)))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_whole_and_streamed_and_head() {
    let env = env().await;
    let token = env.authorize(&env.read, AuthorizeOptions::default()).await;
    let user = token.user_id().unwrap().to_owned();
    let mut expected = Vec::new();
    for (kind, size) in [("none", 70_001), ("gzip", 300_000), ("brotli", 1 << 20)] {
        for f in env
            .generate(
                &user,
                json!({"count": 1, "size": size, "compression": kind}),
            )
            .await
        {
            expected.push((
                f["name"].as_str().unwrap().to_owned(),
                f["sha256"].as_str().unwrap().to_owned(),
                size,
                kind,
            ));
        }
    }
    let session = env.session(&token).await;
    env.wait_final(&token, &session).await;
    for (name, sha, size, kind) in &expected {
        let whole = env
            .client
            .read_file(&env.read, &token, &session, name)
            .await
            .unwrap()
            .value;
        assert_eq!(whole.data.len(), *size);
        assert_eq!(hex(&digime_crypto::sha256(&whole.data)), *sha);
        assert_eq!(whole.head.compression.as_str().unwrap_or("none"), *kind);
        let mut streamed = Vec::new();
        env.client
            .read_file_to(&env.read, &token, &session, name, &mut streamed)
            .await
            .unwrap();
        assert_eq!(streamed, whole.data);
        let head = env
            .client
            .read_file_metadata(&env.read, &token, &session, name)
            .await
            .unwrap()
            .value;
        assert_eq!(head.metadata, whole.head.metadata);
    }
    let accounts = env
        .client
        .read_accounts(&env.read, &token)
        .await
        .unwrap()
        .value;
    assert!(accounts.len() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_account_ends_partial() {
    let env = env().await;
    let token = env.authorize(&env.read, AuthorizeOptions::default()).await;
    let user = token.user_id().unwrap().to_owned();
    let accounts = env
        .client
        .read_accounts(&env.read, &token)
        .await
        .unwrap()
        .value;
    let failing = accounts[1].id.clone();
    env.post_json(&format!("users/{user}/accounts/{failing}/fail"), json!({}))
        .await;
    let (_, summary) = env.read_all(&token, fast()).await;
    let summary = summary.unwrap();
    assert_eq!(summary.status.state, SyncState::Partial);
    assert!(matches!(
        &summary.status.details[&failing],
        AccountSyncStatus::Partial { error } if error.status_code == 511
    ));
    assert!(summary.files_read > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_files_are_errors_the_others_arrive_and_one_refresh_serves_all() {
    let env = env().await;
    let token = env.authorize(&env.read, AuthorizeOptions::default()).await;
    let user = token.user_id().unwrap().to_owned();
    let generated = env
        .generate(&user, json!({"count": 8, "size": 40_000, "prefix": "a"}))
        .await;
    let corrupt = generated[0]["name"].as_str().unwrap().to_owned();
    let truncated = generated[1]["name"].as_str().unwrap().to_owned();
    env.post_json(
        "settings",
        json!({"corrupt": [corrupt.clone()], "truncate": [truncated.clone()]}),
    )
    .await;
    let session = env.session(&token).await;
    let before = env.requests_to("/oauth/token").await;
    let mut events = Vec::new();
    let mut expired = false;
    let control = env.blocking().clone();
    let summary = env
        .client
        .read_all_files(&env.read, &token, &session, fast(), |e| {
            if !expired && matches!(e, ReadAllEvent::File(_)) {
                expired = true;
                // Expire now; `block_in_place` hands this worker's other tasks (the
                // sandbox's among them) to another worker while the callback waits.
                tokio::task::block_in_place(|| control.expire_access_tokens(&user));
            }
            events.push(e);
        })
        .await
        .unwrap();
    assert!(expired);
    assert_eq!(
        env.requests_to("/oauth/token").await - before,
        1,
        "one refresh"
    );
    assert_eq!(env.refreshes.lock().unwrap().len(), 1);
    assert!(summary.refreshed_token.is_some());
    let failed: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            ReadAllEvent::FileError { entry, .. } => Some(entry.name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed.contains(&corrupt) && failed.contains(&truncated));
    let files = files_of(&events);
    for g in &generated[2..] {
        let name = g["name"].as_str().unwrap();
        assert_eq!(
            hex(&digime_crypto::sha256(&files[name])),
            g["sha256"].as_str().unwrap()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_all_runs_in_a_spawned_task_into_writers_and_stops_cleanly() {
    let env = env().await;
    let token = env.authorize(&env.read, AuthorizeOptions::default()).await;
    let user = token.user_id().unwrap().to_owned();
    let big = env
        .generate(
            &user,
            json!({"count": 2, "size": 3 << 20, "compression": "brotli", "prefix": "big"}),
        )
        .await;
    let session = env.session(&token).await;
    let dir = std::env::temp_dir().join(format!("digime-async-read-{}", std::process::id()));
    tokio::fs::create_dir_all(&dir).await.unwrap();
    let (client, read, dir2) = (env.client.clone(), env.read.clone(), dir.clone());
    let (token2, session2) = (token.clone(), session.clone());
    // The future is Send: it runs on a spawned task.
    let summary = tokio::spawn(async move {
        client
            .read_all_files_to(
                &read,
                &token2,
                &session2,
                fast(),
                |head| {
                    let path = dir2.join(&head.name);
                    async move { tokio::fs::File::create(path).await }
                },
                |_| {},
            )
            .await
    })
    .await
    .unwrap()
    .unwrap();
    assert!(summary.files_read >= 2);
    for g in &big {
        let bytes = tokio::fs::read(dir.join(g["name"].as_str().unwrap()))
            .await
            .unwrap();
        assert_eq!(
            hex(&digime_crypto::sha256(&bytes)),
            g["sha256"].as_str().unwrap()
        );
    }
    let _ = tokio::fs::remove_dir_all(&dir).await;

    // A stop at the first status change: no more list calls, a clean summary.
    env.post_json("settings", json!({"syncStepMs": 200})).await;
    let session = env.session(&token).await;
    let stop = StopHandle::default();
    let summary = env
        .client
        .read_all_files(
            &env.read,
            &token,
            &session,
            ReadAllOptions {
                stop: stop.clone(),
                ..fast()
            },
            |e| {
                if matches!(e, ReadAllEvent::StatusChanged(_)) {
                    stop.stop();
                }
            },
        )
        .await
        .unwrap();
    assert!(summary.stopped);
    // The sync takes several 200 ms steps: without the stop the run would have gone
    // on to a final state.
    assert!(!summary.status.state.is_final());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_expired_sessions_are_clear_errors() {
    let env = env().await;
    let token = env.authorize(&env.read, AuthorizeOptions::default()).await;
    let e = env
        .client
        .read_file_list(&env.read, &token, &SessionKey::new("nope").unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.api().unwrap().code.as_str(), "SessionNotFound");
    let session = env.session(&token).await;
    env.expire_session(session.as_str()).await;
    let e = env
        .client
        .read_all_files(&env.read, &token, &session, fast(), |_| {})
        .await
        .unwrap_err();
    assert_eq!(e.api().unwrap().code.as_str(), "SessionExpired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_callers_open_fails_the_run_instead_of_escaping_it() {
    let env = env().await;
    let token = env.authorize(&env.read, AuthorizeOptions::default()).await;
    let session = env.session(&token).await;
    let result = env
        .client
        .read_all_files_to(
            &env.read,
            &token,
            &session,
            fast(),
            |_| async { panic!("the caller's open panics") as std::io::Result<tokio::io::Sink> },
            |_| {},
        )
        .await;
    assert!(
        matches!(result, Err(digime_protocol::Error::Misuse(_))),
        "{result:?}"
    );
}
