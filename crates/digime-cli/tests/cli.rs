//! Every `digime` command, run as a process against an embedded sandbox. The tests
//! play the browser: they follow the authorization URL the command prints and bring
//! the redirect to the command's loopback listener.

use digime_sandbox::{ConsentMode, Sandbox, SandboxConfig, SandboxInfo};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_digime");

struct World {
    _sandbox: digime_sandbox::BackgroundSandbox,
    info: SandboxInfo,
    dir: tempfile::TempDir,
}

fn world(ttl: Duration) -> World {
    let sandbox = Sandbox::spawn(SandboxConfig {
        consent: ConsentMode::Auto,
        access_token_ttl: ttl,
        sync_step: Duration::from_millis(100),
        ..Default::default()
    })
    .unwrap();
    let info = sandbox.info().clone();
    let dir = tempfile::tempdir().unwrap();
    let profile = |name: &str, c: &digime_sandbox::DemoContract| {
        format!(
            "[{name}]\napi = {:?}\nonboard = {:?}\ncloud = {:?}\napp = {:?}\ncontract = {:?}\nkey = {:?}\n",
            info.api,
            info.onboard,
            info.cloud,
            info.demo.application_id,
            c.contract_id,
            c.private_key_path
        )
    };
    let text = profile("write", &info.demo.write) + &profile("read", &info.demo.read);
    std::fs::write(dir.path().join("profiles.toml"), text).unwrap();
    World {
        _sandbox: sandbox,
        info,
        dir,
    }
}

impl World {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `digime --profile PROFILE ARGS…`, with no `DIGIME_*` variable from outside.
    fn cmd(&self, profile: &str, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("DIGIME_") || k == "BROWSER" {
                c.env_remove(k);
            }
        }
        c.env("DIGIME_PROFILE_FILE", self.path("profiles.toml"))
            .env("DIGIME_PROFILE", profile)
            .current_dir(self.dir.path())
            .args(args);
        c
    }

    fn run(&self, profile: &str, args: &[&str]) -> Output {
        self.cmd(profile, args).output().unwrap()
    }

    /// Runs a `--json` command that must succeed; its answer.
    fn json(&self, profile: &str, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(profile, &all);
        assert!(
            out.status.success(),
            "{args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    fn library(&self, user: &str) -> Value {
        let mut r = ureq::get(format!("{}users/{user}/files", self.info.control))
            .call()
            .unwrap();
        serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap()
    }
}

/// A browser: follows one redirect by hand.
fn browser() -> ureq::Agent {
    ureq::Agent::config_builder()
        .max_redirects(0)
        .max_redirects_will_error(false)
        .http_status_as_error(false)
        .build()
        .new_agent()
}

/// Starts an authorizing command and reads the authorization URL it prints.
fn start_authorizing(mut cmd: Command) -> (Child, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut url = None;
    let mut line = String::new();
    while url.is_none() {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "no URL printed");
        url = line.trim().strip_prefix("http").map(|r| format!("http{r}"));
    }
    // Keep draining stderr so the command never blocks on it.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    (child, url.unwrap())
}

/// Runs an authorizing command that must fail before it prints an authorization URL,
/// naming `token refresh` as the remedy.
fn refused_before_the_url(mut cmd: Command) -> std::process::ExitStatus {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("http://"), "{stderr}");
    assert!(stderr.contains("token refresh"), "{stderr}");
    out.status
}

/// Where the sandbox's consent sends the browser back to.
fn consent(url: &str) -> String {
    let r = browser().get(url).call().unwrap();
    assert!(r.status().is_redirection(), "{url}: {}", r.status());
    r.headers()["location"].to_str().unwrap().to_owned()
}

fn finish(mut child: Child) -> (std::process::ExitStatus, String) {
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    (child.wait().unwrap(), out)
}

fn with_query(url: &str, key: &str, value: &str) -> String {
    let (base, query) = url.split_once('?').unwrap();
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.starts_with(&format!("{key}=")))
        .collect();
    format!("{base}?{}&{key}={value}", kept.join("&"))
}

