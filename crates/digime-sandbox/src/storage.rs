//! The storage calls of the API base: `POST storage` (a provisional storage of the
//! calling application) and `GET storage` (the user's storage for it). The files are
//! on the cloud base, in `cloud`.

use crate::checks::{ApiFailure, verify_bearer};
use crate::clouds::{StorageRecord, storage_kid};
use crate::common::{ApiResult, internal, read_body};
use crate::state::RegisteredContract;
use crate::tokens::user_call;
use crate::{Shared, now_ms, random_id};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::json;

/// Most of a body `POST storage` reads (it takes none) before refusing it.
const MAX_BODY: usize = 64 * 1024;

/// The storage routes of `/v1.7/`.
pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/v1.7/storage", post(create).get(user_storage))
}

/// A new storage of the contract's application, made by that contract.
fn new_storage(contract: &RegisteredContract, user_id: Option<String>) -> StorageRecord {
    StorageRecord {
        id: random_id("stg_"),
        app_id: contract.app_id.clone(),
        kid: storage_kid(&contract.contract_id, &contract.app_id),
        created_ms: now_ms(),
        user_id,
        files: Default::default(),
    }
}

/// `POST storage`, a client-only bearer, no body → 201 `{"id", "kid"}`: a provisional
/// storage of the calling contract's application.
async fn create(State(shared): State<Shared>, headers: HeaderMap, body: Body) -> ApiResult {
    let v = verify_bearer(&shared, &headers)?;
    if !read_body(body, MAX_BODY).await?.is_empty() {
        return Err(ApiFailure::bad_params("the call takes no body"));
    }
    let storage = new_storage(&v.contract, None);
    let answer = json!({"id": storage.id, "kid": storage.kid});
    {
        let mut st = shared.lock();
        let id = storage.id.clone();
        st.cloud.storages.insert(id.clone(), storage);
        if let Err(e) = shared.save(&st) {
            st.cloud.storages.remove(&id);
            return Err(internal(e));
        }
    }
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

/// `GET storage`, a user bearer → 200 `{"id", "kid"}`: the user's storage for the
/// calling application (the one linked at authorization, else one made now, then the
/// same on every call).
async fn user_storage(State(shared): State<Shared>, headers: HeaderMap) -> ApiResult {
    let (v, tok) = user_call(&shared, &headers)?;
    let app_id = &v.contract.app_id;
    let mut st = shared.lock();
    if !st.users.contains_key(&tok.user_id) {
        return Err(ApiFailure::invalid_token("access_token", false));
    }
    if let Some(s) = st.cloud.of_user(&tok.user_id, app_id) {
        return Ok(axum::Json(json!({"id": s.id, "kid": s.kid})).into_response());
    }
    let storage = new_storage(&v.contract, Some(tok.user_id.clone()));
    let answer = json!({"id": storage.id, "kid": storage.kid});
    let id = storage.id.clone();
    let before = st.cloud.clone();
    st.cloud.storages.insert(id.clone(), storage);
    st.cloud.link(&id, &tok.user_id);
    if let Err(e) = shared.save(&st) {
        st.cloud = before;
        return Err(internal(e));
    }
    Ok(axum::Json(answer).into_response())
}
