//! `GET /v1.7/permission-access/contract`, exercised as a server: raw HTTP, request JWTs
//! signed by hand, answers checked field by field.

mod support;

use base64::Engine;
use digime_crypto::PrivateKey;
use digime_sandbox::state::ContractKind;
use digime_sandbox::{
    CONTRACT_EXPIRATION_MS, ContractRegistration, DEMO_APP_ID, DEMO_APP_NAME, DEMO_READ_CONTRACT,
    DEMO_WRITE_CONTRACT, SANDBOX_PARTNER_ID, SandboxConfig,
};
use serde_json::json;
use support::{
    Env, Reply, bearer, claims, now_ms, raw_connection, read_client, read_response, reply, start,
    write_client,
};

fn env_with(contracts: Vec<ContractRegistration>) -> Env {
    start(SandboxConfig {
        contracts,
        ..SandboxConfig::default()
    })
}

fn env() -> Env {
    env_with(Vec::new())
}

fn certificate(key: &PrivateKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.public_key().to_pkcs1_der())
}

impl Env {
    /// `GET permission-access/contract`, with `authorization` if given.
    fn contract(&self, authorization: Option<&str>) -> Reply {
        let mut req = self
            .http
            .get(&self.api("permission-access/contract"))
            .header("content-type", "application/json");
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        reply(req.call())
    }
}

#[test]
fn a_write_contract_gets_its_details() {
    let env = env();
    let r = env.contract(Some(&bearer(
        &env.write_key,
        &claims(&write_client(), json!({})),
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
    let r = env.contract(Some(&bearer(
        &env.read_key,
        &claims(&read_client(), json!({})),
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
    let r = env.contract(Some(&bearer(&key, &claims("other-app_both", json!({})))));
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
    let r = env.contract(Some(&bearer(
        &env.read_key,
        &claims(&write_client(), json!({})),
    )));
    assert_eq!(
        r.error(406, "ValidationErrors"),
        "Parameter validation errors"
    );
    // A signature cut short.
    let good = bearer(&env.write_key, &claims(&write_client(), json!({})));
    let r = env.contract(Some(&good[..good.len() - 8]));
    r.error(406, "ValidationErrors");
    // No bearer at all, and a bearer that is not a JWS.
    env.contract(None).error(406, "ValidationErrors");
    env.contract(Some("Bearer nonsense"))
        .error(406, "ValidationErrors");
}

#[test]
fn a_replayed_nonce_is_refused() {
    let env = env();
    let bearer = bearer(&env.write_key, &claims(&write_client(), json!({})));
    assert_eq!(env.contract(Some(&bearer)).status, 200);
    let r = env.contract(Some(&bearer));
    let message = r.error(406, "InvalidRequest");
    assert!(message.contains("has already been used"), "{message}");
}

#[test]
fn a_stale_timestamp_is_refused() {
    let env = env();
    let mut c = claims(&write_client(), json!({}));
    c["timestamp"] = json!(now_ms() - 10 * 60 * 1000);
    let message = env
        .contract(Some(&bearer(&env.write_key, &c)))
        .error(406, "InvalidRequest");
    assert!(message.contains("outside the accepted window"), "{message}");
}

#[test]
fn an_unknown_client_is_refused_as_everywhere() {
    let env = env();
    let r = env.contract(Some(&bearer(
        &env.write_key,
        &claims("nobody_nothing", json!({})),
    )));
    assert_eq!(
        r.error(400, "InvalidClient"),
        "The client_id (nobody_nothing) is invalid"
    );
}

#[test]
fn extra_claims_are_ignored() {
    let env = env();
    let mut c = claims(&read_client(), json!({}));
    c["access_token"] = json!("not-a-token");
    c["state"] = json!(42);
    let r = env.contract(Some(&bearer(&env.read_key, &c)));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["id"], DEMO_READ_CONTRACT);
}

#[test]
fn another_method_gets_405_in_the_error_shape() {
    use std::io::Write;
    let env = env();
    let bearer = bearer(&env.write_key, &claims(&write_client(), json!({})));
    // One raw connection, so that a connection closed by the 405 shows (an HTTP client
    // would reconnect silently).
    let (mut conn, mut reader, addr) = raw_connection(&env);
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
