//! The raw-HTTP harness of the sandbox's wire tests, in one place: a sandbox with the
//! demo contracts' keys, an HTTP agent that hands back every answer as it came (no
//! error statuses, no redirects followed), request JWTs signed by hand, and answers read
//! whole into a [`Reply`] with the checks every suite makes on them.
//!
//! Each test file takes it with `mod support;`. What only one suite needs stays in that
//! suite, in its own `impl Env` block.
#![allow(dead_code)]

use digime_crypto::{PrivateKey, PublicKey, jws};
use digime_sandbox::{
    BackgroundSandbox, ConsentMode, DEMO_APP_ID, DEMO_READ_CONTRACT, DEMO_WRITE_CONTRACT, Sandbox,
    SandboxConfig,
};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A fresh request nonce.
pub fn nonce() -> String {
    digime_crypto::random::alphanumeric(32).unwrap()
}

/// The `client_id` of the demo read contract.
pub fn read_client() -> String {
    format!("{DEMO_APP_ID}_{DEMO_READ_CONTRACT}")
}

/// The `client_id` of the demo write contract.
pub fn write_client() -> String {
    format!("{DEMO_APP_ID}_{DEMO_WRITE_CONTRACT}")
}

/// The `agent` of a request body: the Rust SDK, with `meta`.
pub fn agent_with(meta: Value) -> Value {
    json!({"sdk": {"name": "rust", "version": "0.1.0", "meta": meta}})
}

/// The `agent` of a request body: the Rust SDK, with an empty `meta`.
pub fn agent() -> Value {
    agent_with(json!({}))
}

// ---------------------------------------------------------------------------
// Request JWTs.

/// A compact JWS (PS512) of `payload`: a request JWT or a file descriptor.
pub fn sign(key: &PrivateKey, payload: &Value) -> String {
    jws::sign(
        br#"{"alg":"PS512","typ":"JWT"}"#,
        payload.to_string().as_bytes(),
        key,
    )
    .unwrap()
}

/// Request claims: `client_id`, a fresh `nonce` and `timestamp`, then `extra`'s (which
/// win).
pub fn claims(client_id: &str, extra: Value) -> Value {
    let mut claims = json!({"client_id": client_id, "nonce": nonce(), "timestamp": now_ms()});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

/// `Bearer <JWS>` of `claims`, signed by `key`.
pub fn bearer(key: &PrivateKey, claims: &Value) -> String {
    format!("Bearer {}", sign(key, claims))
}

/// A compact JWS (PS512) with this JOSE header: a storage JWT, or a broken one.
pub fn sign_with_header(key: &PrivateKey, header: &Value, payload: &Value) -> String {
    jws::sign(
        header.to_string().as_bytes(),
        payload.to_string().as_bytes(),
        key,
    )
    .unwrap()
}

/// The JOSE header of a storage JWT (the S flavour) of a contract.
pub fn storage_header(contract_id: &str, app_id: &str) -> Value {
    json!({"alg": "PS512", "typ": "at+jwt", "kid": format!("{contract_id}_{app_id}_0")})
}

/// The claims of a storage JWT of a contract: issued now, for 60 seconds.
pub fn storage_claims(contract_id: &str, app_id: &str) -> Value {
    let iat = now_ms() / 1000;
    json!({"sub": app_id, "iss": contract_id, "aud": "cloud", "iat": iat, "exp": iat + 60})
}

/// `Bearer <storage JWT>` of a contract, signed by `key`.
pub fn storage_bearer(key: &PrivateKey, contract_id: &str, app_id: &str) -> String {
    format!(
        "Bearer {}",
        sign_with_header(
            key,
            &storage_header(contract_id, app_id),
            &storage_claims(contract_id, app_id)
        )
    )
}

// ---------------------------------------------------------------------------
// Answers.
/// A fresh PKCE pair: `(verifier, challenge)`.
pub fn pkce() -> (String, String) {
    let verifier = digime_crypto::random::alphanumeric(43).unwrap();
    let challenge = digime_crypto::pkce::challenge_of(&verifier);
    (verifier, challenge)
}

/// An answer, read whole.
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
    /// The `error.code` of the body, or `""`.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
    /// Checks the status and a JSON content type; the body.
    pub fn ok(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.text());
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{:?}",
            self.header("content-type")
        );
        self.json()
    }
    /// Checks the standard error shape (body and `X-Error-*` headers); the message.
    pub fn error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "{}", self.text());
        let v = self.json();
        let e = v["error"].as_object().expect("an error object");
        assert_eq!(e.len(), 3, "{v}");
        assert_eq!(e["code"], code, "{v}");
        let message = e["message"].as_str().unwrap().to_owned();
        let reference = e["reference"].as_str().unwrap();
        assert_eq!(reference.len(), 32, "{v}");
        assert!(reference.bytes().all(|b| b.is_ascii_alphanumeric()), "{v}");
        assert_eq!(self.header("x-error-code"), Some(code));
        assert_eq!(self.header("x-error-message"), Some(message.as_str()));
        assert_eq!(self.header("x-error-reference"), Some(reference));
        message
    }
    /// A 302 answer: its `location`.
    pub fn location(&self) -> url::Url {
        assert_eq!(self.status, 302, "{}", self.text());
        url::Url::parse(self.header("location").unwrap()).unwrap()
    }
    /// A 302 answer: its `location`, with the query as pairs.
    pub fn redirect(&self) -> (url::Url, Vec<(String, String)>) {
        let url = self.location();
        let pairs = params(&url);
        (url, pairs)
    }
}

