//! Reading through the blocking driver against the strict sandbox: sessions, every
//! file-list state, downloads (whole and streamed, every compression), accounts,
//! read-all with partial syncs, changing files, broken files, an expired token, and a
//! stop; and reading back, byte for byte, what a write contract pushed.

use digime_blocking::Client;
use digime_protocol::read::{AccountSyncStatus, FileMetadata};
use digime_protocol::{
    AuthorizeOptions, Contract, Error, FileData, FileDescriptor, PullOptions, ReadAllEvent,
    ReadAllOptions, SessionKey, StopHandle, SyncState, UserAccessToken, parse_callback,
};
use digime_sandbox::BackgroundSandbox;
use digime_testkit::control::{Control, quick_config};
use digime_testkit::fixtures::{fast, files_of, hex};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CALLBACK: &str = "http://localhost:9999/return";

struct Env {
    _sandbox: BackgroundSandbox,
    control: Control,
    client: Client,
    write: Contract,
    read: Contract,
    refreshes: Arc<Mutex<Vec<UserAccessToken>>>,
}

/// The sandbox's control plane (`post_json`, `requests_to`, `generate`, `browse`) is
/// the shared harness's.
impl std::ops::Deref for Env {
    type Target = Control;
    fn deref(&self) -> &Control {
        &self.control
    }
}

fn env() -> Env {
    let (sandbox, control) = digime_testkit::control::sandbox();
    let info = sandbox.info().clone();
    let refreshes = Arc::new(Mutex::new(Vec::new()));
    let seen = refreshes.clone();
    let client = Client::new(quick_config(&info))
        .on_token_refreshed(move |t| seen.lock().unwrap().push(t.clone()));
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
    fn authorize(&self, contract: &Contract, options: AuthorizeOptions) -> UserAccessToken {
        let auth = self
            .client
            .authorize_url(contract, CALLBACK, "st", options)
            .unwrap();
        let callback = parse_callback(&self.browse(&auth.url))
            .unwrap()
            .verify_state("st")
            .unwrap();
        self.client
            .exchange_code_for_token(contract, &callback.code, &auth.code_verifier)
            .unwrap()
    }
    /// A user with a read token (the demo library, plus whatever is generated).
    fn reader(&self) -> UserAccessToken {
        self.authorize(&self.read, AuthorizeOptions::default())
    }
    fn session(&self, token: &UserAccessToken) -> SessionKey {
        self.client
            .read_session(&self.read, token, &PullOptions::default())
            .unwrap()
            .value
            .key
    }
    fn read_all(
        &self,
        token: &UserAccessToken,
        options: ReadAllOptions,
    ) -> (
        Vec<ReadAllEvent<FileData>>,
        Result<digime_protocol::ReadAllSummary, Error>,
    ) {
        let session = self.session(token);
        let mut events = Vec::new();
        let r = self
            .client
            .read_all_files(&self.read, token, &session, options, |e| events.push(e));
        (events, r)
    }
}

#[test]
fn what_a_write_contract_pushed_is_read_back_byte_for_byte() {
    let env = env();
    let write_token = env.authorize(&env.write, AuthorizeOptions::default());
    let receipt = br#"{"receipt":42,"total":"9.99"}"#.to_vec();
    let mut descriptor = FileDescriptor::new("application/json");
    descriptor.tags = Some(vec!["receipt".into()]);
    env.client
        .push_to_library(
            &env.write,
            &write_token,
            &descriptor,
            Cursor::new(receipt.clone()),
        )
        .unwrap();
    // The read contract, linked to the same user with the write token.
    let read_token = env.authorize(
        &env.read,
        AuthorizeOptions {
            user_access_token: Some(write_token.clone()),
            ..Default::default()
        },
    );
    assert_eq!(read_token.user_id(), write_token.user_id());
    let (events, summary) = env.read_all(&read_token, fast());
    let summary = summary.unwrap();
    assert_eq!(summary.status.state, SyncState::Completed);
    let raw: Vec<&FileData> = events
        .iter()
        .filter_map(|e| match e {
            ReadAllEvent::File(f) => Some(f),
            _ => None,
        })
        .filter(|f| matches!(&f.head.metadata, FileMetadata::Raw(m) if m.tags.as_deref() == Some(&["receipt".to_string()][..])))
        .collect();
    assert_eq!(raw.len(), 1, "the pushed file comes back once");
    assert_eq!(raw[0].data, receipt);
    let FileMetadata::Raw(meta) = &raw[0].head.metadata else {
        unreachable!()
    };
    assert_eq!(meta.mimetype, "application/json");
    assert_eq!(meta.contractid.as_deref(), Some(env.write.id().as_str()));
    assert!(raw[0].head.last_modified.is_some());
    // The seeded service data comes too: mapped JSON of several object types.
    let mapped: Vec<&FileData> = events
        .iter()
        .filter_map(|e| match e {
            ReadAllEvent::File(f) if matches!(f.head.metadata, FileMetadata::Mapped(_)) => Some(f),
            _ => None,
        })
        .collect();
    assert!(mapped.len() >= 3, "{}", mapped.len());
    for f in &mapped {
        let v: Value = serde_json::from_slice(&f.data).expect("mapped data is JSON");
        assert!(v.is_array() || v.is_object());
    }
    assert_eq!(
        summary.files_read,
        events
            .iter()
            .filter(|e| matches!(e, ReadAllEvent::File(_)))
            .count()
    );
    assert_eq!(summary.files_failed, 0);
}

