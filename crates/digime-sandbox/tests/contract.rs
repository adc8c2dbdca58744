//! `GET /v1.7/permission-access/contract`, exercised as a server: raw HTTP, request JWTs
//! signed by hand, answers checked field by field.

use base64::Engine;
use digime_crypto::{PrivateKey, jws};
use digime_sandbox::state::ContractKind;
use digime_sandbox::{
    BackgroundSandbox, CONTRACT_EXPIRATION_MS, ContractRegistration, DEMO_APP_ID, DEMO_APP_NAME,
    DEMO_READ_CONTRACT, DEMO_WRITE_CONTRACT, SANDBOX_PARTNER_ID, Sandbox, SandboxConfig,
};
use serde_json::{Value, json};
use std::time::SystemTime;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn nonce() -> String {
    digime_crypto::random::alphanumeric(32).unwrap()
}

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
    /// Checks the standard error shape (body and `X-Error-*` headers) and returns the
    /// message.
    fn error(&self, status: u16, code: &str) -> String {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        let v = self.json();
        let e = v["error"].as_object().expect("an error object");
        assert_eq!(e.len(), 3, "{v}");
        assert_eq!(e["code"], code);
        let message = e["message"].as_str().unwrap().to_owned();
        let reference = e["reference"].as_str().unwrap();
        assert_eq!(reference.len(), 32);
        assert!(reference.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(self.header("x-error-code"), Some(code));
        assert_eq!(self.header("x-error-message"), Some(message.as_str()));
        assert_eq!(self.header("x-error-reference"), Some(reference));
        message
    }
}

struct Env {
    sandbox: BackgroundSandbox,
    http: ureq::Agent,
    read_key: PrivateKey,
    write_key: PrivateKey,
}

fn env_with(contracts: Vec<ContractRegistration>) -> Env {
    let sandbox = Sandbox::spawn(SandboxConfig {
        contracts,
        ..SandboxConfig::default()
    })
    .unwrap();
    let info = sandbox.info().clone();
    let read_key = PrivateKey::from_pem(&info.demo.read.private_key_pem().unwrap()).unwrap();
    let write_key = PrivateKey::from_pem(&info.demo.write.private_key_pem().unwrap()).unwrap();
    let http = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    Env {
        sandbox,
        http,
        read_key,
        write_key,
    }
}

fn env() -> Env {
    env_with(Vec::new())
}

fn sign(key: &PrivateKey, claims: &Value) -> String {
    let jwt = jws::sign(
        br#"{"alg":"PS512","typ":"JWT"}"#,
        claims.to_string().as_bytes(),
        key,
    )
    .unwrap();
    format!("Bearer {jwt}")
}

fn claims(client_id: &str) -> Value {
    json!({"client_id": client_id, "nonce": nonce(), "timestamp": now_ms()})
}

fn client(contract: &str) -> String {
    format!("{DEMO_APP_ID}_{contract}")
}

fn certificate(key: &PrivateKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.public_key().to_pkcs1_der())
}

impl Env {
    fn url(&self) -> String {
        format!("{}permission-access/contract", self.sandbox.info().api)
    }

    fn get(&self, authorization: Option<&str>) -> Reply {
        let mut req = self
            .http
            .get(&self.url())
            .header("content-type", "application/json");
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        reply(req.call())
    }
}

fn reply(r: Result<http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut r = r.unwrap();
    Reply {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.body_mut().read_to_vec().unwrap(),
    }
}

#[test]
fn a_write_contract_gets_its_details() {
    let env = env();
    let r = env.get(Some(&sign(
        &env.write_key,
        &claims(&client(DEMO_WRITE_CONTRACT)),
    )));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(
        r.json(),
        json!({
            "accessType": "w",
            "application": {"id": DEMO_APP_ID, "name": DEMO_APP_NAME, "resources": {}, "status": 1},
            "certificate": certificate(&env.write_key),
            "certificateContractSchemaVersion": "2.0",
            "expirationDate": CONTRACT_EXPIRATION_MS,
            "id": DEMO_WRITE_CONTRACT,
            "partnerId": SANDBOX_PARTNER_ID,
            "type": "write",
        })
    );
    assert_eq!(DEMO_APP_NAME, "Sandbox demo");
    assert_eq!(SANDBOX_PARTNER_ID, "prt_sandbox");
    assert_eq!(CONTRACT_EXPIRATION_MS, 4_102_444_800_000);
}

#[test]
fn a_read_contract_gets_its_details() {
    let env = env();
    let r = env.get(Some(&sign(
        &env.read_key,
        &claims(&client(DEMO_READ_CONTRACT)),
    )));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(
        v,
        json!({
            "accessType": "r",
            "application": {"id": DEMO_APP_ID, "name": DEMO_APP_NAME, "resources": {}, "status": 1},
            "certificate": certificate(&env.read_key),
            "certificateContractSchemaVersion": "2.0",
            "expirationDate": CONTRACT_EXPIRATION_MS,
            "id": DEMO_READ_CONTRACT,
            "partnerId": SANDBOX_PARTNER_ID,
            "type": "read",
        })
    );
    assert_ne!(v["certificate"], json!(certificate(&env.write_key)));
}

