//! The web app in a real browser (headless Chromium over WebDriver, at a phone's
//! width), against the sandbox's real consent pages: sign up, connect (Allow on the
//! write contract's page, then on the read contract's), land back, upload a file
//! through the form, see it on the library page after a read, download it byte for
//! byte; then another user presses Deny and gets the app's error page.
//!
//! Skipped with a printed reason when Chromium is not installed, unless
//! `DIGIME_BROWSER_TESTS=required` (set by CI).

mod support;

use digime_testkit::browser::Browser;
use digime_testkit::browser::fantoccini::Locator;
use std::path::Path;
use std::time::Duration;
use support::App;

async fn fill(browser: &Browser, css: &str, text: &str) {
    let field = browser.client.find(Locator::Css(css)).await.unwrap();
    field.send_keys(text).await.unwrap();
}

async fn click(browser: &Browser, css: &str) {
    let button = browser.client.find(Locator::Css(css)).await.unwrap();
    button.click().await.unwrap();
}

async fn sign_up(browser: &Browser, base: &str, name: &str) {
    browser.client.goto(&format!("{base}/")).await.unwrap();
    browser.wait_for("Create an account").await;
    assert!(
        browser.fits_width().await,
        "the sign-in page is wider than a phone"
    );
    fill(browser, "form[action='/signup'] input[name=name]", name).await;
    fill(
        browser,
        "form[action='/signup'] input[name=password]",
        "a long passphrase",
    )
    .await;
    click(browser, "form[action='/signup'] button").await;
    browser.wait_for(&format!("Hello, {name}")).await;
}

/// The bytes `href` downloads, fetched by the page (with its cookies).
async fn download(browser: &Browser, href: &str) -> Vec<u8> {
    let script = r#"
        const [href, done] = arguments;
        fetch(href, {credentials: "same-origin"})
            .then(r => r.ok ? r.arrayBuffer() : Promise.reject(r.status))
            .then(b => {
                const u = new Uint8Array(b);
                let s = "";
                for (let i = 0; i < u.length; i += 0x8000) {
                    s += String.fromCharCode.apply(null, u.subarray(i, i + 0x8000));
                }
                done(btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, ""));
            })
            .catch(e => done("failed: " + e));
    "#;
    let answer = browser
        .client
        .execute_async(script, vec![serde_json::json!(href)])
        .await
        .unwrap();
    let text = answer.as_str().unwrap();
    assert!(!text.starts_with("failed"), "{href}: {text}");
    digime_crypto::b64url_decode(text).unwrap()
}

async fn run(browser: &Browser, app: &App, dir: &Path) {
    let base = &app.base;
    sign_up(browser, base, "ann").await;

    // Connect: Allow on both consent pages; the second links to the first's library.
    click(browser, "form[action='/connect'] button").await;
    let page = browser.wait_for("Allow").await;
    assert!(page.contains("writes data into your library"), "{page}");
    click(browser, r#"button[value="allow"]"#).await;
    let page = browser.wait_for("reads your data").await;
    assert!(page.contains("your existing digi.me library"), "{page}");
    click(browser, r#"button[value="allow"]"#).await;
    browser.wait_for("Your library has not been read yet").await;
    browser.client.goto(&format!("{base}/")).await.unwrap();
    browser.wait_for("Your digi.me library is connected").await;

    // Upload a file through the form.
    let bytes: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    let file = dir.join("notes.txt");
    std::fs::write(&file, &bytes).unwrap();
    browser
        .client
        .goto(&format!("{base}/upload"))
        .await
        .unwrap();
    browser.wait_for("Nothing pushed yet").await;
    assert!(
        browser.fits_width().await,
        "the upload page is wider than a phone"
    );
    fill(browser, "input[type=file]", file.to_str().unwrap()).await;
    click(browser, "form[action='/push'] button").await;
    let page = browser.wait_for("notes.txt").await;
    assert!(page.contains(&bytes.len().to_string()), "{page}");

    // Read the library: the file is listed, and downloads byte for byte.
    browser
        .client
        .goto(&format!("{base}/library"))
        .await
        .unwrap();
    browser.wait_for("Read my library").await;
    click(browser, "form[action='/library/read'] button").await;
    let page = browser.wait_for("files read").await;
    assert!(
        page.contains("text/plain"),
        "the pushed file is not listed: {page}"
    );
    assert!(
        browser.fits_width().await,
        "the library page is wider than a phone"
    );
    let mut hrefs = Vec::new();
    for link in browser
        .client
        .find_all(Locator::Css("a[href^='/library/files/']"))
        .await
        .unwrap()
    {
        hrefs.push(link.attr("href").await.unwrap().unwrap());
    }
    let mut found = false;
    for href in &hrefs {
        found |= download(browser, href).await == bytes;
    }
    assert!(
        found,
        "no download of {} links is the uploaded file",
        hrefs.len()
    );

    // Another user denies: the app's error page, and nothing is connected.
    click(browser, "nav form button").await;
    browser.wait_for("Create an account").await;
    sign_up(browser, base, "bo").await;
    click(browser, "form[action='/connect'] button").await;
    browser.wait_for("Deny").await;
    click(browser, r#"button[value="deny"]"#).await;
    let page = browser.wait_for("Not connected").await;
    assert!(page.contains("Nothing was shared"), "{page}");
    assert!(app.token("bo", "write").is_none());
}

#[test]
fn a_person_connects_uploads_reads_and_downloads_in_a_real_browser_and_deny_shows_the_apps_error() {
    let (sandbox, _control) = support::sandbox();
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&sandbox, &dir.path().join("app"), 0, Default::default());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let Some(browser) = Browser::start(&dir.path().join("chromium-profile")).await else {
            return;
        };
        let outcome =
            tokio::time::timeout(Duration::from_secs(120), run(&browser, &app, dir.path())).await;
        browser.close().await;
        outcome.expect("the browser test took over 120 s");
    });
}
