//! Composes the endpoint families into the server: the digi.me API (logged, with the
//! API's own 404 and 405 answers) and the control API.

use crate::common::{method_not_allowed, not_found};
use crate::{LoggedRequest, Shared, contract, control, legacy, oauth, read, write};
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;

/// The whole server.
pub(crate) fn router(shared: Shared) -> Router {
    let api = Router::new()
        .merge(oauth::routes())
        .merge(write::routes())
        .merge(read::routes())
        .merge(contract::routes())
        .merge(legacy::api_routes())
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), log_requests));
    let control = control::routes().merge(legacy::control_routes());
    api.merge(control).with_state(shared)
}

/// Keeps the last 1000 API requests for the control API's `requests`.
async fn log_requests(State(shared): State<Shared>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    let mut log = shared.log.lock().unwrap_or_else(|p| p.into_inner());
    if log.len() >= 1000 {
        log.pop_front();
    }
    log.push_back(LoggedRequest {
        method,
        path,
        status: resp.status().as_u16(),
    });
    resp
}