#[test]
fn the_file_list_goes_through_every_state_and_accounts_match() {
    let env = env();
    // Steps long enough that a poll lands in each state, even on a loaded machine.
    env.post_json("settings", json!({"syncStepMs": 400}));
    let token = env.reader();
    let session = env.session(&token);
    let mut seen = Vec::new();
    let list = loop {
        let list = env
            .client
            .read_file_list(&env.read, &token, &session)
            .unwrap()
            .value;
        if seen.last() != Some(&list.status.state) {
            seen.push(list.status.state);
        }
        if list.status.state.is_final() {
            break list;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        seen,
        [SyncState::Pending, SyncState::Running, SyncState::Completed]
    );
    assert!(!list.file_list.is_empty());
    assert!(list.file_list.iter().all(|f| f.updated_date > 0));
    let accounts = env.client.read_accounts(&env.read, &token).unwrap().value;
    assert!(!accounts.is_empty());
    for id in list.status.details.keys() {
        assert!(accounts.iter().any(|a| &a.id == id), "{id}");
    }
    // HEAD gives the same metadata as the download.
    let name = &list.file_list[0].name;
    let head = env
        .client
        .read_file_metadata(&env.read, &token, &session, name)
        .unwrap()
        .value;
    let file = env
        .client
        .read_file(&env.read, &token, &session, name)
        .unwrap()
        .value;
    assert_eq!(head.metadata, file.head.metadata);
    assert_eq!(head.name, *name);
}

#[test]
fn every_compression_reads_back_the_generated_bytes_whole_and_streamed() {
    let env = env();
    let token = env.reader();
    let user = token.user_id().unwrap().to_owned();
    let mut expected = BTreeMap::new();
    for (kind, size) in [("none", 70_001), ("gzip", 300_000), ("brotli", 1 << 20)] {
        for f in env.generate(
            &user,
            json!({"count": 1, "size": size, "compression": kind, "prefix": format!("c-{kind}")}),
        ) {
            expected.insert(
                f["name"].as_str().unwrap().to_owned(),
                (f["sha256"].as_str().unwrap().to_owned(), size, kind),
            );
        }
    }
    let session = env.session(&token);
    // Wait for the sync to list them.
    loop {
        let l = env
            .client
            .read_file_list(&env.read, &token, &session)
            .unwrap()
            .value;
        if l.status.state.is_final() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for (name, (sha, size, kind)) in &expected {
        let whole = env
            .client
            .read_file(&env.read, &token, &session, name)
            .unwrap()
            .value;
        assert_eq!(whole.data.len(), *size, "{name}");
        assert_eq!(hex(&digime_crypto::sha256(&whole.data)), *sha, "{name}");
        assert_eq!(whole.head.compression.as_str().unwrap_or("none"), *kind);
        let mut streamed = Vec::new();
        env.client
            .read_file_to(&env.read, &token, &session, name, &mut streamed)
            .unwrap();
        assert_eq!(streamed, whole.data, "{name}");
    }
}

#[test]
fn a_failing_account_ends_partial_and_the_other_files_arrive() {
    let env = env();
    let token = env.reader();
    let user = token.user_id().unwrap().to_owned();
    let accounts = env.client.read_accounts(&env.read, &token).unwrap().value;
    assert!(accounts.len() >= 2, "the demo library has two accounts");
    let failing = accounts[0].id.clone();
    env.post_json(&format!("users/{user}/accounts/{failing}/fail"), json!({}));
    let (events, summary) = env.read_all(&token, fast());
    let summary = summary.unwrap();
    assert_eq!(summary.status.state, SyncState::Partial);
    match &summary.status.details[&failing] {
        AccountSyncStatus::Partial { error } => {
            assert_eq!(error.code, "ServiceAuthorizationError");
            assert_eq!(error.status_code, 511);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        summary.status.details[&accounts[1].id],
        AccountSyncStatus::Completed
    ));
    assert!(summary.files_read > 0);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ReadAllEvent::StatusChanged(s) if s.state == SyncState::Partial))
    );
    // The status events never report the initial pending.
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ReadAllEvent::StatusChanged(s) if s.state == SyncState::Pending))
    );
}

