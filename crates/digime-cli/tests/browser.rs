//! The sandbox's real consent page in a real browser: headless Chromium, driven over
//! WebDriver (chromedriver, through fantoccini), at a phone's width. `digime
//! authorize` waits on its loopback listener; the browser opens the URL it prints,
//! reads the page, allows with the keyboard alone (Tab to the button, Enter) and
//! lands on the command's "complete" page; a second run is denied with a click.
//!
//! The browser is `digime_testkit::browser`: skipped with a printed reason when
//! Chromium is not installed, unless `DIGIME_BROWSER_TESTS=required` (set by CI).

use digime_sandbox::{ConsentMode, Sandbox, SandboxConfig};
use digime_testkit::browser::Browser;
use digime_testkit::browser::fantoccini::Locator;
use digime_testkit::browser::fantoccini::key::Key;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_digime");

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

async fn run(browser: &Browser, dir: &Path) {
    let client = &browser.client;
    // Allow, with the keyboard alone.
    let (mut cli, url) = authorize(dir, "allowed.json");
    client.goto(&url).await.unwrap();
    let page = browser.wait_for("Allow").await;
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
    assert!(
        browser.fits_width().await,
        "the consent page does not fit a phone's width"
    );
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
    browser.wait_for("authorization complete").await;
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
    browser.wait_for("Deny").await;
    client
        .find(Locator::Css(r#"button[value="deny"]"#))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.wait_for("did not complete").await;
    assert_eq!(cli.wait().unwrap().code(), Some(9));
    assert!(!dir.join("denied.json").exists());
}

#[test]
fn the_consent_page_in_a_real_browser_allows_with_the_keyboard_and_denies() {
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
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let Some(browser) = Browser::start(&dir.path().join("chromium-profile")).await else {
            return;
        };
        let outcome =
            tokio::time::timeout(Duration::from_secs(120), run(&browser, dir.path())).await;
        browser.close().await;
        outcome.expect("the browser test took over 120 s");
    });
}
