//! Composes the endpoint families into the server: the digi.me API and the control
//! API, with one 404 and 405 answer in the standard error shape for both, the bodies
//! of bodiless methods read, and the API requests logged.

use crate::common::{method_not_allowed, not_found, read_body};
use crate::{
    LoggedRequest, Shared, cloud, contract, control, legacy, lifecycle, oauth, onboard, read,
    storage, write,
};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

/// The whole server. The fallbacks are set after every route is merged (a
/// method-not-allowed fallback applies only to the routes already there); the logging
/// layer is outermost, so the answers of the layers inside it are logged too, faults
/// included; the bodies of bodiless methods are read after a fault is drawn, so that a
/// `drop` leaves the request unread as a lost connection would.
pub(crate) fn router(shared: Shared) -> Router {
    Router::new()
        .merge(oauth::routes())
        .merge(onboard::routes())
        .merge(lifecycle::routes())
        .merge(write::routes())
        .merge(crate::discovery::routes())
        .merge(crate::provider::routes())
        .merge(crate::report::routes())
        .merge(read::routes())
        .merge(contract::routes())
        .merge(legacy::api_routes())
        .merge(storage::routes())
        .merge(cloud::routes())
        .merge(control::routes())
        .merge(cloud::control_routes())
        .merge(legacy::control_routes())
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(middleware::from_fn(read_bodiless))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            crate::faults::inject,
        ))
        .layer(middleware::from_fn_with_state(shared.clone(), log_requests))
        .with_state(shared)
}

/// Most a request of a method without a body may carry before it is refused.
pub(crate) const BODILESS_LIMIT: usize = 64 * 1024;

/// Reads the whole body of a `GET`, `HEAD`, `DELETE` or `OPTIONS` request before its
/// handler runs (those handlers do not read it): hyper closes a keep-alive connection
/// whose request body was left unread, and the client would pay a new connection for
/// its next request. The body is passed on, so a handler may still look at it. Over
/// [`BODILESS_LIMIT`] → 413 (after draining the rest, bounded); a broken body → 400.
async fn read_bodiless(req: Request, next: Next) -> Response {
    if !matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS
    ) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    match read_body(body, BODILESS_LIMIT).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(failure) => failure.into_response(),
    }
}

/// Keeps the last 1000 API requests (every path outside `/_sandbox/`) for the control
/// API's `requests`.
async fn log_requests(State(shared): State<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if path.starts_with("/_sandbox/") {
        return next.run(req).await;
    }
    let method = req.method().to_string();
    let resp = next.run(req).await;
    let mut log = shared.log.lock().unwrap_or_else(|p| p.into_inner());
    if log.len() >= 1000 {
        log.pop_front();
    }
    log.push_back(LoggedRequest {
        method,
        path,
        status: resp.status().as_u16(),
        fault: resp
            .extensions()
            .get::<crate::faults::Injected>()
            .map(|f| f.0.name()),
    });
    resp
}
