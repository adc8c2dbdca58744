//! The control API under `/_sandbox/`: inspect libraries, expire tokens, reset.

use crate::Shared;
use crate::checks::ApiFailure;
use crate::state::Persisted;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

pub(crate) fn router(shared: Shared) -> Router {
    Router::new()
        .route("/_sandbox/info", get(info))
        .route("/_sandbox/requests", get(requests))
        .route("/_sandbox/users", get(users))
        .route("/_sandbox/users/{user}/files", get(files))
        .route("/_sandbox/users/{user}/files/{file}", get(file_content))
        .route(
            "/_sandbox/users/{user}/expire-access-tokens",
            post(expire_access),
        )
        .route(
            "/_sandbox/users/{user}/expire-refresh-tokens",
            post(expire_refresh),
        )
        .route("/_sandbox/reset", post(reset))
        .with_state(shared)
}

async fn info(State(shared): State<Shared>) -> Response {
    axum::Json(&shared.info).into_response()
}

async fn requests(State(shared): State<Shared>) -> Response {
    let log = shared.log.lock().unwrap_or_else(|p| p.into_inner());
    axum::Json(json!({ "requests": *log })).into_response()
}

async fn users(State(shared): State<Shared>) -> Response {
    let st = shared.lock();
    let mut users: Vec<_> = st
        .users
        .values()
        .map(|u| {
            let files = st.files.iter().filter(|f| f.user_id == u.id).count();
            json!({"id": u.id, "created": u.created, "files": files})
        })
        .collect();
    users.sort_by_key(|u| u["created"].as_u64());
    axum::Json(json!({ "users": users })).into_response()
}

fn unknown_user() -> ApiFailure {
    ApiFailure::new(404, "NotFound", "No such user")
}

async fn files(
    State(shared): State<Shared>,
    Path(user): Path<String>,
) -> Result<Response, ApiFailure> {
    let st = shared.lock();
    if !st.users.contains_key(&user) {
        return Err(unknown_user());
    }
    let files: Vec<_> = st.files.iter().filter(|f| f.user_id == user).collect();
    Ok(axum::Json(json!({ "files": files })).into_response())
}

async fn file_content(
    State(shared): State<Shared>,
    Path((user, file)): Path<(String, String)>,
) -> Result<Response, ApiFailure> {
    let entry = {
        let st = shared.lock();
        st.files
            .iter()
            .find(|f| f.user_id == user && f.id == file)
            .cloned()
    }
    .ok_or_else(|| ApiFailure::new(404, "NotFound", "No such file"))?;
    let path = shared.library_dir().join(&entry.user_id).join(&entry.id);
    let f = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiFailure::new(500, "InternalError", e.to_string()))?;
    let mime = entry.descriptor["mimeType"]
        .as_str()
        .unwrap_or("application/octet-stream")
        .to_owned();
    let body = axum::body::Body::from_stream(tokio_util_stream(f));
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, mime)], body).into_response())
}

/// Streams a file in 64 KiB chunks.
fn tokio_util_stream(
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = std::io::Result<axum::body::Bytes>> {
    use tokio::io::AsyncReadExt;
    futures_util::stream::unfold(Some(file), |state| async move {
        let mut file = state?;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(axum::body::Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

fn expire(shared: &Shared, user: &str, refresh: bool) -> Result<Response, ApiFailure> {
    let mut st = shared.lock();
    if !st.users.contains_key(user) {
        return Err(unknown_user());
    }
    let map = if refresh {
        &mut st.refresh_tokens
    } else {
        &mut st.access_tokens
    };
    let mut n = 0;
    for t in map.values_mut().filter(|t| t.user_id == user) {
        t.expires_s = 0;
        n += 1;
    }
    shared
        .save(&st)
        .map_err(|e| ApiFailure::new(500, "InternalError", e.to_string()))?;
    Ok(axum::Json(json!({ "expired": n })).into_response())
}

async fn expire_access(
    State(shared): State<Shared>,
    Path(user): Path<String>,
) -> Result<Response, ApiFailure> {
    expire(&shared, &user, false)
}

async fn expire_refresh(
    State(shared): State<Shared>,
    Path(user): Path<String>,
) -> Result<Response, ApiFailure> {
    expire(&shared, &user, true)
}

async fn reset(State(shared): State<Shared>) -> Result<Response, ApiFailure> {
    let mut st = shared.lock();
    *st = Persisted::default();
    shared
        .save(&st)
        .map_err(|e| ApiFailure::new(500, "InternalError", e.to_string()))?;
    drop(st);
    let _ = std::fs::remove_dir_all(shared.library_dir());
    let _ = std::fs::create_dir_all(shared.library_dir());
    shared.log.lock().unwrap_or_else(|p| p.into_inner()).clear();
    Ok(axum::Json(json!({ "reset": true })).into_response())
}
