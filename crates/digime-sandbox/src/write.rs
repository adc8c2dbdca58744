//! The write call of `/v1.7/`: `permission-access/import`, a file pushed straight into
//! the user's library.

use crate::Shared;
use crate::checks::{ApiFailure, verify_jws};
use crate::common::{ApiResult, DRAIN_LIMIT, Destination, Owner, Verbatim, drain, store_upload};
use crate::tokens::user_call;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{Map, Value};

/// The write routes of `/v1.7/`.
pub(crate) fn routes() -> Router<Shared> {
    Router::new().route(
        "/v1.7/permission-access/import",
        post(import).layer(DefaultBodyLimit::disable()),
    )
}

/// Checks a FileDescriptor JWT payload: exactly `{"metadata": {...}}`, the metadata a
/// file descriptor as [`crate::postbox::check_descriptor`] checks it (every fault is
/// the same 406 `ValidationErrors`).
fn check_descriptor_claims(claims: &Map<String, Value>) -> Result<Value, ApiFailure> {
    match claims.get("metadata") {
        Some(meta) if claims.len() == 1 => crate::postbox::check_descriptor(meta)
            .map(|()| meta.clone())
            .map_err(|_| ApiFailure::validation()),
        _ => Err(ApiFailure::validation()),
    }
}

/// Every check of an import, before a byte of the body is read: the caller, the
/// contract's right to write, and the signed file descriptor.
fn check_import(shared: &Shared, headers: &HeaderMap) -> Result<(Owner, Value), ApiFailure> {
    let (v, tok) = user_call(shared, headers)?;
    if !v.contract.kind.can_write() {
        return Err(ApiFailure::insufficient_scope());
    }
    let fd = headers
        .get("filedescriptor")
        .and_then(|h| h.to_str().ok())
        .ok_or_else(ApiFailure::validation)?;
    let (_, fd_claims) = verify_jws(shared, fd, Some(&v.contract))?;
    let descriptor = check_descriptor_claims(&fd_claims)?;
    let owner = Owner {
        user_id: tok.user_id,
        app_id: v.contract.app_id.clone(),
        contract_id: v.contract.contract_id.clone(),
    };
    Ok((owner, descriptor))
}

/// `POST permission-access/import`, the file as the body → 201, no body.
async fn import(State(shared): State<Shared>, headers: HeaderMap, body: Body) -> ApiResult {
    let (owner, descriptor) = match check_import(&shared, &headers) {
        Ok(x) => x,
        Err(failure) => {
            drain(body, DRAIN_LIMIT).await;
            return Err(failure);
        }
    };
    store_upload(
        &shared,
        body,
        u64::MAX,
        Verbatim(descriptor),
        owner,
        Destination::Library,
    )
    .await?;
    Ok(StatusCode::CREATED.into_response())
}
