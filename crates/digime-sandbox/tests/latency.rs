//! A measurement, not a test: how long a file takes to come back over a keep-alive
//! connection, next to a buffered JSON answer: a 4 KiB file (below the sandbox's 64 KiB
//! threshold, so encrypted whole before the answer starts) and a 256 KiB one (above it,
//! so streamed). Run it with
//!
//! ```sh
//! cargo test -p digime-sandbox --test latency -- --ignored --nocapture
//! ```
//!
//! and read the printed figures. It asserts only that the answers are what they should
//! be, never how fast they came: timings depend on the machine.

mod support;

use digime_sandbox::{ConsentMode, SandboxConfig};
use serde_json::json;
use std::time::{Duration, Instant};
use support::{reply, start};

const ROUNDS: usize = 50;

/// `(median, max)` of `ROUNDS` GETs of `url`, each with one of `bearers`, on one agent.
fn time_gets(http: &ureq::Agent, url: &str, bearers: Vec<String>, want_len: usize) -> (f64, f64) {
    let mut times = Vec::new();
    for b in bearers {
        let t = Instant::now();
        let mut r = http.get(url).header("authorization", &b).call().unwrap();
        assert_eq!(r.status(), 200);
        let body = r.body_mut().read_to_vec().unwrap();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(body.len() >= want_len);
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[times.len() - 1])
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture and read the figures"]
fn buffered_and_streamed_files_vs_buffered_json() {
    let env = start(SandboxConfig {
        consent: ConsentMode::Auto,
        sync_step: Duration::from_millis(5),
        ..SandboxConfig::default()
    });
    let u = env.user();
    let files = [("small", 4096usize), ("big", 256 * 1024)];
    for (prefix, size) in files {
        let made = env.control_post(
            &format!("users/{}/generate-files", u.id),
            json!({"count": 1, "size": size, "prefix": prefix}),
        );
        assert_eq!(made.status, 200);
    }
    let body = json!({"agent": {"sdk": {"name": "rust", "version": "0.1.0"}}});
    let session = reply(
        env.http
            .post(&env.api("permission-access/trigger"))
            .header("authorization", &env.read_bearer(&u.read_at))
            .content_type("application/json")
            .send(body.to_string()),
    )
    .json();
    let sk = session["session"]["key"].as_str().unwrap();
    let file_url =
        |prefix: &str| env.api(&format!("permission-access/query/{sk}/{prefix}0001.bin"));
    // Wait until the files are listed.
    let deadline = Instant::now() + Duration::from_secs(10);
    for (prefix, _) in files {
        while env
            .http
            .get(&file_url(prefix))
            .header("authorization", &env.read_bearer(&u.read_at))
            .call()
            .unwrap()
            .status()
            != 200
        {
            assert!(
                Instant::now() < deadline,
                "{prefix}0001.bin never showed up"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // Sign everything first: the figures are of the round trips only.
    let signed = || {
        (0..ROUNDS)
            .map(|_| env.read_bearer(&u.read_at))
            .collect::<Vec<_>>()
    };
    let accounts_url = env.api("permission-access/accounts");
    let (acc_med, acc_max) = time_gets(&env.http, &accounts_url, signed(), 2);
    println!(
        "{ROUNDS} GETs on one keep-alive connection: accounts (buffered JSON) median \
         {acc_med:.2} ms, max {acc_max:.2} ms"
    );
    for (prefix, size) in files {
        let how = if size <= 64 * 1024 {
            "buffered"
        } else {
            "streamed"
        };
        let (med, max) = time_gets(&env.http, &file_url(prefix), signed(), size);
        println!(
            "{ROUNDS} GETs on one keep-alive connection: {} KiB file ({how}) median \
             {med:.2} ms, max {max:.2} ms",
            size / 1024
        );
    }
}