/// Authorizes through the loopback callback; the command's JSON answer.
fn authorize(w: &World, profile: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "--json",
        "authorize",
        "--callback",
        "http://127.0.0.1:0/return",
        "--no-open",
        "--wait",
        "60",
    ];
    args.extend_from_slice(extra);
    let (child, url) = start_authorizing(w.cmd(profile, &args));
    let back = consent(&url);
    let r = browser().get(&back).call().unwrap();
    assert_eq!(r.status(), 200);
    let (status, out) = finish(child);
    assert!(status.success(), "{status}");
    serde_json::from_str(&out).unwrap()
}

fn mode(path: &Path) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        0o600
    }
}

#[test]
fn authorize_push_read_and_every_other_command() {
    let w = world(Duration::from_secs(600));

    // authorize: a request with a wrong state is refused and the command waits on.
    let (child, url) = start_authorizing(w.cmd(
        "write",
        &[
            "--json",
            "authorize",
            "--callback",
            "http://127.0.0.1:0/return",
            "--no-open",
            "--token",
            "write.json",
            "--with-storage",
        ],
    ));
    let back = consent(&url);
    let forged = browser()
        .get(with_query(&back, "state", "not-ours"))
        .call()
        .unwrap();
    assert_eq!(forged.status(), 400);
    assert_eq!(browser().get(&back).call().unwrap().status(), 200);
    let (status, out) = finish(child);
    assert!(status.success());
    let answer: Value = serde_json::from_str(&out).unwrap();
    let user = answer["user"].as_str().unwrap().to_owned();
    let token_file = w.path("write.json");
    assert_eq!(mode(&token_file), 0o600);
    let first = std::fs::read(&token_file).unwrap();

    // push: the access token expires (the sandbox's `expire` fault, on the next API
    // request), the push refreshes it, the token file is rewritten.
    ureq::post(format!("{}faults", w.info.control))
        .content_type("application/json")
        .send(serde_json::json!({"next": ["expire"]}).to_string())
        .unwrap();
    std::fs::write(w.path("receipt.json"), br#"{"total":12.5}"#).unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(w.path("big.bin"), &big).unwrap();
    let pushed = w.json(
        "write",
        &[
            "push",
            "--token",
            "write.json",
            "--tag",
            "receipt",
            "--tag",
            "cli",
            "receipt.json",
            "big.bin",
        ],
    );
    assert_eq!(pushed["pushed"][1]["bytes"], 3_000_000);
    assert_ne!(
        std::fs::read(&token_file).unwrap(),
        first,
        "refreshed token kept"
    );
    assert_eq!(mode(&token_file), 0o600);
    let library = w.library(&user);
    let files = library["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{library}");
    assert_eq!(files[0]["descriptor"]["mimeType"], "application/json");
    assert_eq!(
        files[0]["descriptor"]["tags"],
        serde_json::json!(["receipt", "cli"])
    );
    assert_eq!(
        files[0]["descriptor"]["reference"],
        serde_json::json!(["receipt.json"])
    );
    assert_eq!(
        files[1]["descriptor"]["mimeType"],
        "application/octet-stream"
    );

    // token show tells no secret; token refresh writes a new token.
    let token: Value = serde_json::from_slice(&std::fs::read(&token_file).unwrap()).unwrap();
    let shown = w.run("write", &["token", "show", "--token", "write.json"]);
    assert!(shown.status.success());
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(shown.contains(&user), "{shown}");
    for secret in [
        &token["accessToken"]["value"],
        &token["refreshToken"]["value"],
    ] {
        assert!(!shown.contains(secret.as_str().unwrap()), "{shown}");
    }
    let before = std::fs::read(&token_file).unwrap();
    let refreshed = w.json("write", &["token", "refresh", "--token", "write.json"]);
    assert_eq!(refreshed["user"], user.as_str());
    assert_ne!(std::fs::read(&token_file).unwrap(), before);

    // contract
    let contract = w.json("write", &["contract"]);
    assert_eq!(contract["id"], w.info.demo.write.contract_id.as_str());

    // storage: put, ls, get, rm.
    w.json(
        "write",
        &[
            "storage",
            "put",
            "--token",
            "write.json",
            "receipt.json",
            "/backups/",
        ],
    );
    let listed = w.json("write", &["storage", "ls", "--token", "write.json", "-r"]);
    assert_eq!(listed["files"][0]["name"], "receipt.json", "{listed}");
    w.json(
        "write",
        &[
            "storage",
            "get",
            "--token",
            "write.json",
            "/backups/receipt.json",
            "got.json",
        ],
    );
    assert_eq!(
        std::fs::read(w.path("got.json")).unwrap(),
        std::fs::read(w.path("receipt.json")).unwrap()
    );
    w.json(
        "write",
        &[
            "storage",
            "rm",
            "--token",
            "write.json",
            "/backups/receipt.json",
        ],
    );
    let listed = w.json("write", &["storage", "ls", "--token", "write.json", "-r"]);
    assert_eq!(listed["files"], serde_json::json!([]));

    // The read contract, linked to the same user: an expired link token is refused
    // with its remedy; refreshed, it links.
    let mut stale: Value = serde_json::from_slice(&std::fs::read(&token_file).unwrap()).unwrap();
    stale["accessToken"]["expiry"] = 1.into();
    std::fs::write(w.path("stale.json"), stale.to_string()).unwrap();
    let refused = refused_before_the_url(w.cmd(
        "read",
        &[
            "authorize",
            "--callback",
            "http://127.0.0.1:0/return",
            "--no-open",
            "--token",
            "read.json",
            "--link-token",
            "stale.json",
        ],
    ));
    assert_eq!(refused.code(), Some(3));
    let linked = authorize(
        &w,
        "read",
        &["--token", "read.json", "--link-token", "write.json"],
    );
    assert_eq!(linked["user"], user.as_str());

    // accounts, files
    let accounts = w.json("read", &["accounts", "--token", "read.json"]);
    assert!(!accounts["accounts"].as_array().unwrap().is_empty());
    let sources = w.json("read", &["sources", "--limit", "2"]);
    assert_eq!(sources["data"].as_array().unwrap().len(), 2, "{sources}");
    assert!(sources["total"].as_u64().unwrap() > 2);
    let listed = w.json("read", &["files", "--token", "read.json"]);
    assert!(listed["status"]["state"].is_string(), "{listed}");

    // read-all: every file lands; the pushed ones come back identical.
    let read = w.json(
        "read",
        &["read-all", "--token", "read.json", "--poll", "0.2", "lib"],
    );
    assert_eq!(read["failed"], 0);
    assert_eq!(read["skipped"], 0);
    let n = read["read"].as_u64().unwrap();
    assert!(n >= 3, "{read}");
    let lib = w.path("lib");
    let names: Vec<String> = std::fs::read_dir(&lib)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".partial")), "{names:?}");
    let pushed_back: Vec<Vec<u8>> = names
        .iter()
        .map(|n| std::fs::read(lib.join(n)).unwrap())
        .collect();
    assert!(pushed_back.contains(&big));
    assert!(pushed_back.contains(&br#"{"total":12.5}"#.to_vec()));

    // Again: the pushed files are there and unchanged, so they are not read again.
    let again = w.json(
        "read",
        &["read-all", "--token", "read.json", "--poll", "0.2", "lib"],
    );
    assert_eq!(again["skipped"].as_u64().unwrap(), n, "{again}");
    assert!(again["read"].as_u64().unwrap() <= n - 2, "{again}");
    // A file removed locally is read again.
    let big_name = names
        .iter()
        .find(|name| std::fs::read(lib.join(name)).unwrap() == big)
        .unwrap();
    std::fs::remove_file(lib.join(big_name)).unwrap();
    let third = w.json(
        "read",
        &["read-all", "--token", "read.json", "--poll", "0.2", "lib"],
    );
    assert_eq!(third["skipped"].as_u64().unwrap(), n - 1, "{third}");
    assert_eq!(std::fs::read(lib.join(big_name)).unwrap(), big);

    // reauthorize: a new token for the same user.
    let (child, url) = start_authorizing(w.cmd(
        "read",
        &[
            "--json",
            "reauthorize",
            "--callback",
            "http://127.0.0.1:0/return",
            "--no-open",
            "--token",
            "read.json",
        ],
    ));
    let back = consent(&url);
    assert_eq!(browser().get(&back).call().unwrap().status(), 200);
    let (status, out) = finish(child);
    assert!(status.success(), "{out}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["user"],
        user.as_str()
    );

    // delete-account: the account is gone from the list.
    let first = accounts["accounts"][0]["id"].as_str().unwrap().to_owned();
    w.json("read", &["delete-account", "--token", "read.json", &first]);
    let left = w.json("read", &["accounts", "--token", "read.json"]);
    assert!(
        left["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["id"] != first.as_str()),
        "{left}"
    );

    // delete-user wants --yes; then the user's tokens are dead: exit 4.
    let refused = w.run("write", &["delete-user", "--token", "write.json"]);
    assert_eq!(refused.status.code(), Some(3));
    w.json("write", &["delete-user", "--token", "write.json", "--yes"]);
    let dead = w.run(
        "read",
        &["--json", "token", "refresh", "--token", "read.json"],
    );
    assert_eq!(
        dead.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&dead.stderr)
    );
    let error: Value = serde_json::from_slice(&dead.stdout).unwrap();
    assert_eq!(error["error"]["kind"], "reauthorize");
}

#[test]
fn a_denied_authorization_ends_with_exit_9_and_writes_no_token() {
    let w = world(Duration::from_secs(600));
    let (child, url) = start_authorizing(w.cmd(
        "write",
        &[
            "authorize",
            "--callback",
            "http://127.0.0.1:0/return",
            "--no-open",
            "--token",
            "t.json",
        ],
    ));
    let back = consent(&url);
    let state = back
        .split("state=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let (base, _) = back.split_once('?').unwrap();
    let denied = format!("{base}?success=false&errorCode=ACCESS_DENIED&state={state}");
    assert_eq!(browser().get(&denied).call().unwrap().status(), 200);
    let (status, _) = finish(child);
    assert_eq!(status.code(), Some(9));
    assert!(!w.path("t.json").exists());
}

#[test]
fn bad_input_is_exit_3_with_a_json_error() {
    let w = world(Duration::from_secs(600));
    std::fs::write(w.path("bad.pem"), "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n").unwrap();
    std::fs::write(w.path("garbage.json"), "{\"accessToken\": 5").unwrap();
    let cases: [&[&str]; 4] = [
        &["--key", "bad.pem", "contract"],
        &["--key", "missing.pem", "contract"],
        &["push", "--token", "garbage.json", "x.json"],
        &["--profile", "nope", "contract"],
    ];
    for args in cases {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = w.run("write", &all);
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        let error: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(error["error"]["kind"], "bad_input", "{args:?}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
    // Usage errors are clap's exit 2.
    assert_eq!(w.run("write", &["push"]).status.code(), Some(2));
}

#[test]
fn the_sandbox_command_prints_its_line_and_writes_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let profiles = dir.path().join("p.toml");
    let mut child = Command::new(BIN)
        .args(["sandbox", "--consent", "auto", "--write-profiles"])
        .arg(&profiles)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info: Value = serde_json::from_str(&line).unwrap();
    assert!(
        info["api"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    // The profile works: `contract` talks to that sandbox.
    let mut waited = 0;
    while !profiles.exists() && waited < 100 {
        std::thread::sleep(Duration::from_millis(50));
        waited += 1;
    }
    let out = Command::new(BIN)
        .args(["--json", "--profile", "sandbox", "--profile-file"])
        .arg(&profiles)
        .arg("contract")
        .output()
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let contract: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(contract["id"], info["demo"]["write"]["contractId"]);
}

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(
            script.contains("read-all") && script.contains("digime"),
            "{shell}"
        );
    }
}
