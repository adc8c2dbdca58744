//! `GET /v1.7/permission-access/contract`: the details of the calling contract.

use crate::Shared;
use crate::checks::verify_bearer;
use crate::common::ApiResult;
use crate::state::RegisteredContract;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::get;
use base64::Engine;
use serde_json::{Value, json};

/// The contract route of `/v1.7/`.
pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/v1.7/permission-access/contract", get(contract))
}

/// `GET permission-access/contract`, a client-only bearer (`client_id`, `nonce`,
/// `timestamp`; other claims are ignored, as on every call) → 200, the details of the
/// contract that signed it. A body, if any, was read by the router (bodiless methods).
async fn contract(State(shared): State<Shared>, headers: HeaderMap) -> ApiResult {
    let v = verify_bearer(&shared, &headers)?;
    Ok(axum::Json(details(&v.contract)).into_response())
}

/// The contract-details object. `certificate` is the bare standard base64 of the
/// contract's registered public key (PKCS#1 DER): the sandbox holds no contract
/// certificate, and this is stable and names the key the service verifies with.
pub(crate) fn details(c: &RegisteredContract) -> Value {
    let der = c.key.to_pkcs1_der();
    json!({
        "accessType": c.access_type(),
        "application": {
            "id": c.app_id,
            "name": c.app_name,
            "resources": {},
            "status": 1,
        },
        "certificate": base64::engine::general_purpose::STANDARD.encode(der),
        "certificateContractSchemaVersion": "2.0",
        "expirationDate": c.expires_ms,
        "id": c.contract_id,
        "partnerId": c.partner_id,
        "type": c.kind,
    })
}
