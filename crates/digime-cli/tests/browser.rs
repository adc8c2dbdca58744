//! The sandbox's real consent page in a real browser: headless Chromium, driven over
//! WebDriver (chromedriver, through fantoccini), at a phone's width. `digime
//! authorize` waits on its loopback listener; the browser opens the URL it prints,
//! reads the page, allows with the keyboard alone (Tab to the button, Enter) and
//! lands on the command's "complete" page; a second run is denied with a click.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install -y chromium
//! chromium-driver`). Without them the test is skipped with a printed reason, unless
//! `DIGIME_BROWSER_TESTS=required` (set by CI), which makes a missing browser a failure.

use digime_sandbox::{ConsentMode, Sandbox, SandboxConfig};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_digime");

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// chromedriver, killed on drop.
struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_driver(path: &Path) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let driver = Driver(child, port);
    let deadline = Instant::now() + Duration::from_secs(20);
    while ureq::get(format!("http://127.0.0.1:{port}/status"))
        .call()
        .is_err()
    {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    driver
}

async fn browser(driver: &Driver, chromium: &Path, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            // No background traffic (a closed network refuses it), a fresh profile.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", profile.display())],
            // A phone: the page must fit its width.
            "mobileEmulation": {"deviceMetrics": {"width": 375, "height": 740, "pixelRatio": 2.0}},
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.1))
        .await
        .expect("a WebDriver session")
}

/// Starts `digime authorize` and reads the URL it prints.
fn authorize(dir: &Path, token: &str) -> (Child, String) {
    let mut child = Command::new(BIN)
        .env("DIGIME_PROFILE_FILE", dir.join("profiles.toml"))
        .env("DIGIME_PROFILE", "write")
        .env_remove("BROWSER")
        .current_dir(dir)
        .args([
            "authorize",
            "--callback",
            "http://127.0.0.1:0/return",
            "--no-open",
            "--wait",
            "90",
            "--token",
            token,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let url = loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "no URL printed");
        if let Some(rest) = line.trim().strip_prefix("http") {
            break format!("http{rest}");
        }
    };
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    (child, url)
}

/// The page's text (empty while a page is loading).
async fn text(client: &Client) -> String {
    let script = "return document.body ? document.body.innerText : ''";
    match client.execute(script, vec![]).await {
        Ok(v) => v.as_str().unwrap_or("").to_owned(),
        Err(_) => String::new(),
    }
}

/// Waits until the page's text holds `what`.
async fn wait_for(client: &Client, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = text(client).await;
        if t.contains(what) {
            return t;
        }
        assert!(Instant::now() < deadline, "never saw {what:?}: {t}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run(client: &Client, dir: &Path) {
    // Allow, with the keyboard alone.
    let (mut cli, url) = authorize(dir, "allowed.json");
    client.goto(&url).await.unwrap();
    let page = wait_for(client, "Allow").await;
    for expected in [
        "Share your data with",
        "demo-write",
        "writes data into your library",
        "a new digi.me library",
        "Deny",
    ] {
        assert!(
            page.contains(expected),
            "{expected:?} not on the page: {page}"
        );
    }
    let fits: bool = client
        .execute(
            "return window.innerWidth <= 400 && document.documentElement.scrollWidth <= window.innerWidth",
            vec![],
        )
        .await
        .unwrap()
        .as_bool()
        .unwrap();
    assert!(fits, "the consent page does not fit a phone's width");
    let body = client.find(Locator::Css("body")).await.unwrap();
    let mut focused = String::new();
    for _ in 0..10 {
        body.send_keys(&String::from(char::from(Key::Tab)))
            .await
            .ok();
        focused = client
            .execute(
                "return document.activeElement && document.activeElement.value || ''",
                vec![],
            )
            .await
            .unwrap()
            .as_str()
            .unwrap_or("")
            .to_owned();
        if focused == "allow" {
            break;
        }
    }
    assert_eq!(focused, "allow", "Tab never reached Allow");
    client
        .active_element()
        .await
        .unwrap()
        .send_keys(&String::from(char::from(Key::Enter)))
        .await
        .unwrap();
    wait_for(client, "authorization complete").await;
    let status = cli.wait().unwrap();
    let mut out = String::new();
    cli.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(status.success(), "{status}: {out}");
    let token: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("allowed.json")).unwrap()).unwrap();
    assert!(token["user"]["id"].is_string(), "{token}");

    // Deny, with a click: the command ends with exit 9 and writes nothing.
    let (mut cli, url) = authorize(dir, "denied.json");
    client.goto(&url).await.unwrap();
    wait_for(client, "Deny").await;
    client
        .find(Locator::Css(r#"button[value="deny"]"#))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(client, "did not complete").await;
    assert_eq!(cli.wait().unwrap().code(), Some(9));
    assert!(!dir.join("denied.json").exists());
}

#[test]
fn the_consent_page_in_a_real_browser_allows_with_the_keyboard_and_denies() {
    let required = std::env::var("DIGIME_BROWSER_TESTS").is_ok_and(|v| v == "required");
    let (Some(driver_path), Some(chromium)) = (
        find(&["chromedriver"]),
        find(&["chromium", "chromium-browser", "google-chrome"]),
    ) else {
        assert!(
            !required,
            "DIGIME_BROWSER_TESTS=required, but chromium or chromedriver is missing"
        );
        println!(
            "skipped: chromium and chromedriver are not installed (apt-get install -y chromium chromium-driver)"
        );
        return;
    };
    let sandbox = Sandbox::spawn(SandboxConfig {
        consent: ConsentMode::Page,
        ..Default::default()
    })
    .unwrap();
    let info = sandbox.info();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("profiles.toml"),
        format!(
            "[write]\napi = {:?}\nonboard = {:?}\ncloud = {:?}\napp = {:?}\ncontract = {:?}\nkey = {:?}\n",
            info.api,
            info.onboard,
            info.cloud,
            info.demo.application_id,
            info.demo.write.contract_id,
            info.demo.write.private_key_path
        ),
    )
    .unwrap();
    let driver = start_driver(&driver_path);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = browser(&driver, &chromium, &dir.path().join("chromium-profile")).await;
        let outcome =
            tokio::time::timeout(Duration::from_secs(120), run(&client, dir.path())).await;
        client.close().await.ok();
        outcome.expect("the browser test took over 120 s");
    });
}