#[test]
fn a_registered_read_write_contract_is_a_write_contract_of_its_application() {
    let key = PrivateKey::generate().unwrap();
    let env = env_with(vec![ContractRegistration {
        app_id: "other-app".into(),
        contract_id: "both".into(),
        public_key: key.public_key(),
        kind: ContractKind::ReadWrite,
    }]);
    let r = env.get(Some(&sign(&key, &claims("other-app_both"))));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["accessType"], "w");
    assert_eq!(v["type"], "readwrite");
    assert_eq!(v["id"], "both");
    assert_eq!(
        v["application"],
        json!({"id": "other-app", "name": "other-app", "resources": {}, "status": 1})
    );
    assert_eq!(v["certificate"], json!(certificate(&key)));
}

#[test]
fn a_bad_signature_is_refused_with_the_bearer_error() {
    let env = env();
    // Signed with the read contract's key, claiming to be the write contract.
    let r = env.get(Some(&sign(
        &env.read_key,
        &claims(&client(DEMO_WRITE_CONTRACT)),
    )));
    assert_eq!(
        r.error(406, "ValidationErrors"),
        "Parameter validation errors"
    );
    // A signature cut short.
    let good = sign(&env.write_key, &claims(&client(DEMO_WRITE_CONTRACT)));
    let r = env.get(Some(&good[..good.len() - 8]));
    r.error(406, "ValidationErrors");
    // No bearer at all, and a bearer that is not a JWS.
    env.get(None).error(406, "ValidationErrors");
    env.get(Some("Bearer nonsense"))
        .error(406, "ValidationErrors");
}

#[test]
fn a_replayed_nonce_is_refused() {
    let env = env();
    let bearer = sign(&env.write_key, &claims(&client(DEMO_WRITE_CONTRACT)));
    assert_eq!(env.get(Some(&bearer)).status, 200);
    let r = env.get(Some(&bearer));
    let message = r.error(406, "InvalidRequest");
    assert!(message.contains("has already been used"), "{message}");
}

#[test]
fn a_stale_timestamp_is_refused() {
    let env = env();
    let mut c = claims(&client(DEMO_WRITE_CONTRACT));
    c["timestamp"] = json!(now_ms() - 10 * 60 * 1000);
    let message = env
        .get(Some(&sign(&env.write_key, &c)))
        .error(406, "InvalidRequest");
    assert!(message.contains("outside the accepted window"), "{message}");
}

#[test]
fn an_unknown_client_is_refused_as_everywhere() {
    let env = env();
    let r = env.get(Some(&sign(&env.write_key, &claims("nobody_nothing"))));
    assert_eq!(
        r.error(400, "InvalidClient"),
        "The client_id (nobody_nothing) is invalid"
    );
}

#[test]
fn extra_claims_are_ignored() {
    let env = env();
    let mut c = claims(&client(DEMO_READ_CONTRACT));
    c["access_token"] = json!("not-a-token");
    c["state"] = json!(42);
    let r = env.get(Some(&sign(&env.read_key, &c)));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["id"], DEMO_READ_CONTRACT);
}

/// Reads one HTTP/1.1 response with a `content-length` body.
fn read_response(r: &mut impl std::io::BufRead) -> std::io::Result<Reply> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut headers = http::HeaderMap::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let Some((k, v)) = line.split_once(':') else {
            break;
        };
        headers.append(
            http::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
            http::HeaderValue::from_str(v.trim()).unwrap(),
        );
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

#[test]
fn another_method_gets_405_in_the_error_shape() {
    use std::io::Write;
    let env = env();
    let bearer = sign(&env.write_key, &claims(&client(DEMO_WRITE_CONTRACT)));
    // One raw connection, so that a connection closed by the 405 shows (an HTTP client
    // would reconnect silently).
    let addr = env
        .sandbox
        .info()
        .api
        .trim_start_matches("http://")
        .trim_end_matches("/v1.7/")
        .to_owned();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
    let path = "/v1.7/permission-access/contract";
    write!(
        conn,
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: {bearer}\r\n\
         content-type: application/json\r\ncontent-length: 2\r\n\r\n{{}}"
    )
    .unwrap();
    read_response(&mut reader)
        .unwrap()
        .error(405, "MethodNotAllowed");
    // The connection is still good, and the nonce was not spent by the refused call.
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: {bearer}\r\n\r\n"
    )
    .unwrap();
    let r = read_response(&mut reader).expect("the connection is still open");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["id"], DEMO_WRITE_CONTRACT);
}