#[test]
fn a_file_rewritten_mid_sync_is_read_again_with_its_new_content() {
    let env = env();
    // Steps long enough that a poll sees the file before and after its rewrite.
    env.post_json(
        "settings",
        json!({"rewriteMidSync": true, "syncStepMs": 400}),
    );
    let token = env.reader();
    let (events, summary) = env.read_all(&token, fast());
    summary.unwrap();
    let mut versions: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for e in &events {
        if let ReadAllEvent::File(f) = e {
            versions
                .entry(f.head.name.clone())
                .or_default()
                .push(f.data.clone());
        }
    }
    let twice: Vec<_> = versions.iter().filter(|(_, v)| v.len() == 2).collect();
    assert_eq!(twice.len(), 1, "exactly the rewritten file comes twice");
    assert_ne!(twice[0].1[0], twice[0].1[1], "with new content");
    assert!(versions.values().all(|v| v.len() <= 2));
}

#[test]
fn unknown_and_expired_sessions_are_clear_errors() {
    let env = env();
    let token = env.reader();
    let unknown = env
        .client
        .read_file_list(
            &env.read,
            &token,
            &SessionKey::new("no-such-session").unwrap(),
        )
        .unwrap_err();
    assert_eq!(unknown.api().unwrap().status, 404);
    assert_eq!(unknown.api().unwrap().code.as_str(), "SessionNotFound");
    let session = env.session(&token);
    env.expire_session(session.as_str());
    let expired = env
        .client
        .read_file_list(&env.read, &token, &session)
        .unwrap_err();
    assert_eq!(expired.api().unwrap().code.as_str(), "SessionExpired");
    assert!(!expired.needs_reauthorization());
    // read_all ends with the same error.
    let mut events = 0;
    let err = env
        .client
        .read_all_files(&env.read, &token, &session, fast(), |_| events += 1)
        .unwrap_err();
    assert_eq!(err.api().unwrap().code.as_str(), "SessionExpired");
    assert_eq!(events, 0);
    // A file of an unknown session is a 404 too, not a refresh.
    let e = env
        .client
        .read_file(&env.read, &token, &session, "x.json")
        .unwrap_err();
    assert!(e.api().is_some());
    assert!(env.refreshes.lock().unwrap().is_empty());
}

#[test]
fn corrupted_and_truncated_files_are_errors_and_the_others_are_delivered() {
    let env = env();
    let token = env.reader();
    let user = token.user_id().unwrap().to_owned();
    let generated = env.generate(&user, json!({"count": 4, "size": 50_000, "prefix": "bad"}));
    let corrupt = generated[0]["name"].as_str().unwrap().to_owned();
    let truncated = generated[1]["name"].as_str().unwrap().to_owned();
    env.post_json(
        "settings",
        json!({"corrupt": [corrupt.clone()], "truncate": [truncated.clone()]}),
    );
    let (events, summary) = env.read_all(&token, fast());
    let summary = summary.unwrap();
    let mut failed = BTreeMap::new();
    for e in &events {
        if let ReadAllEvent::FileError { entry, error } = e {
            failed.insert(entry.name.clone(), error.to_string());
        }
    }
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed.contains_key(&corrupt) && failed.contains_key(&truncated));
    let files = files_of(&events);
    for g in &generated[2..] {
        let name = g["name"].as_str().unwrap();
        assert_eq!(
            hex(&digime_crypto::sha256(&files[name])),
            g["sha256"].as_str().unwrap()
        );
    }
    assert_eq!(summary.files_failed, 2);
    // Whole-file reads give typed errors too.
    let session = env.session(&token);
    loop {
        let l = env
            .client
            .read_file_list(&env.read, &token, &session)
            .unwrap()
            .value;
        if l.status.state.is_final() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let e = env
        .client
        .read_file(&env.read, &token, &session, &corrupt)
        .unwrap_err();
    assert!(
        matches!(e, Error::Decryption(_) | Error::Decompression { .. }),
        "{e:?}"
    );
    let e = env
        .client
        .read_file(&env.read, &token, &session, &truncated)
        .unwrap_err();
    assert!(
        matches!(e, Error::Decryption(_) | Error::Transport(_)),
        "{e:?}"
    );
}