/// What an agent call gave, read whole (up to 1 GiB).
pub fn reply(r: Result<http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut r = r.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .unwrap();
    Reply {
        status,
        headers,
        body,
    }
}

/// Reads one HTTP/1.1 response with a `content-length` body.
pub fn read_response(r: &mut impl std::io::BufRead) -> std::io::Result<Reply> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut headers = http::HeaderMap::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.append(
                http::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
                http::HeaderValue::from_str(v.trim()).unwrap(),
            );
        }
    }
    let length = headers
        .get("content-length")
        .map_or(0, |v| v.to_str().unwrap().parse().unwrap());
    let mut body = vec![0u8; length];
    r.read_exact(&mut body)?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

// ---------------------------------------------------------------------------
// Queries.

/// A URL's query as pairs, in order.
pub fn params(url: &url::Url) -> Vec<(String, String)> {
    url.query_pairs().into_owned().collect()
}

/// Owned pairs, to compare with a query.
pub fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Where [`param`] looks: a URL, or its query already as pairs.
pub trait Query {
    fn to_pairs(&self) -> Vec<(String, String)>;
}

impl Query for url::Url {
    fn to_pairs(&self) -> Vec<(String, String)> {
        params(self)
    }
}

impl Query for Vec<(String, String)> {
    fn to_pairs(&self) -> Vec<(String, String)> {
        self.clone()
    }
}

