//! The offline examples, run as a person runs them: each must succeed against its
//! embedded sandbox and print nothing secret.
//!
//! The sandbox's secrets have recognisable shapes (`PRE_…` and `AUTH_…` codes, `at_…`
//! and `rt_…` tokens, `sess_…` session keys), so any of them in an example's output
//! is found whatever its value.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The prefixes of the sandbox's secrets, each followed by 24 random characters.
const SECRET_PREFIXES: [&str; 5] = ["PRE_", "AUTH_", "at_", "rt_", "sess_"];

/// Runs an example binary to its end (at most 120 s) and returns its standard output.
fn run(exe: &str, args: &[&str]) -> String {
    let dir = std::env::temp_dir().join(format!(
        "digime-example-{}-{}",
        std::process::id(),
        exe.rsplit('/').next().unwrap_or("x")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(exe)
        .args(args)
        .current_dir(&dir)
        // Offline: the examples use the real API only when these are set.
        .env_remove("DIGIME_APPLICATION_ID")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = std::thread::spawn({
        let mut stdout = child.stdout.take().unwrap();
        move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
            s
        }
    });
    let err = std::thread::spawn({
        let mut stderr = child.stderr.take().unwrap();
        move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut stderr, &mut s).unwrap();
            s
        }
    });
    // Bounded: a hang fails the test instead of holding CI.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("{exe} did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    assert!(status.success(), "{exe} failed:\n{stdout}\n{stderr}");
    for text in [&stdout, &stderr] {
        assert_no_secret(exe, text);
    }
    let _ = std::fs::remove_dir_all(&dir);
    stdout
}

fn assert_no_secret(exe: &str, text: &str) {
    for prefix in SECRET_PREFIXES {
        for (at, _) in text.match_indices(prefix) {
            // A secret, not a word that happens to end in the prefix: the prefix starts
            // a token, and a long run of random characters follows it.
            let starts = text[..at]
                .chars()
                .next_back()
                .is_none_or(|c| !c.is_ascii_alphanumeric());
            let run = text[at + prefix.len()..]
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .count();
            assert!(
                !(starts && run >= 16),
                "{exe} printed a secret: {:?}",
                &text[at..(at + prefix.len() + run).min(text.len())]
            );
        }
    }
}

#[test]
fn the_secret_scan_finds_the_sandboxs_secrets() {
    let found = |text: &str| std::panic::catch_unwind(|| assert_no_secret("x", text)).is_err();
    assert!(found("code=AUTH_3LFqiTaASBy9wPiQ4escC9XV&state"));
    assert!(found("session sess_IoxkuIHyh3ujagcgho7SMWKB"));
    assert!(found("{\"value\":\"at_aaaaaaaaaaaaaaaaaaaaaaaa\"}"));
    assert!(!found("code=…&state=… format_ok rt_short"));
}

#[test]
fn quickstart() {
    let out = run(env!("CARGO_BIN_EXE_quickstart"), &[]);
    assert!(
        out.contains("OK: the file read back with the read contract is identical"),
        "{out}"
    );
}

#[test]
fn read_library_writes_every_file_under_a_unique_name() {
    let dir = std::env::temp_dir().join(format!("digime-library-{}", std::process::id()));
    let out = run(env!("CARGO_BIN_EXE_read_library"), &[dir.to_str().unwrap()]);
    assert!(out.contains("Done:") && out.contains(" 0 failed"), "{out}");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    // The demo library and three large files, and no partial file left behind.
    assert!(names.len() >= 10, "{names:?}");
    assert!(names.iter().all(|n| !n.ends_with("~partial")), "{names:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn std_transport_pushes_and_reads_back_the_same_bytes_over_std_net() {
    let out = run(env!("CARGO_BIN_EXE_std_transport"), &[]);
    for step in [
        "1. Authorized the write contract",
        "3. Pushed 42 bytes",
        "4. Authorized the read contract for the same user",
        "0 failed), sync completed",
        "came back over std::net identical to the 42 bytes pushed",
    ] {
        assert!(out.contains(step), "missing {step:?} in:\n{out}");
    }
}

#[test]
fn the_postbox_examples() {
    for (exe, args) in [
        (env!("CARGO_BIN_EXE_postbox_once"), &[][..]),
        (env!("CARGO_BIN_EXE_postbox_once"), &["--e1"][..]),
        (env!("CARGO_BIN_EXE_postbox_ongoing"), &[][..]),
        (env!("CARGO_BIN_EXE_postbox_e2"), &[][..]),
    ] {
        let out = run(exe, args);
        assert!(
            out.contains("OK: the library holds exactly the bytes that were pushed."),
            "{exe} {args:?}: {out}"
        );
    }
}

#[test]
fn the_lifecycle_and_storage_examples() {
    for (exe, done) in [
        (
            env!("CARGO_BIN_EXE_reauthorize"),
            "OK: the same user, with the same library",
        ),
        (
            env!("CARGO_BIN_EXE_onboard_service"),
            "OK: the new service's data arrived",
        ),
        (
            env!("CARGO_BIN_EXE_storage_roundtrip"),
            "OK: storage round trip done.",
        ),
        (
            env!("CARGO_BIN_EXE_source_picker"),
            "OK: the user's library has an account of",
        ),
    ] {
        let out = run(exe, &[]);
        assert!(out.contains(done), "{exe}: {out}");
    }
}
