//! Hostile answers and callbacks (issue 11's findings), against the scripted server:
//! each refused with a typed error, in bounded memory, before anything is sent where
//! it can be.

mod support;

use digime_protocol::{
    AuthorizeOptions, CallbackError, Error, Output, SessionKey, TransportErrorKind, parse_callback,
};
use support::{Answer, World};

#[test]
fn a_file_read_into_memory_is_capped_and_a_streamed_one_is_not() {
    let w = World::pinned(|c| c.max_buffered_file_bytes = 10_000);
    let big = vec![7u8; 50_000];
    let mut s = w.script();
    s.then(w.file(&big)).then(w.file(&big));
    let buffered = (w.sdk)
        .read_file(&w.contract, &w.token, &w.session, "f.json", Output::Buffer)
        .unwrap();
    match s.run(buffered) {
        Err(Error::Transport(t)) => assert_eq!(t.kind, TransportErrorKind::ResponseTooLarge),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.requests.len(), 1, "too large is not retried");
    let streamed = (w.sdk)
        .read_file(&w.contract, &w.token, &w.session, "f.json", Output::Stream)
        .unwrap();
    s.run(streamed).unwrap();
    assert_eq!(s.output, big);
}

#[test]
fn dot_segments_from_the_server_never_reach_a_path() {
    let w = World::new();
    let mut s = w.script();
    for bad in ["..", "."] {
        let session = SessionKey::new(bad).unwrap();
        let list = w.sdk.read_file_list(&w.contract, &w.token, &session);
        assert!(matches!(s.run(list), Err(Error::InvalidInput(_))), "{bad}");
        let file = (w.sdk)
            .read_file(&w.contract, &w.token, &w.session, bad, Output::Buffer)
            .unwrap();
        assert!(matches!(s.run(file), Err(Error::InvalidInput(_))), "{bad}");
    }
    assert!(s.requests.is_empty(), "nothing was sent");
    s.then(Answer::json(r#"{"status":{"state":"pending"}}"#));
    let odd = SessionKey::new("...").unwrap();
    s.run(w.sdk.read_file_list(&w.contract, &w.token, &odd))
        .unwrap();
    assert_eq!(s.last().path, "permission-access/query/...");
}

#[test]
fn an_empty_state_is_refused_at_both_ends() {
    let w = World::new();
    let empty = w.sdk.authorize_url(
        &w.contract,
        "https://app.example/cb",
        "",
        AuthorizeOptions::default(),
    );
    assert!(matches!(empty, Err(Error::InvalidInput(_))));
    // A callback whose state is empty verifies against nothing, not against "".
    let cb = parse_callback("https://app.example/cb?success=true&code=c&state=").unwrap();
    assert_eq!(cb.verify_state(""), Err(CallbackError::StateMismatch));
}

#[test]
fn a_sync_that_never_ends_is_polled_for_max_duration_then_stopped() {
    let w = World::new();
    let mut s = w.script();
    // Polls at 0, 3, 6 and 9 s; at 12 s the run is over its 10 s.
    for _ in 0..4 {
        s.then(World::list("running", &[]));
    }
    let options = digime_protocol::ReadAllOptions {
        max_duration: std::time::Duration::from_secs(10),
        ..Default::default()
    };
    let run = s.read_all(w.read_all(options));
    let summary = run.summary();
    assert!(summary.stopped && summary.timed_out, "{summary:?}");
    assert_eq!(run.count("list"), 4);
}

#[test]
fn a_server_inventing_file_names_ends_the_run_at_max_files() {
    let w = World::new();
    let mut s = w.script();
    s.then(World::list("running", &[("a", 1), ("b", 1), ("c", 1)]));
    for body in [b"1", b"2", b"3"] {
        s.then(w.file(body));
    }
    // Three more new names: the sixth is one more than the run keeps track of.
    s.then(World::list("running", &[("d", 1), ("e", 1), ("f", 1)]));
    let options = digime_protocol::ReadAllOptions {
        max_files: 5,
        ..Default::default()
    };
    let run = s.read_all(w.read_all(options));
    match &run.result {
        Some(Err(Error::Decode { context, detail })) => {
            assert_eq!(*context, "file list");
            assert!(detail.contains("max_files"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(run.files.len(), 3);
    assert_eq!(run.count("list"), 2);
    assert!(
        !run.log.iter().any(|l| l.starts_with("get d")),
        "{:?}",
        run.log
    );
}

#[test]
fn an_oversized_token_is_refused_and_a_far_future_retry_after_is_not_waited_for() {
    let w = World::new();
    let mut s = w.script();
    // A token the server signed, 64 KiB long: refused, not carried in every request.
    let huge = "a".repeat(64 * 1024);
    s.then(Answer::status(401))
        .then(w.keys.token_answer(&huge, "r2"));
    match s.run(w.sdk.read_accounts(&w.contract, &w.token)) {
        Err(Error::Decode { context, detail }) => {
            assert_eq!(context, "token");
            assert!(detail.contains("longer than"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    // Busy until the year 9999, or for more seconds than fit in a u64: the error at
    // once, not a sleep.
    for after in ["Fri, 31 Dec 9999 23:59:59 GMT", "99999999999999999999999"] {
        let mut s = w.script();
        s.then(Answer::status(503).header("retry-after", after));
        match s.run(w.sdk.read_accounts(&w.contract, &w.token)) {
            Err(Error::UnexpectedStatus { status: 503, .. }) => {}
            other => panic!("{after}: {other:?}"),
        }
        assert!(s.sleeps.is_empty(), "{after}: slept {:?}", s.sleeps);
    }
}

#[test]
fn deep_json_and_a_huge_key_set_are_typed_errors() {
    // serde_json refuses nesting past 128 levels: an error, never a stack overflow.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let w = World::new();
    let mut s = w.script();
    // Asked again as the policy allows (a malformed answer to a GET), then refused.
    for _ in 0..3 {
        s.then(Answer::json(&format!(
            r#"{{"status":{{"state":"running"}},"fileList":{deep}}}"#
        )));
    }
    let list = w.sdk.read_file_list(&w.contract, &w.token, &w.session);
    assert!(matches!(s.run(list), Err(Error::Decode { .. })));
    s.assert_consumed();
    assert!(digime_protocol::KeySet::parse(deep.as_bytes()).is_err());
    // A key set of more keys than any server publishes is refused before parsing them.
    let keys: Vec<String> = (0..10_000)
        .map(|i| format!(r#"{{"kid":"k{i}","kty":"RSA","n":"AQAB","e":"AQAB"}}"#))
        .collect();
    let set = format!(r#"{{"keys":[{}]}}"#, keys.join(","));
    match digime_protocol::KeySet::parse(set.as_bytes()) {
        Err(Error::Decode { detail, .. }) => assert!(detail.contains("keys"), "{detail}"),
        other => panic!("{other:?}"),
    }
}

/// A decompression bomb: 64 MiB of zeros, compressed (`fixtures/generated`).
fn bomb(ext: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../fixtures/generated/bomb-64mib.{ext}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(path).unwrap()
}

#[test]
fn a_decompression_bomb_comes_out_a_bounded_step_at_a_time() {
    use digime_protocol::file::STEP;
    use digime_protocol::flow::{Flow, Step};
    use digime_protocol::http::Response;
    for (ext, compression) in [("br", "brotli"), ("gz", "gzip")] {
        let w = World::new();
        let public = w.contract.key().public_key();
        let file = digime_crypto::envelope::encrypt(
            &public,
            &bomb(ext),
            digime_crypto::envelope::Format::Current,
        )
        .unwrap();
        let meta = serde_json::json!({"metadata": {"mimetype": "application/octet-stream",
            "accounts": []}, "compression": compression});
        let head = Response::builder()
            .status(200)
            .header(
                "x-metadata",
                digime_crypto::b64url_encode(meta.to_string().as_bytes()),
            )
            .body(Vec::new())
            .unwrap();
        let mut flow = (w.sdk)
            .read_file(&w.contract, &w.token, &w.session, "bomb", Output::Stream)
            .unwrap();
        let now = std::time::SystemTime::now();
        let Step::Send(_) = flow.poll(now) else {
            panic!()
        };
        flow.handle_response(head);
        assert!(matches!(flow.poll(now), Step::Receive));
        // The whole file in one network chunk, as a hostile server would send it.
        let (mut total, mut largest, mut steps) = (0usize, 0usize, 0usize);
        let mut out = Vec::new();
        let mut take = |out: &mut Vec<u8>| {
            assert!(out.iter().all(|&b| b == 0));
            largest = largest.max(out.len());
            total += out.len();
            steps += 1;
            out.clear();
        };
        assert!(flow.handle_body(&file, &mut out));
        take(&mut out);
        while digime_protocol::flow::drain_body(&mut flow, &mut out) || !out.is_empty() {
            take(&mut out);
        }
        flow.handle_body_end(&mut out);
        take(&mut out);
        while digime_protocol::flow::drain_body(&mut flow, &mut out) || !out.is_empty() {
            take(&mut out);
        }
        let Step::Done(Ok(_)) = flow.poll(now) else {
            panic!("{compression}")
        };
        assert_eq!(total, 64 << 20, "{compression}");
        // Each step is bounded (gzip's decoder holds back at most its 32 KiB buffer).
        assert!(
            largest <= STEP + 64 * 1024,
            "{compression}: a step of {largest} bytes"
        );
        assert!(steps >= 64, "{compression}: {steps} steps");
    }
}
