//! Fault injection on the wire: each kind as a client sees it, raw (no SDK), on
//! kept-alive connections too; before-processing faults change nothing, after-processing
//! ones keep the handler's effect; the draws repeat from a seed; the control API is
//! never faulted.

mod support;

use digime_sandbox::faults::{FaultKind, Faults};
use digime_sandbox::{ConsentMode, SandboxConfig};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use support::{Env, config, raw_connection, read_response, start};

fn env() -> Env {
    start(config(ConsentMode::Auto))
}

fn force(env: &Env, kinds: &[&str]) {
    env.control_post("faults", json!({ "next": kinds })).ok(200);
}

fn jwks(env: &Env) -> Vec<u8> {
    let r = env.get(&env.api("jwks/oauth"));
    assert_eq!(r.status, 200);
    r.body
}

/// One GET of `path` on a fresh connection, read raw to the end: `(head, body)`, or the
/// error that ended it.
fn raw_get(env: &Env, path: &str) -> (String, Vec<u8>, Option<std::io::Error>) {
    let (mut w, mut r, host) = raw_connection(env);
    write!(
        w,
        "GET /v1.7/{path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    let err = r.read_to_end(&mut all).err();
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(all.len(), |p| p + 4);
    let body = all.split_off(split);
    (String::from_utf8_lossy(&all).into_owned(), body, err)
}

/// Decodes a chunked body; `None` unless it ends with the last chunk.
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&body[..line_end]).ok()?, 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return (body == b"\r\n").then_some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

#[test]
fn busy_answers_have_the_error_shape_and_retry_after_and_the_next_request_is_served() {
    let env = env();
    env.control_post("faults", json!({ "retryAfter": 7, "next": ["503", "429"] }))
        .ok(200);
    // All three on one kept-alive connection.
    let (mut w, mut r, host) = raw_connection(&env);
    for (want, code) in [
        (503, Some("ServiceUnavailable")),
        (429, Some("TooManyRequests")),
        (200, None),
    ] {
        write!(w, "GET /v1.7/jwks/oauth HTTP/1.1\r\nhost: {host}\r\n\r\n").unwrap();
        let reply = read_response(&mut r).unwrap();
        assert_eq!(reply.status, want);
        if let Some(code) = code {
            reply.error(want, code);
            assert_eq!(reply.header("retry-after"), Some("7"));
        } else {
            assert!(reply.json()["keys"].is_array());
        }
    }
    let view = env.control_json("faults");
    assert_eq!(view["injected"]["503"], 1);
    assert_eq!(view["injected"]["429"], 1);
    assert_eq!(view["requests"], 3, "the control API is not counted");
    let log = env.control_json("requests");
    let faults: Vec<&Value> = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["fault"])
        .collect();
    assert_eq!(faults, [&json!("503"), &json!("429"), &Value::Null]);
}

#[test]
fn a_busy_write_is_not_processed_and_a_500_one_is() {
    let env = env();
    let user = env.user();
    let descriptor = json!({"metadata": {"mimeType": "text/plain", "accounts": []}});
    for (kind, stored) in [("503", 0), ("429", 0), ("500", 1)] {
        let before = env.control_json(&format!("users/{}/files", user.id))["files"]
            .as_array()
            .unwrap()
            .len();
        force(&env, &[kind]);
        let r = env.import(&user.write_at, &descriptor, b"hello");
        assert_eq!(r.status.to_string(), kind);
        let after = env.control_json(&format!("users/{}/files", user.id))["files"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(after - before, stored, "{kind}");
    }
}

#[test]
fn a_drop_answers_nothing_and_processes_nothing() {
    let env = env();
    let user = env.user();
    force(&env, &["drop"]);
    let descriptor = json!({"metadata": {"mimeType": "text/plain", "accounts": []}});
    let r = env
        .http
        .post(env.api("permission-access/import"))
        .header(
            "authorization",
            env.user_bearer(&support::write_client(), &user.write_at),
        )
        .header("filedescriptor", support::sign(&env.write_key, &descriptor))
        .content_type("application/octet-stream")
        .send(&b"hello"[..]);
    assert!(r.is_err(), "{r:?}");
    let files = env.control_json(&format!("users/{}/files", user.id));
    assert_eq!(files["files"].as_array().unwrap().len(), 0);

    // Raw: not one byte of an answer.
    force(&env, &["drop"]);
    let (head, body, _) = raw_get(&env, "jwks/oauth");
    assert_eq!((head.as_str(), body.len()), ("", 0));
}

#[test]
fn a_reset_cuts_the_body_after_the_head_and_a_truncate_ends_it_cleanly() {
    let env = env();
    let whole = jwks(&env);

    force(&env, &["reset"]);
    let (head, body, _) = raw_get(&env, "jwks/oauth");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let sent = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        assert!(dechunk(&body).is_none(), "the body must not end cleanly");
        dechunk_prefix(&body)
    } else {
        body
    };
    assert!(
        sent.len() < whole.len(),
        "{} of {}",
        sent.len(),
        whole.len()
    );
    assert!(whole.starts_with(&sent));

    force(&env, &["truncate"]);
    let (head, body, err) = raw_get(&env, "jwks/oauth");
    assert!(err.is_none(), "{err:?}");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("content-length"),
        "{head}"
    );
    let got = dechunk(&body).expect("a cleanly ended body");
    assert_eq!(got, whole[..whole.len() / 2]);

    // A bodiless answer is reset before its head.
    force(&env, &["reset"]);
    let (mut w, mut r, host) = raw_connection(&env);
    write!(w, "HEAD /v1.7/jwks/oauth HTTP/1.1\r\nhost: {host}\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let _ = r.read_to_end(&mut got);
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert_eq!(env.control_json("faults")["injected"]["reset"], 1);
}

