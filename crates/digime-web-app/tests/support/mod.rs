//! Runs the app as a process against an embedded sandbox, and plays a browser: a
//! cookie jar, no redirects followed, forms posted as a browser posts them.

#![allow(dead_code)]

use digime_sandbox::{BackgroundSandbox, ConsentMode, Sandbox, SandboxConfig};
use digime_testkit::control::Control;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_digime-web-app");

pub fn sandbox() -> (BackgroundSandbox, Control) {
    let sandbox = Sandbox::spawn(SandboxConfig {
        consent: ConsentMode::Page,
        sync_step: Duration::from_millis(20),
        ..Default::default()
    })
    .unwrap();
    let control = Control::new(sandbox.info());
    (sandbox, control)
}

/// The app, killed on drop; what it logged is kept in `log`, across restarts.
pub struct App {
    child: Child,
    pub base: String,
    pub port: u16,
    pub data: PathBuf,
    pub log: Arc<Mutex<String>>,
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl App {
    /// Starts the app on `port` (0: any) with its data in `data`.
    pub fn start(
        sandbox: &BackgroundSandbox,
        data: &Path,
        port: u16,
        log: Arc<Mutex<String>>,
    ) -> App {
        Self::start_with(sandbox, data, port, log, &[])
    }

    /// [`App::start`], with more flags.
    pub fn start_with(
        sandbox: &BackgroundSandbox,
        data: &Path,
        port: u16,
        log: Arc<Mutex<String>>,
        flags: &[&str],
    ) -> App {
        let info = sandbox.info();
        let mut child = Command::new(BIN)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data")
            .arg(data)
            .args(["--api", &info.api, "--onboard", &info.onboard])
            .args(["--app", &info.demo.application_id])
            .args(["--write-contract", &info.demo.write.contract_id])
            .arg("--write-key")
            .arg(&info.demo.write.private_key_path)
            .args(["--read-contract", &info.demo.read.contract_id])
            .arg("--read-key")
            .arg(&info.demo.read.private_key_path)
            .args(["--poll", "0.05"])
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let base = loop {
            line.clear();
            let n = stdout.read_line(&mut line).unwrap();
            assert!(
                n > 0,
                "the app ended before it listened: {}",
                log.lock().unwrap()
            );
            if let Some(url) = line.trim().strip_prefix("digime web app on ") {
                break url.trim_end_matches('/').to_owned();
            }
        };
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let port = base.rsplit(':').next().unwrap().parse().unwrap();
        App {
            child,
            base,
            port,
            data: data.to_owned(),
            log,
        }
    }

    /// Kills the app at once (no shutdown of any kind), as a crash would.
    pub fn kill(mut self) -> (u16, Arc<Mutex<String>>) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        (self.port, self.log.clone())
    }

    /// The app's database, opened beside it.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.data.join("app.sqlite3")).unwrap()
    }

    /// The stored token of the signed-up user `name` for `contract`, as JSON.
    pub fn token(&self, name: &str, contract: &str) -> Option<(serde_json::Value, bool)> {
        self.db()
            .query_row(
                "SELECT t.token, t.dead FROM tokens t JOIN users u ON u.id = t.user_id
                 WHERE u.name = ?1 AND t.contract = ?2",
                [name, contract],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?)),
            )
            .ok()
            .map(|(json, dead)| (serde_json::from_str(&json).unwrap(), dead))
    }

    /// How many rows `sql` (a `SELECT count(*) …`) counts.
    pub fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

