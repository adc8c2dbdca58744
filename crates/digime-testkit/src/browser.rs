//! A real browser for tests (feature `browser`): headless Chromium driven over
//! WebDriver (chromedriver, through fantoccini), at a phone's width.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install -y chromium
//! chromium-driver`). Without them [`Browser::start`] answers `None` after printing
//! why, unless `DIGIME_BROWSER_TESTS=required` (set by CI), which makes a missing
//! browser a failure.

pub use fantoccini;
use fantoccini::{Client, ClientBuilder};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// chromedriver and a session of Chromium in it; the driver is killed on drop (call
/// [`Browser::close`] first to end the session cleanly).
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Starts chromedriver and a fresh headless Chromium whose profile lives in
    /// `profile`; `None` (with the reason printed) when they are not installed and
    /// not required.
    pub async fn start(profile: &Path) -> Option<Browser> {
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
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let status = format!("http://127.0.0.1:{port}/status");
        let deadline = Instant::now() + Duration::from_secs(20);
        while ureq::get(&status).call().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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
                // A phone: pages must fit its width.
                "mobileEmulation": {"deviceMetrics": {"width": 375, "height": 740, "pixelRatio": 2.0}},
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session");
        Some(Browser { client, driver })
    }

    /// Ends the session.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    /// The page's text (empty while a page is loading).
    pub async fn text(&self) -> String {
        let script = "return document.body ? document.body.innerText : ''";
        match self.client.execute(script, vec![]).await {
            Ok(v) => v.as_str().unwrap_or("").to_owned(),
            Err(_) => String::new(),
        }
    }

    /// Waits (up to 20 s) until the page's text holds `what`; the text.
    pub async fn wait_for(&self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let t = self.text().await;
            if t.contains(what) {
                return t;
            }
            assert!(Instant::now() < deadline, "never saw {what:?}: {t}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the page fits the window's width (no sideways scrolling).
    pub async fn fits_width(&self) -> bool {
        let script = "return window.innerWidth <= 400 && document.documentElement.scrollWidth <= window.innerWidth";
        let fits = self.client.execute(script, vec![]).await.expect("a script");
        fits.as_bool().unwrap_or(false)
    }
}
