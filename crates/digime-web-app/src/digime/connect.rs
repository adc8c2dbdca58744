//! The home page, `POST /connect` and `GET /return`: the write contract first, then
//! the read contract linked to the write contract's library; a dead token is
//! reauthorized (the same library). The state and the PKCE verifier stay here; the
//! state is single use, bound to the session that started it, and expires.

use super::Held;
use crate::App;
use crate::db::{self, Kind};
use crate::pages::{self, button, page};
use crate::session::{CsrfOnly, SignedIn, Visitor, sign_in_page};
use axum::Extension;
use axum::extract::{Form, State};
use axum::http::{StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use digime_protocol::auth::ReauthorizeOptions;
use digime_protocol::{
    AuthorizeOptions, CallbackError, CodeVerifier, UserAccessToken, parse_callback,
};

/// `GET /`: sign in, or where the user's digi.me connection stands.
pub async fn home(State(app): State<App>, Extension(v): Extension<Visitor>) -> Response {
    let Some(user) = &v.user else {
        return sign_in_page(&v, None).into_response();
    };
    let (write, read) = match (
        app.token(user.id, Kind::Write).await,
        app.token(user.id, Kind::Read).await,
    ) {
        (Ok(w), Ok(r)) => (w, r),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let state = |h: &Option<Held>| match h {
        None => "not connected",
        Some(h) if h.dead => "expired: reconnect",
        Some(_) => "connected",
    };
    let all_live = matches!((&write, &read), (Some(w), Some(r)) if !w.dead && !r.dead);
    let any_dead = [&write, &read]
        .iter()
        .any(|h| h.as_ref().is_some_and(|h| h.dead));
    let action = if all_live {
        r#"<p class="ok">Your digi.me library is connected.</p><p><a href="/upload">Push a file</a> · <a href="/library">Your library</a></p>"#.to_owned()
    } else if any_dead {
        format!(
            r#"<p class="error">digi.me no longer accepts this app's access to your library. Reconnect to go on with the same library.</p>{}"#,
            button("/connect", &v.csrf, "Reconnect digi.me", "")
        )
    } else {
        format!(
            "<p>Connect your digi.me library: you will be asked to let this app write into it, then to read it.</p>{}",
            button("/connect", &v.csrf, "Connect digi.me", "")
        )
    };
    let body = format!(
        "<table><tr><th>Writing into your library</th><td>{}</td></tr><tr><th>Reading your library</th><td>{}</td></tr></table>{action}",
        state(&write),
        state(&read)
    );
    Html(page(&format!("Hello, {}", user.name), v.nav(), &body)).into_response()
}

/// `POST /connect`: the next authorization the user needs.
pub async fn connect(
    State(app): State<App>,
    Extension(v): Extension<Visitor>,
    SignedIn(me): SignedIn,
    Form(f): Form<CsrfOnly>,
) -> Response {
    if let Err(r) = v.check_csrf(&f.csrf) {
        return r;
    }
    next_step(&app, &v, me.id).await
}

enum How {
    Authorize { link: Option<UserAccessToken> },
    Reauthorize(UserAccessToken),
}

/// Sends the browser on to the authorization it still needs: write, then read
/// (linked to the write contract's library); a dead token is reauthorized. When all
/// is connected, to the library.
async fn next_step(app: &App, v: &Visitor, user: i64) -> Response {
    let write = match app.token(user, Kind::Write).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let (kind, how) = match write {
        None => (Kind::Write, How::Authorize { link: None }),
        Some(w) if w.dead => (Kind::Write, How::Reauthorize(w.token)),
        Some(w) => match app.token(user, Kind::Read).await {
            Err(r) => return r,
            Ok(Some(r)) if r.dead => (Kind::Read, How::Reauthorize(r.token)),
            Ok(Some(_)) => return Redirect::to("/library").into_response(),
            Ok(None) => {
                // Linking needs a live access token of the write contract.
                let mut link = w.token;
                if link
                    .access_token
                    .is_expired_at(std::time::SystemTime::now())
                {
                    match app
                        .client_for(user, Kind::Write)
                        .refresh_token(&app.write, &link)
                        .await
                    {
                        Ok(t) => link = t,
                        Err(e) => {
                            return app
                                .failed(user, Kind::Write, "Renewing your connection", e)
                                .await;
                        }
                    }
                }
                (Kind::Read, How::Authorize { link: Some(link) })
            }
        },
    };
    begin(app, v, user, kind, how).await
}

/// Asks digi.me for the authorization URL, keeps the verifier server-side against a
/// fresh state bound to this session, and redirects the browser there.
async fn begin(app: &App, v: &Visitor, user: i64, kind: Kind, how: How) -> Response {
    let state = match digime_crypto::random::alphanumeric(32) {
        Ok(s) => s,
        Err(e) => return crate::internal(e),
    };
    let contract = app.contract(kind);
    // A link token is the write contract's; a reauthorization refused as dead cannot
    // be repaired by reconnecting again.
    let linking = matches!(&how, How::Authorize { link: Some(_) });
    let reauthorizing = matches!(&how, How::Reauthorize(_));
    let asked = match how {
        How::Authorize { link } => {
            let options = AuthorizeOptions {
                user_access_token: link,
                ..Default::default()
            };
            app.client
                .authorize_url(contract, &app.callback, &state, options)
                .await
        }
        How::Reauthorize(old) => {
            let options = ReauthorizeOptions {
                state: Some(state.clone()),
                ..Default::default()
            };
            app.client
                .reauthorize_url(contract, &app.callback, &old, options)
                .await
        }
    };
    let auth = match asked {
        Ok(a) => a,
        Err(e) if reauthorizing && e.needs_reauthorization() => {
            tracing::warn!(user, contract = kind.as_str(), error = %e, "reauthorization refused");
            return pages::error(
                StatusCode::BAD_GATEWAY,
                "Not reconnected",
                &format!("digi.me refused to reconnect your library: {e}."),
            );
        }
        Err(e) => {
            let of = if linking { Kind::Write } else { kind };
            return app.failed(user, of, "Starting the authorization", e).await;
        }
    };
    let pending = db::Pending {
        user,
        kind,
        code_verifier: auth.code_verifier.expose().to_owned(),
        expires_at: db::now() + app.pending_ttl,
    };
    let (state_hash, session) = (
        digime_crypto::sha256(state.as_bytes()),
        v.session_hash.clone(),
    );
    let stored = app
        .db
        .call(move |c| db::insert_pending(c, &state_hash, &session, &pending))
        .await;
    if let Err(e) = stored {
        return crate::internal(e);
    }
    tracing::info!(user, contract = kind.as_str(), "authorization started");
    Redirect::to(&auth.url).into_response()
}

/// `GET /return`: digi.me sends the browser back. The answer counts only if its state
/// is one this session started, not yet used, and not expired.
pub async fn back(State(app): State<App>, Extension(v): Extension<Visitor>, uri: Uri) -> Response {
    let parsed = parse_callback(uri.query().unwrap_or(""));
    let state = match &parsed {
        Ok(cb) => cb.state.clone(),
        Err(CallbackError::Failed { state, .. }) => state.clone(),
        Err(_) => None,
    };
    let refuse = |message: &str| pages::error(StatusCode::BAD_REQUEST, "Not connected", message);
    let Some(state) = state else {
        return refuse("This is not an answer to an authorization this app asked for.");
    };
    let (state_hash, session) = (
        digime_crypto::sha256(state.as_bytes()),
        v.session_hash.clone(),
    );
    let pending = match app
        .db
        .call(move |c| db::take_pending(c, &state_hash, &session))
        .await
    {
        Ok(p) => p,
        Err(e) => return crate::internal(e),
    };
    let Some(pending) = pending.filter(|p| v.user.as_ref().is_some_and(|u| u.id == p.user)) else {
        tracing::warn!("a return with an unknown, used, or another browser's state was refused");
        return refuse(
            "This authorization is unknown, was already used, or was started in another browser. Start again from the home page.",
        );
    };
    if pending.expires_at <= db::now() {
        return refuse("The authorization took too long. Start again from the home page.");
    }
    let callback = match parsed.and_then(|cb| cb.verify_state(&state)) {
        Ok(cb) => cb,
        Err(CallbackError::Failed { code, .. }) => {
            tracing::info!(user = pending.user, contract = pending.kind.as_str(), %code, "authorization not given");
            return pages::error(
                StatusCode::BAD_REQUEST,
                "Not connected",
                &format!(
                    "digi.me was not connected ({code}). Nothing was shared. You can try again from the home page."
                ),
            );
        }
        Err(e) => return refuse(&format!("digi.me's answer could not be read: {e}.")),
    };
    let (user, kind) = (pending.user, pending.kind);
    let verifier = CodeVerifier::new(pending.code_verifier);
    match app
        .client
        .exchange_code_for_token(app.contract(kind), &callback.code, &verifier)
        .await
    {
        Ok(token) => {
            if let Err(r) = app.store(user, kind, token).await {
                return r;
            }
            tracing::info!(user, contract = kind.as_str(), "connected");
            next_step(&app, &v, user).await
        }
        Err(e) => app.failed(user, kind, "Connecting digi.me", e).await,
    }
}
