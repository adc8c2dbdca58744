//! What the SDK logs: every event of a full authorize → push → refresh → read-all run
//! through the blocking driver against the sandbox, captured at `TRACE`. The calls
//! are all there, with their fields; no token, code, verifier, state, key, session
//! key or file content is.

use digime_blocking::Client;
use digime_protocol::{
    AuthorizeOptions, FileDescriptor, PullOptions, ReadAllOptions, parse_callback,
};
use digime_testkit::control::{quick_config, sandbox};
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::prelude::*;

/// A writer into a shared buffer, for the subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_full_run_logs_every_call_and_no_secret() {
    let captured = Captured::default();
    let writer = captured.clone();
    // The SDK's crates only: the sandbox runs in this process and logs its own way.
    let sdk_only = Targets::new()
        .with_target("digime_protocol", tracing::Level::TRACE)
        .with_target("digime_blocking", tracing::Level::TRACE)
        .with_target("digime_crypto", tracing::Level::TRACE);
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_span_events(FmtSpan::FULL)
        .with_writer(move || writer.clone())
        .with_filter(sdk_only);
    // Global: read-all's downloads run on threads of their own.
    tracing_subscriber::registry().with(layer).init();

    let (sandbox, control) = sandbox();
    let info = sandbox.info().clone();
    let client = Client::new(quick_config(&info));
    let (write, read) = (
        info.demo.write.contract().unwrap(),
        info.demo.read.contract().unwrap(),
    );
    let mut secrets: Vec<String> = Vec::new();
    let mut authorize = |contract, options| {
        let state = "state-0f3a9c";
        let auth = client
            .authorize_url(contract, "https://app.example/cb", state, options)
            .unwrap();
        let cb = parse_callback(&control.browse(&auth.url))
            .unwrap()
            .verify_state(state)
            .unwrap();
        let token = (client)
            .exchange_code_for_token(contract, &cb.code, &auth.code_verifier)
            .unwrap();
        secrets.extend([
            state.to_owned(),
            cb.code.expose().to_owned(),
            auth.code_verifier.expose().to_owned(),
            token.access_token.value.expose().to_owned(),
            token.refresh_token.value.expose().to_owned(),
        ]);
        token
    };
    let write_token = authorize(&write, AuthorizeOptions::default());
    let file = br#"{"diary":"a very private entry 7d1e"}"#;
    let descriptor = FileDescriptor::new("application/json");
    (client)
        .push_to_library(
            &write,
            &write_token,
            &descriptor,
            Cursor::new(file.to_vec()),
        )
        .unwrap();
    let read_token = authorize(
        &read,
        AuthorizeOptions {
            user_access_token: Some(write_token.clone()),
            ..Default::default()
        },
    );
    // The read runs on a refreshed token.
    control.expire_access_tokens(read_token.user_id().unwrap());
    let session = client
        .read_session(&read, &read_token, &PullOptions::default())
        .unwrap();
    let token = session.refreshed_token.expect("a refresh");
    let session = session.value.key;
    let options = ReadAllOptions {
        poll_interval: Duration::from_millis(50),
        ..ReadAllOptions::default()
    };
    let mut names = Vec::new();
    let summary = client
        .read_all_files(&read, &token, &session, options, |e| {
            if let digime_protocol::ReadAllEvent::File(f) = e {
                names.push(f.head.name.clone());
            }
        })
        .unwrap();
    assert!(summary.files_read > 0);
    secrets.extend([
        token.access_token.value.expose().to_owned(),
        token.refresh_token.value.expose().to_owned(),
        session.as_str().to_owned(),
        String::from_utf8(file.to_vec()).unwrap(),
        "a very private entry".to_owned(),
    ]);
    for contract in [&info.demo.write, &info.demo.read] {
        let pem = contract.private_key_pem().unwrap();
        // Every line of the key's base64, not just the whole PEM.
        secrets.extend(pem.lines().filter(|l| l.len() > 20).map(str::to_owned));
    }

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for secret in &secrets {
        assert!(!secret.is_empty());
        assert!(
            !log.contains(secret.as_str()),
            "the log shows {secret:?}:\n{log}"
        );
    }
    // A file name is the server's data: it shows only as a template.
    for name in &names {
        assert!(!log.contains(&format!("/{name}")), "the log shows {name:?}");
    }
    // And it is a real log: each call, with its fields.
    for expected in [
        "operation=\"authorize\"",
        "operation=\"exchange_code\"",
        "operation=\"refresh_token\"",
        "operation=\"jwks\"",
        "operation=\"PushToLibrary\"",
        "operation=\"ReadFileList\"",
        "operation=\"ReadFileMetadata\"",
        "path=/v1.7/permission-access/query/{}/{}",
        "path=/v1.7/oauth/token",
        "method=POST",
        "status=200",
        "refresh=true",
        "attempt=1",
        "duration_ms=",
    ] {
        assert!(log.contains(expected), "no {expected:?} in:\n{log}");
    }
}