/// The data of the complete chunks at the start of a chunked body.
fn dechunk_prefix(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let Some(size) = std::str::from_utf8(&body[..end])
            .ok()
            .and_then(|s| usize::from_str_radix(s, 16).ok())
        else {
            break;
        };
        let Some(data) = body.get(end + 2..end + 2 + size) else {
            break;
        };
        out.extend_from_slice(data);
        body = &body[(end + 4 + size).min(body.len())..];
    }
    out
}

#[test]
fn a_stall_holds_the_answer_back() {
    let env = env();
    env.control_post("faults", json!({ "stallMs": 400, "next": ["stall"] }))
        .ok(200);
    let t = Instant::now();
    assert!(!jwks(&env).is_empty());
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn expire_expires_the_requests_access_token_and_skew_moves_the_clock() {
    let env = env();
    let user = env.user();
    assert_eq!(
        env.accounts_reply(&support::read_client(), &user.read_at)
            .status,
        200
    );
    force(&env, &["expire"]);
    let r = env.accounts_reply(&support::read_client(), &user.read_at);
    assert!(r.error(401, "InvalidToken").contains("expired"));
    // For good: the token stays expired once the fault has passed.
    let r = env.accounts_reply(&support::read_client(), &user.read_at);
    r.error(401, "InvalidToken");

    // Ten minutes either way puts a timestamp of now outside the five-minute window.
    env.control_post(
        "faults",
        json!({ "skewMs": 600_000, "next": ["skew", "skew"] }),
    )
    .ok(200);
    for _ in 0..2 {
        let r = env.accounts_reply(&support::read_client(), &user.read_at);
        assert!(r.error(406, "InvalidRequest").contains("timestamp"));
    }
}

#[test]
fn the_draws_follow_the_rate_and_repeat_from_the_seed() {
    let env = env();
    let run = || {
        env.control_post(
            "faults",
            json!({ "rate": 0.3, "seed": 42, "kinds": ["503", "429"] }),
        )
        .ok(200);
        (0..200)
            .map(|_| env.get(&env.api("jwks/oauth")).status)
            .collect::<Vec<u16>>()
    };
    let first = run();
    let view = env.control_json("faults");
    let busy = first.iter().filter(|&&s| s != 200).count() as u64;
    assert_eq!(view["requests"], 200);
    assert_eq!(
        view["injected"]["503"].as_u64().unwrap() + view["injected"]["429"].as_u64().unwrap(),
        busy
    );
    assert!((30..=90).contains(&busy), "{busy} of 200 at a rate of 0.3");
    assert!(first.contains(&503) && first.contains(&429));
    assert_eq!(run(), first, "the same seed gives the same faults");
}

#[test]
fn bad_settings_are_refused_and_change_nothing() {
    let env = env();
    for body in [
        json!({"rate": 1.5}),
        json!({"kinds": []}),
        json!({"kinds": ["teapot"]}),
        json!({"next": ["503"], "stallMs": -1}),
        json!({"rates": 0.5}),
    ] {
        env.control_post("faults", body.clone())
            .error(400, "ValidationErrors");
    }
    let view = env.control_json("faults");
    assert_eq!(view["rate"], 0.0);
    assert_eq!(view["next"], json!([]));
    assert!(!jwks(&env).is_empty());
    assert_eq!(env.control_json("faults")["requests"], 1);
}

#[test]
fn the_configured_faults_apply_from_the_start_and_come_back_on_reset() {
    let env = start(SandboxConfig {
        faults: Faults {
            rate: 1.0,
            kinds: vec![FaultKind::Unavailable],
            retry_after_s: 2,
            ..Faults::default()
        },
        ..config(ConsentMode::Auto)
    });
    let r = env.get(&env.api("jwks/oauth"));
    r.error(503, "ServiceUnavailable");
    assert_eq!(r.header("retry-after"), Some("2"));
    // The pages and the control API are never faulted.
    assert_ne!(env.get(&env.onboard("authorize")).status, 503);
    env.control_post("faults", json!({"rate": 0})).ok(200);
    assert_eq!(env.get(&env.api("jwks/oauth")).status, 200);
    env.control_post("reset", json!({})).ok(200);
    assert_eq!(env.get(&env.api("jwks/oauth")).status, 503);
}

#[test]
fn an_unconfigured_sandbox_refuses_a_bad_rate_at_start() {
    let bad = SandboxConfig {
        faults: Faults {
            rate: -0.1,
            ..Faults::default()
        },
        ..config(ConsentMode::Auto)
    };
    let err = digime_sandbox::Sandbox::spawn(bad).err().expect("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}