/// The first value of the query parameter `key`.
pub fn param(query: &impl Query, key: &str) -> Option<String> {
    query
        .to_pairs()
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// The names in a file list, in order (none for a list without `fileList`).
pub fn file_names(list: &Value) -> Vec<String> {
    list["fileList"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| f["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// The sandbox.

/// A sandbox, an agent on it, and the demo contracts' private keys.
pub struct Env {
    pub sandbox: BackgroundSandbox,
    pub http: ureq::Agent,
    pub read_key: PrivateKey,
    pub write_key: PrivateKey,
}

/// A user of the sandbox, with tokens for both demo contracts.
pub struct User {
    pub id: String,
    pub read_at: String,
    pub read_rt: String,
    pub write_at: String,
}

/// An agent that answers every status as it is and follows no redirect.
pub fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .build()
        .new_agent()
}

/// The default configuration with `consent` and 20 ms sync steps.
pub fn config(consent: ConsentMode) -> SandboxConfig {
    SandboxConfig {
        consent,
        sync_step: Duration::from_millis(20),
        ..SandboxConfig::default()
    }
}

/// Spawns a sandbox of `config`.
pub fn start(config: SandboxConfig) -> Env {
    let sandbox = Sandbox::spawn(config).unwrap();
    let info = sandbox.info().clone();
    Env {
        read_key: PrivateKey::from_pem(&info.demo.read.private_key_pem().unwrap()).unwrap(),
        write_key: PrivateKey::from_pem(&info.demo.write.private_key_pem().unwrap()).unwrap(),
        sandbox,
        http: http_agent(),
    }
}

/// A raw keep-alive connection to the sandbox: `(writer, reader, host)`.
pub fn raw_connection(
    env: &Env,
) -> (
    std::net::TcpStream,
    std::io::BufReader<std::net::TcpStream>,
    String,
) {
    let addr = env
        .sandbox
        .info()
        .api
        .trim_start_matches("http://")
        .trim_end_matches("/v1.7/")
        .to_owned();
    let conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let reader = std::io::BufReader::new(conn.try_clone().unwrap());
    (conn, reader, addr)
}

impl Env {
    /// Posts a page's decision form: the page's query and `decision`.
    pub fn decide(&self, page_url: &str, decision: &str) -> Reply {
        let url = url::Url::parse(page_url).unwrap();
        let page = url.path().rsplit('/').next().unwrap().to_owned();
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.extend_pairs(url.query_pairs());
        form.append_pair("decision", decision);
        reply(
            self.http
                .post(&self.onboard(&format!("{page}/decision")))
                .content_type("application/x-www-form-urlencoded")
                .send(form.finish()),
        )
    }

    /// Exchanges an authorization code of `client` at `oauth/token`.
    pub fn exchange(&self, client: &str, code: &str, verifier: &str) -> Reply {
        reply(
            self.http
                .post(&self.api("oauth/token"))
                .header(
                    "authorization",
                    self.bearer(
                        client,
                        json!({"grant_type": "authorization_code", "code": code,
                               "code_verifier": verifier}),
                    ),
                )
                .send_empty(),
        )
    }

    /// [`Env::exchange`], answered 201: the access token.
    pub fn access_token_of(&self, client: &str, code: &str, verifier: &str) -> String {
        let v = self.exchange(client, code, verifier).ok(201);
        let payload = self.server_payload(v["token"].as_str().unwrap(), &self.api("jwks/oauth"));
        payload["access_token"]["value"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}{path}", self.sandbox.info().api)
    }
    pub fn control(&self, path: &str) -> String {
        format!("{}{path}", self.sandbox.info().control())
    }
    pub fn onboard(&self, page: &str) -> String {
        format!("{}{page}", self.sandbox.info().onboard)
    }
    pub fn state_dir(&self) -> PathBuf {
        let key = &self.sandbox.info().demo.write.private_key_path;
        key.parent().unwrap().to_path_buf()
    }
    pub fn library_dir(&self, user: &str) -> PathBuf {
        self.state_dir().join("library").join(user)
    }

    /// The private key of a demo client.
    pub fn key(&self, client: &str) -> &PrivateKey {
        if client == read_client() {
            &self.read_key
        } else {
            &self.write_key
        }
    }
    /// `Bearer <JWS>` for `client` with `client_id`, `nonce`, `timestamp` and `extra`.
    pub fn bearer(&self, client: &str, extra: Value) -> String {
        bearer(self.key(client), &claims(client, extra))
    }
    /// A user-scoped bearer (with an `access_token` claim).
    pub fn user_bearer(&self, client: &str, at: &str) -> String {
        self.bearer(client, json!({ "access_token": at }))
    }
    /// A user-scoped bearer of the demo read contract.
    pub fn read_bearer(&self, at: &str) -> String {
        self.user_bearer(&read_client(), at)
    }

    pub fn get(&self, url: &str) -> Reply {
        reply(self.http.get(url).call())
    }
    pub fn control_post(&self, path: &str, body: Value) -> Reply {
        reply(
            self.http
                .post(&self.control(path))
                .content_type("application/json")
                .send(body.to_string()),
        )
    }
    pub fn control_get(&self, path: &str) -> Reply {
        reply(self.http.get(&self.control(path)).call())
    }
    /// A control GET that must answer 200: its body.
    pub fn control_json(&self, path: &str) -> Value {
        let r = self.control_get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        r.json()
    }

    /// `POST storage` as `client`, which must answer 201: the provisional storage's id.
    pub fn provisional_storage(&self, client: &str) -> String {
        let v = reply(
            self.http
                .post(&self.api("storage"))
                .header("authorization", self.bearer(client, json!({})))
                .content_type("application/json")
                .send_empty(),
        )
        .ok(201);
        v["id"].as_str().unwrap().to_owned()
    }

    /// A user with tokens for both demo contracts, through the sandbox shortcut.
    pub fn user(&self) -> User {
        let v = self.control_post("users", json!({})).ok(200);
        let t =
            |c: String, which: &str| v["tokens"][c][which]["value"].as_str().unwrap().to_owned();
        User {
            id: v["user"]["id"].as_str().unwrap().to_owned(),
            read_at: t(read_client(), "accessToken"),
            read_rt: t(read_client(), "refreshToken"),
            write_at: t(write_client(), "accessToken"),
        }
    }

    /// Verifies a server JWS against the key set its `jku` names, which must be `jku`;
    /// its payload.
    pub fn server_payload(&self, token: &str, jku: &str) -> Value {
        let compact = jws::Compact::parse(token).unwrap();
        let header: Value = serde_json::from_slice(&compact.header().unwrap()).unwrap();
        assert_eq!(header["alg"], "PS512");
        assert_eq!(header["jku"].as_str(), Some(jku));
        let keys = self.get(jku);
        assert_eq!(keys.status, 200);
        let keys = keys.json();
        let entry = keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == header["kid"])
            .unwrap();
        let key = PublicKey::from_pem(entry["pem"].as_str().unwrap()).unwrap();
        compact.verify(&key).unwrap();
        serde_json::from_slice(&compact.payload().unwrap()).unwrap()
    }

    /// `POST permission-access/import` with the demo write contract: `content` under
    /// `descriptor`, which is signed here.
    pub fn import(&self, write_at: &str, descriptor: &Value, content: &[u8]) -> Reply {
        reply(
            self.http
                .post(&self.api("permission-access/import"))
                .header("authorization", self.user_bearer(&write_client(), write_at))
                .header("filedescriptor", sign(&self.write_key, descriptor))
                .content_type("application/octet-stream")
                .send(content),
        )
    }

    /// `GET permission-access/accounts` as `client`.
    pub fn accounts_reply(&self, client: &str, at: &str) -> Reply {
        reply(
            self.http
                .get(&self.api("permission-access/accounts"))
                .header("authorization", self.user_bearer(client, at))
                .call(),
        )
    }

    /// The file list of a session, read with the demo read contract.
    pub fn list(&self, at: &str, key: &str) -> Reply {
        reply(
            self.http
                .get(&self.api(&format!("permission-access/query/{key}")))
                .header("authorization", self.read_bearer(at))
                .header("accept", "application/json")
                .call(),
        )
    }
    pub fn list_ok(&self, at: &str, key: &str) -> Value {
        self.list(at, key).ok(200)
    }
    /// Polls the file list until it is `completed` or `partial`.
    pub fn wait_done(&self, at: &str, key: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.list_ok(at, key);
            if matches!(v["status"]["state"].as_str(), Some("completed" | "partial")) {
                return v;
            }
            assert!(Instant::now() < deadline, "sync never ended: {v}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
