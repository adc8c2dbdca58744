//! A measurement, not a test: how long a small streamed file takes to come back over a
//! keep-alive connection, next to a buffered JSON answer. Run it with
//!
//! ```sh
//! cargo test -p digime-sandbox --test latency -- --ignored --nocapture
//! ```
//!
//! and read the printed figures. It asserts only that the answers are what they should
//! be, never how fast they came: timings depend on the machine.

use digime_crypto::{PrivateKey, jws};
use digime_sandbox::{ConsentMode, DEMO_APP_ID, DEMO_READ_CONTRACT, Sandbox, SandboxConfig};
use serde_json::{Value, json};
use std::time::{Duration, Instant, SystemTime};

const ROUNDS: usize = 50;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn bearer(key: &PrivateKey, access_token: &str) -> String {
    let claims = json!({
        "access_token": access_token,
        "client_id": format!("{DEMO_APP_ID}_{DEMO_READ_CONTRACT}"),
        "nonce": digime_crypto::random::alphanumeric(32).unwrap(),
        "timestamp": now_ms(),
    });
    let jwt = jws::sign(
        br#"{"alg":"PS512","typ":"JWT"}"#,
        claims.to_string().as_bytes(),
        key,
    )
    .unwrap();
    format!("Bearer {jwt}")
}

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
fn small_streamed_file_vs_buffered_json() {
    let sandbox = Sandbox::spawn(SandboxConfig {
        consent: ConsentMode::Auto,
        sync_step: Duration::from_millis(5),
        ..SandboxConfig::default()
    })
    .unwrap();
    let info = sandbox.info().clone();
    let key = PrivateKey::from_pem(&info.demo.read.private_key_pem().unwrap()).unwrap();
    let http = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let control = info.control();
    let user: Value = http
        .post(&format!("{control}users"))
        .content_type("application/json")
        .send("{}")
        .unwrap()
        .body_mut()
        .read_to_vec()
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    let uid = user["user"]["id"].as_str().unwrap();
    let at = user["tokens"][format!("{DEMO_APP_ID}_{DEMO_READ_CONTRACT}")]["accessToken"]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let made = http
        .post(&format!("{control}users/{uid}/generate-files"))
        .content_type("application/json")
        .send(json!({"count": 1, "size": 4096, "prefix": "small"}).to_string())
        .unwrap();
    assert_eq!(made.status(), 200);
    let body = json!({"agent": {"sdk": {"name": "rust", "version": "0.1.0"}}});
    let session: Value = http
        .post(&format!("{}permission-access/trigger", info.api))
        .header("authorization", &bearer(&key, &at))
        .content_type("application/json")
        .send(body.to_string())
        .unwrap()
        .body_mut()
        .read_to_vec()
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    let sk = session["session"]["key"].as_str().unwrap();
    // Wait until the file is listed.
    let file_url = format!("{}permission-access/query/{sk}/small0001.bin", info.api);
    let deadline = Instant::now() + Duration::from_secs(10);
    while http
        .get(&file_url)
        .header("authorization", &bearer(&key, &at))
        .call()
        .unwrap()
        .status()
        != 200
    {
        assert!(Instant::now() < deadline, "the file never showed up");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Sign everything first: the figures are of the round trips only.
    let signed = || (0..ROUNDS).map(|_| bearer(&key, &at)).collect::<Vec<_>>();
    let (file_bearers, account_bearers) = (signed(), signed());
    let accounts_url = format!("{}permission-access/accounts", info.api);
    let (acc_med, acc_max) = time_gets(&http, &accounts_url, account_bearers, 2);
    let (file_med, file_max) = time_gets(&http, &file_url, file_bearers, 4096);
    println!(
        "{ROUNDS} GETs on one keep-alive connection: accounts (buffered JSON) median \
         {acc_med:.2} ms, max {acc_max:.2} ms; 4 KiB file median {file_med:.2} ms, \
         max {file_max:.2} ms"
    );
}