/// One answer.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    /// Every header, by lower-case name (the last value of a repeated one).
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Page {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The CSRF token of the page's forms.
    pub fn csrf(&self) -> String {
        let text = self.text();
        text.split(r#"name="csrf" value=""#)
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_else(|| panic!("no CSRF field on the page: {text}"))
            .to_owned()
    }

    pub fn expect(self, status: u16) -> Page {
        assert_eq!(self.status, status, "{}", self.text());
        self
    }
}

/// A browser: cookies by name (the app's only), everything it saw kept to look for
/// secrets in later.
pub struct Browser {
    agent: ureq::Agent,
    pub base: String,
    pub jar: HashMap<String, String>,
    /// Values that must never appear in logs or pages.
    pub secrets: Vec<String>,
}

impl Browser {
    pub fn new(base: &str) -> Browser {
        // A connection per request: the app answers a refused upload before reading
        // its body and then closes the connection, which a pooled connection would
        // find only at its next request (a browser retries that; ureq does not).
        let agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .max_idle_connections(0)
            .http_status_as_error(false)
            .build()
            .new_agent();
        Browser {
            agent,
            base: base.to_owned(),
            jar: HashMap::new(),
            secrets: Vec::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    fn cookies(&self) -> String {
        let mut pairs: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.sort();
        pairs.join("; ")
    }

    fn answer(&mut self, mut r: ureq::http::Response<ureq::Body>) -> Page {
        for set in r.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let (pair, attrs) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.jar.remove(name);
            } else {
                self.secrets.push(value.to_owned());
                self.jar.insert(name.to_owned(), value.to_owned());
            }
        }
        let location = r
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        if let Some(code) = location
            .as_deref()
            .and_then(|l| l.split("code=").nth(1))
            .map(|c| c.split('&').next().unwrap().to_owned())
        {
            self.secrets.push(code);
        }
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        Page {
            status: r.status().as_u16(),
            location,
            headers,
            body: r
                .body_mut()
                .with_config()
                .limit(1 << 30)
                .read_to_vec()
                .unwrap(),
        }
    }

    pub fn get(&mut self, path: &str) -> Page {
        let url = self.url(path);
        // A return from digi.me carries the authorization code and the state.
        if let Some((_, query)) = url.split_once('?') {
            for (name, value) in form_urlencoded::parse(query.as_bytes()) {
                if name == "code" || name == "state" {
                    self.secrets.push(value.into_owned());
                }
            }
        }
        let r = self
            .agent
            .get(&url)
            .header("cookie", self.cookies())
            .call()
            .unwrap();
        self.answer(r)
    }

    pub fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let url = self.url(path);
        let r = self
            .agent
            .post(&url)
            .header("cookie", self.cookies())
            .header("content-type", "application/x-www-form-urlencoded")
            .send(body.as_bytes())
            .unwrap();
        self.answer(r)
    }

    /// Posts the upload form: `csrf`, then the file.
    pub fn push(&mut self, csrf: &str, name: &str, bytes: &[u8]) -> Page {
        self.push_typed(csrf, name, "application/octet-stream", bytes)
    }

    /// [`Browser::push`], with the file's `Content-Type`.
    pub fn push_typed(&mut self, csrf: &str, name: &str, mime: &str, bytes: &[u8]) -> Page {
        let boundary = "----digimeWebAppTest7a1f";
        let mut body = Vec::new();
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {mime}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let url = self.url("/push");
        let r = self
            .agent
            .post(&url)
            .header("cookie", self.cookies())
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .send(&body[..])
            .unwrap();
        self.answer(r)
    }

    /// Pushes a file, which must succeed (back to the upload page).
    pub fn push_ok(&mut self, csrf: &str, name: &str, bytes: &[u8]) {
        let p = self.push(csrf, name, bytes);
        assert_eq!(
            (p.status, p.location.as_deref()),
            (303, Some("/upload")),
            "{}",
            p.text()
        );
    }

    /// Signs up (and so in) as `name`.
    pub fn sign_up(&mut self, name: &str, password: &str) {
        let csrf = self.get("/").expect(200).csrf();
        self.secrets.push(password.to_owned());
        let p = self.post_form(
            "/signup",
            &[("name", name), ("password", password), ("csrf", &csrf)],
        );
        assert_eq!(p.status, 303, "{}", p.text());
    }

    /// The CSRF token of the signed-in home page (in the pages by design; never in the
    /// log).
    pub fn csrf(&mut self) -> String {
        self.get("/").expect(200).csrf()
    }

    /// Presses "Read my library" and waits for the read to end; the library page.
    pub fn read_library(&mut self, csrf: &str) -> String {
        let p = self.post_form("/library/read", &[("csrf", csrf)]);
        assert_eq!(p.status, 303, "{}", p.text());
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let page = self.get("/library").expect(200).text();
            if !page.contains("Reading your library") {
                return page;
            }
            assert!(std::time::Instant::now() < deadline, "the read never ended");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Presses Connect and makes `decisions` on the consent pages it leads to (one
    /// per authorization); the app's last answer.
    pub fn connect(&mut self, control: &Control, decisions: &[&str]) -> Page {
        let csrf = self.csrf();
        let mut p = self.post_form("/connect", &[("csrf", &csrf)]);
        for decision in decisions {
            assert_eq!(p.status, 303, "{}", p.text());
            let onboard = p.location.clone().unwrap();
            assert!(onboard.contains("/apps/saas/"), "{onboard}");
            let (status, back) = control.decide_on(&onboard, decision);
            assert_eq!(status, 302);
            p = self.get(&back.unwrap());
        }
        p
    }
}

/// Asserts that none of `secrets` appears in `text`.
pub fn assert_no_secret(text: &str, secrets: &[String], what: &str) {
    for s in secrets.iter().filter(|s| s.len() >= 8) {
        assert!(
            !text.contains(s.as_str()),
            "{what} shows a secret ({}…)",
            &s[..4]
        );
    }
}

/// The secret values of a stored token.
pub fn token_secrets(token: &serde_json::Value) -> Vec<String> {
    ["accessToken", "refreshToken"]
        .iter()
        .map(|k| token[k]["value"].as_str().unwrap().to_owned())
        .collect()
}