#[test]
fn an_access_token_expiring_during_read_all_is_refreshed_once() {
    let env = env();
    let token = env.reader();
    let user = token.user_id().unwrap().to_owned();
    env.generate(
        &user,
        json!({"count": 12, "size": 10_000, "prefix": "many"}),
    );
    let session = env.session(&token);
    let before = env.requests_to("/oauth/token");
    let mut events = Vec::new();
    let mut expired = false;
    let summary = env
        .client
        .read_all_files(
            &env.read,
            &token,
            &session,
            ReadAllOptions {
                max_concurrency: 4,
                ..fast()
            },
            |e| {
                if !expired && matches!(e, ReadAllEvent::File(_)) {
                    expired = true;
                    env.expire_access_tokens(&user);
                }
                events.push(e);
            },
        )
        .unwrap();
    assert!(expired);
    assert_eq!(env.requests_to("/oauth/token") - before, 1, "one refresh");
    let refreshed = summary
        .refreshed_token
        .expect("the new token is handed over");
    assert_eq!(*env.refreshes.lock().unwrap(), vec![refreshed.clone()]);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, ReadAllEvent::TokenRefreshed(_)))
            .count(),
        1
    );
    assert_eq!(summary.files_failed, 0);
    let names = files_of(&events);
    assert!(names.keys().filter(|n| n.starts_with("many")).count() == 12);
    // The old refresh token is spent; the new one works.
    assert!(env.client.refresh_token(&env.read, &token).is_err());
    env.client.read_accounts(&env.read, &refreshed).unwrap();
}

#[test]
fn read_all_into_writers_streams_every_file() {
    let env = env();
    let token = env.reader();
    let user = token.user_id().unwrap().to_owned();
    let big = env.generate(
        &user,
        json!({"count": 2, "size": 3 << 20, "compression": "gzip", "prefix": "big"}),
    );
    let session = env.session(&token);
    let written: Mutex<BTreeMap<String, Arc<Mutex<Vec<u8>>>>> = Mutex::new(BTreeMap::new());
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut heads = Vec::new();
    let summary = env
        .client
        .read_all_files_to(
            &env.read,
            &token,
            &session,
            fast(),
            |head| {
                let buf = Arc::new(Mutex::new(Vec::new()));
                written
                    .lock()
                    .unwrap()
                    .insert(head.name.clone(), buf.clone());
                Ok(Shared(buf))
            },
            |e| {
                if let ReadAllEvent::File(h) = e {
                    heads.push(h.name);
                }
            },
        )
        .unwrap();
    assert_eq!(summary.files_read, heads.len());
    let written = written.into_inner().unwrap();
    for g in &big {
        let name = g["name"].as_str().unwrap();
        let bytes = written[name].lock().unwrap();
        assert_eq!(bytes.len(), 3 << 20);
        assert_eq!(
            hex(&digime_crypto::sha256(&bytes)),
            g["sha256"].as_str().unwrap()
        );
    }
}

#[test]
fn a_stop_ends_read_all_cleanly() {
    let env = env();
    env.post_json("settings", json!({"syncStepMs": 200}));
    let token = env.reader();
    let session = env.session(&token);
    let stop = StopHandle::default();
    let options = ReadAllOptions {
        stop: stop.clone(),
        ..fast()
    };
    let list_path = format!("/query/{}", session.as_str());
    let mut lists_at_stop = None;
    let summary = env
        .client
        .read_all_files(&env.read, &token, &session, options, |e| {
            if matches!(e, ReadAllEvent::StatusChanged(_)) && lists_at_stop.is_none() {
                lists_at_stop = Some(env.requests_to(&list_path));
                stop.stop();
            }
        })
        .unwrap();
    assert!(summary.stopped);
    // The sync takes several 200 ms steps: without the stop, more list calls would
    // have followed and the run would have ended on a final state.
    assert!(!summary.status.state.is_final());
    assert_eq!(
        Some(env.requests_to(&list_path)),
        lists_at_stop,
        "no list call after the stop"
    );
}

#[test]
fn a_write_only_contract_cannot_open_a_read_session() {
    let env = env();
    let write_token = env.authorize(&env.write, AuthorizeOptions::default());
    let e = env
        .client
        .read_session(&env.write, &write_token, &PullOptions::default())
        .unwrap_err();
    assert_eq!(e.api().unwrap().status, 403);
    assert_eq!(e.api().unwrap().code.as_str(), "InsufficientScope");
}

#[test]
fn a_panic_in_the_callers_open_fails_the_run_instead_of_hanging_it() {
    let env = env();
    let token = env.authorize(&env.read, AuthorizeOptions::default());
    let session = env.session(&token);
    let result = env.client.read_all_files_to(
        &env.read,
        &token,
        &session,
        fast(),
        |_| -> std::io::Result<std::io::Sink> { panic!("the caller's open panics") },
        |_| {},
    );
    assert!(
        matches!(result, Err(digime_protocol::Error::Misuse(_))),
        "{result:?}"
    );
}
