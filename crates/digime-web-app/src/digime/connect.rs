//! The home page, `POST /connect` and `GET /return`: the write contract first, then
//! the read contract linked to the write contract's library; a dead token is
//! reauthorized (the same library). The state and the PKCE verifier stay here; the
//! state is single use, bound to the session that started it, and expires.

use super::{Held, failure_page};
use crate::App;
use crate::db::{self, Kind, Mode};
use crate::pages::{self, button, page};
use crate::session::{CsrfForm, CsrfOnly, SignedIn, Visitor, sign_in_page};
use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use digime_protocol::auth::ReauthorizeOptions;
use digime_protocol::{
    AuthorizeOptions, CallbackError, CodeVerifier, Error, ErrorCode, UserAccessToken,
    parse_callback,
};

/// `GET /`: sign in, or where the user's digi.me connection stands.
pub async fn home(State(app): State<App>, Extension(v): Extension<Visitor>) -> Response {
    let Some(user) = &v.user else {
        return sign_in_page(&v, None).into_response();
    };
    let (write, read) = match app.tokens(user.id).await {
        Ok(both) => both,
        Err(r) => return r,
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
    _: CsrfForm<CsrfOnly>,
) -> Response {
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
    let (write, read) = match app.tokens(user).await {
        Ok(both) => both,
        Err(r) => return r,
    };
    let (kind, how) = match (write, read) {
        (None, _) => (Kind::Write, How::Authorize { link: None }),
        (Some(w), _) if w.dead => (Kind::Write, How::Reauthorize(w.token)),
        (Some(_), Some(r)) if r.dead => (Kind::Read, How::Reauthorize(r.token)),
        (Some(_), Some(_)) => return Redirect::to("/library").into_response(),
        (Some(w), None) => return link_read(app, v, user, w.token).await,
    };
    match begin(app, v, user, kind, how).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(user, contract = kind.as_str(), error = %e, "an authorization could not start");
            failure_page("Starting the authorization", &e)
        }
    }
}

/// Starts the read contract's authorization, linked with the write contract's token:
/// linking needs a live access token, so one that expired (by its expiry, or by the
/// server's word) is refreshed first, and the refreshed token stored at once (the
/// refresh spent the stored refresh token).
async fn link_read(app: &App, v: &Visitor, user: i64, mut link: UserAccessToken) -> Response {
    let what = "Renewing your connection";
    let mut refreshed = false;
    loop {
        if !refreshed
            && link
                .access_token
                .is_expired_at(std::time::SystemTime::now())
        {
            match app.renew(user, &link).await {
                Ok(t) => link = t,
                Err(e) => return app.failed(user, Kind::Write, &link, what, e).await,
            }
            refreshed = true;
        }
        let how = How::Authorize {
            link: Some(link.clone()),
        };
        match begin(app, v, user, Kind::Read, how).await {
            Ok(r) => return r,
            Err(Error::Api(a)) if a.code == ErrorCode::InvalidToken && !refreshed => {
                match app.renew(user, &link).await {
                    Ok(t) => link = t,
                    Err(e) => return app.failed(user, Kind::Write, &link, what, e).await,
                }
                refreshed = true;
            }
            Err(e) => {
                let what = "Starting the authorization";
                return app.failed(user, Kind::Write, &link, what, e).await;
            }
        }
    }
}

impl App {
    /// Refreshes the write contract's token and stores the new one.
    async fn renew(&self, user: i64, old: &UserAccessToken) -> Result<UserAccessToken, Error> {
        let client = self.client_for(user, Kind::Write);
        let new = client.refresh_token(&self.write, old).await?;
        if let Err(e) = self.replace(user, Kind::Write, old, &new).await {
            // Only a database failure: the refresh spent the old token all the same.
            tracing::error!(
                user,
                status = e.status().as_u16(),
                "a renewed token could not be stored"
            );
        }
        Ok(new)
    }
}

/// Asks digi.me for the authorization URL, keeps the verifier server-side against a
/// fresh state bound to this session, and redirects the browser there; `Err` when
/// digi.me would not start it.
async fn begin(app: &App, v: &Visitor, user: i64, kind: Kind, how: How) -> Result<Response, Error> {
    let state = match digime_crypto::random::alphanumeric(32) {
        Ok(s) => s,
        Err(e) => return Ok(crate::internal(e)),
    };
    let contract = app.contract(kind);
    // What the returning token must be: the same digi.me user as the token linked to
    // or reauthorized.
    let (mode, expect_user) = match &how {
        How::Authorize { link: None } => (Mode::Fresh, None),
        How::Authorize { link: Some(t) } => (Mode::Link, t.user_id().map(str::to_owned)),
        How::Reauthorize(t) => (Mode::Reauthorize, t.user_id().map(str::to_owned)),
    };
    let auth = match how {
        How::Authorize { link } => {
            let options = AuthorizeOptions {
                user_access_token: link,
                ..Default::default()
            };
            (app.client)
                .authorize_url(contract, &app.callback, &state, options)
                .await?
        }
        How::Reauthorize(old) => {
            let options = ReauthorizeOptions {
                state: Some(state.clone()),
                ..Default::default()
            };
            (app.client)
                .reauthorize_url(contract, &app.callback, &old, options)
                .await?
        }
    };
    let pending = db::Pending {
        user,
        kind,
        mode,
        expect_user,
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
        return Ok(crate::internal(e));
    }
    tracing::info!(user, contract = kind.as_str(), "authorization started");
    Ok(Redirect::to(&auth.url).into_response())
}

/// `GET /return`: digi.me sends the browser back. It is guarded by the state, not a
/// CSRF token: the answer counts only if its state is one this session started, not
/// yet used, and not expired (the lookup by the state's hash is the check).
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
    let callback = match parsed {
        Ok(cb) => cb,
        Err(CallbackError::Failed { code, .. }) => {
            tracing::info!(user = pending.user, contract = pending.kind.as_str(), code = ?code, "authorization not given");
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
    // A second fresh authorization (another tab, a double click) would make a second
    // library and leave the read contract on the first: refused.
    if pending.mode == Mode::Fresh {
        match app.token(user, kind).await {
            Ok(None) => {}
            Ok(Some(_)) => {
                return refuse(
                    "digi.me is already connected: this was a second, older attempt. Nothing changed.",
                );
            }
            Err(r) => return r,
        }
    }
    let verifier = CodeVerifier::new(pending.code_verifier);
    let token = match app
        .client
        .exchange_code_for_token(app.contract(kind), &callback.code, &verifier)
        .await
    {
        Ok(token) => token,
        Err(e) => {
            tracing::warn!(user, contract = kind.as_str(), error = %e, "an exchange failed");
            return failure_page("Connecting digi.me", &e);
        }
    };
    if let Some(expected) = &pending.expect_user
        && token.user_id() != Some(expected.as_str())
    {
        tracing::warn!(
            user,
            contract = kind.as_str(),
            "digi.me answered for another library"
        );
        return refuse(
            "digi.me connected a different library than the one this app uses for you. Nothing changed.",
        );
    }
    if let Err(r) = app.store(user, kind, &token).await {
        return r;
    }
    tracing::info!(user, contract = kind.as_str(), "connected");
    next_step(&app, &v, user).await
}
