//! Who is asking: the app's own accounts (name and password), a session per browser
//! in a cookie, and the CSRF token that every state-changing form carries.
//!
//! - The session cookie is `HttpOnly`, `SameSite=Lax` (so it comes back with the
//!   redirect from digi.me, a top-level GET), and `Secure` when the app is served
//!   over HTTPS. The database keeps only its SHA-256.
//! - Every browser gets a session cookie on its first request, so the sign-in form
//!   has a CSRF token too. A signed-out browser has no row: its CSRF token is an HMAC
//!   of its cookie under the app's secret. Signing in makes a row under a new id, and
//!   signing out drops it (an id known before sign-in is worthless after it).
//! - Passwords are kept as PBKDF2-HMAC-SHA256 (600,000 rounds, a 16-byte salt), from
//!   aws-lc-rs, which the SDK already builds on.

use crate::App;
use crate::db::{self, User};
use crate::pages::{self, csrf_field, esc, page};
use aws_lc_rs::pbkdf2;
use axum::extract::{Form, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::num::NonZeroU32;

/// The session cookie's name.
pub const COOKIE: &str = "digime_app_session";
/// A signed-in session lasts a week.
const SIGNED_IN_TTL: i64 = 7 * 24 * 3600;
/// A signed-out one's cookie, a day.
const ANONYMOUS_TTL: i64 = 24 * 3600;
const ROUNDS: u32 = 600_000;

/// The browser behind a request, as the session middleware found or made it.
#[derive(Clone)]
pub struct Visitor {
    /// SHA-256 of the session id.
    pub session_hash: Vec<u8>,
    /// Who is signed in.
    pub user: Option<User>,
    /// The session's CSRF token.
    pub csrf: String,
}

impl Visitor {
    /// Refuses a form whose CSRF token is not this session's (compared in constant
    /// time).
    pub fn check_csrf(&self, given: &str) -> Result<(), Response> {
        if digime_crypto::constant_time_eq(given.as_bytes(), self.csrf.as_bytes()) {
            Ok(())
        } else {
            Err(pages::error(
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form was not sent from this app's page, or the page is old. Reload it and try again.",
            ))
        }
    }

    /// What the navigation bar shows.
    pub fn nav(&self) -> Option<(&str, &str)> {
        self.user
            .as_ref()
            .map(|u| (u.name.as_str(), self.csrf.as_str()))
    }
}

/// The signed-in user of a request (an extractor): a request without one is sent to
/// the sign-in page.
pub struct SignedIn(pub User);

impl<S: Send + Sync> FromRequestParts<S> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        let user = parts
            .extensions
            .get::<Visitor>()
            .and_then(|v| v.user.clone());
        user.map(SignedIn)
            .ok_or_else(|| Redirect::to("/").into_response())
    }
}

/// A form with a CSRF field.
pub trait HasCsrf {
    /// The form's `csrf` field.
    fn csrf(&self) -> &str;
}

/// A url-encoded form (an extractor) whose CSRF token is the session's: any other
/// is refused with 403 before the handler runs.
pub struct CsrfForm<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for CsrfForm<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned + HasCsrf + Send,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let visitor = req.extensions().get::<Visitor>().cloned();
        let Form(form) = Form::<T>::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let Some(visitor) = visitor else {
            return Err(crate::internal("no session on a request"));
        };
        visitor.check_csrf(form.csrf())?;
        Ok(CsrfForm(form))
    }
}

/// A cookie's value from the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "no randomness");
    pages::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Unavailable",
        "The app cannot serve you right now.",
    )
}

/// A session id: 43 random letters and digits (256 bits).
const ID_LEN: usize = 43;

fn is_session_id(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn cookie_header(app: &App, id: &str, max_age: i64) -> Result<HeaderValue, Response> {
    let secure = if app.secure_cookies { "; Secure" } else { "" };
    let cookie =
        format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&cookie).map_err(crate::internal)
}

/// The header that removes the session cookie.
pub fn clear_cookie(app: &App) -> Result<HeaderValue, Response> {
    cookie_header(app, "", 0)
}

/// A signed-out browser: no row; its CSRF token is derived from its cookie with the
/// app's secret (HMAC-SHA256), so a visitor costs the database nothing.
fn anonymous(app: &App, id: &str) -> Visitor {
    let tag = aws_lc_rs::hmac::sign(&app.secret, format!("anonymous-csrf:{id}").as_bytes());
    Visitor {
        session_hash: digime_crypto::sha256(id.as_bytes()).to_vec(),
        user: None,
        csrf: digime_crypto::b64url_encode(tag.as_ref()),
    }
}

/// A new signed-out session, and its cookie.
fn new_anonymous(app: &App) -> Result<(Visitor, HeaderValue), Response> {
    let id = digime_crypto::random::alphanumeric(ID_LEN).map_err(unavailable)?;
    Ok((anonymous(app, &id), cookie_header(app, &id, ANONYMOUS_TTL)?))
}

/// A new session row for `user`, replacing the browser's last session, and the
/// cookie that names it.
async fn new_session(
    app: &App,
    user: User,
    replacing: Vec<u8>,
) -> Result<(Visitor, HeaderValue), Response> {
    let id = digime_crypto::random::alphanumeric(ID_LEN).map_err(unavailable)?;
    let csrf = digime_crypto::random::alphanumeric(32).map_err(unavailable)?;
    let hash = digime_crypto::sha256(id.as_bytes()).to_vec();
    let (h, c, uid) = (hash.clone(), csrf.clone(), user.id);
    app.db
        .transaction(move |tx| {
            db::delete_session(tx, &replacing)?;
            db::insert_session(tx, &h, uid, &c, db::now() + SIGNED_IN_TTL)
        })
        .await
        .map_err(crate::internal)?;
    let cookie = cookie_header(app, &id, SIGNED_IN_TTL)?;
    let visitor = Visitor {
        session_hash: hash,
        user: Some(user),
        csrf,
    };
    Ok((visitor, cookie))
}

/// Finds the browser's session (a signed-in row, or a signed-out cookie), or gives
/// it a new signed-out one.
pub async fn middleware(State(app): State<App>, mut req: Request, next: Next) -> Response {
    let (visitor, set_cookie) = match cookie(req.headers(), COOKIE).filter(|id| is_session_id(id)) {
        Some(id) => {
            let hash = digime_crypto::sha256(id.as_bytes()).to_vec();
            let h = hash.clone();
            match app.db.call(move |c| db::session(c, &h)).await {
                Ok(Some(row)) => (
                    Visitor {
                        session_hash: hash,
                        user: Some(row.user),
                        csrf: row.csrf,
                    },
                    None,
                ),
                Ok(None) => (anonymous(&app, &id), None),
                Err(e) => return crate::internal(e),
            }
        }
        None => match new_anonymous(&app) {
            Ok((v, c)) => (v, Some(c)),
            Err(r) => return r,
        },
    };
    req.extensions_mut().insert(visitor);
    let mut response = next.run(req).await;
    if let Some(c) = set_cookie
        && !response.headers().contains_key(header::SET_COOKIE)
    {
        response.headers_mut().insert(header::SET_COOKIE, c);
    }
    response
}

/// The Content-Security-Policy of every page: nothing but the page's own style;
/// forms go to the app itself, or on (by the redirect that starts an authorization)
/// to digi.me's onboarding origin.
pub fn content_security_policy(onboard_origin: &str) -> Result<HeaderValue, String> {
    let policy = format!(
        "default-src 'none'; style-src 'unsafe-inline'; connect-src 'self'; \
         form-action 'self' {onboard_origin}; frame-ancestors 'none'; base-uri 'none'"
    );
    HeaderValue::from_str(&policy).map_err(|e| format!("onboarding origin {onboard_origin:?}: {e}"))
}

/// The headers every answer carries, error pages included.
pub async fn security_headers(State(app): State<App>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::CONTENT_SECURITY_POLICY, app.csp.clone()),
    ] {
        headers.entry(name).or_insert(value);
    }
    response
}

/// The sign-in and sign-up forms.
pub fn sign_in_page(v: &Visitor, message: Option<&str>) -> Html<String> {
    let message = message
        .map(|m| format!(r#"<p class="error">{}</p>"#, esc(m)))
        .unwrap_or_default();
    let form = |action: &str, label: &str, autocomplete: &str| {
        format!(
            r#"<form method="post" action="{action}"><h2>{label}</h2>{}
<label>Name <input type="text" name="name" required maxlength="64" autocomplete="username"></label>
<label>Password <input type="password" name="password" required minlength="8" maxlength="1024" autocomplete="{autocomplete}"></label>
<button>{label}</button></form>"#,
            csrf_field(&v.csrf)
        )
    };
    Html(page(
        "Welcome",
        None,
        &format!(
            "{message}<p>Sign in to connect your digi.me library, push files into it and read it back.</p>{}{}",
            form("/login", "Sign in", "current-password"),
            form("/signup", "Create an account", "new-password"),
        ),
    ))
}

#[derive(Deserialize)]
pub struct Credentials {
    name: String,
    password: String,
    csrf: String,
}

impl HasCsrf for Credentials {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

fn hash_password(password: &str) -> Result<String, digime_crypto::CryptoError> {
    let mut salt = [0u8; 16];
    digime_crypto::random::fill(&mut salt)?;
    let mut out = [0u8; 32];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(ROUNDS).unwrap_or(NonZeroU32::MIN),
        &salt,
        password.as_bytes(),
        &mut out,
    );
    Ok(format!(
        "pbkdf2-sha256${ROUNDS}${}${}",
        digime_crypto::b64url_encode(&salt),
        digime_crypto::b64url_encode(&out)
    ))
}

/// Whether `password` is the one `stored` was made from. A malformed hash matches
/// nothing.
fn verify_password(stored: &str, password: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some("pbkdf2-sha256"), Some(rounds), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Some(rounds), Ok(salt), Ok(hash)) = (
        rounds.parse().ok().and_then(NonZeroU32::new),
        digime_crypto::b64url_decode(salt),
        digime_crypto::b64url_decode(hash),
    ) else {
        return false;
    };
    pbkdf2::verify(
        pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        &salt,
        password.as_bytes(),
        &hash,
    )
    .is_ok()
}

fn signed_in(visitor: Visitor, cookie: HeaderValue) -> Response {
    tracing::info!(user = visitor.user.as_ref().map(|u| u.id), "signed in");
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, HeaderValue::from_static("/")),
        ],
    )
        .into_response()
}

/// `POST /signup`: a new account, signed in.
pub async fn signup(
    State(app): State<App>,
    axum::Extension(v): axum::Extension<Visitor>,
    CsrfForm(f): CsrfForm<Credentials>,
) -> Response {
    let name = f.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return (
            StatusCode::BAD_REQUEST,
            sign_in_page(&v, Some("A name has 1 to 64 characters.")),
        )
            .into_response();
    }
    let too_weak = match (f.password.chars().count(), f.password.len()) {
        (..8, _) => Some("A password has at least 8 characters."),
        (_, 1025..) => Some("A password has at most 1024 bytes."),
        _ => None,
    };
    if let Some(message) = too_weak {
        return (StatusCode::BAD_REQUEST, sign_in_page(&v, Some(message))).into_response();
    }
    // One hash at a time: sign-ins cannot take every core from the rest of the app.
    let Ok(_permit) = app.hashing.acquire().await else {
        return crate::internal("the hashing semaphore is closed");
    };
    let hashed = match tokio::task::spawn_blocking(move || hash_password(&f.password)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return crate::internal(e),
        Err(e) => return crate::internal(e),
    };
    let n = name.clone();
    let id = match app.db.call(move |c| db::insert_user(c, &n, &hashed)).await {
        Ok(Some(id)) => id,
        Ok(None) => {
            return (
                StatusCode::CONFLICT,
                sign_in_page(&v, Some("That name is taken.")),
            )
                .into_response();
        }
        Err(e) => return crate::internal(e),
    };
    let user = User { id, name };
    match new_session(&app, user, v.session_hash).await {
        Ok((visitor, cookie)) => signed_in(visitor, cookie),
        Err(r) => r,
    }
}

/// `POST /login`.
pub async fn login(
    State(app): State<App>,
    axum::Extension(v): axum::Extension<Visitor>,
    CsrfForm(f): CsrfForm<Credentials>,
) -> Response {
    let name = f.name.trim().to_owned();
    let n = name.clone();
    let looked_up = app
        .db
        .call(move |c| Ok((db::sign_in_refused_for(c, &n)?, db::user_by_name(c, &n)?)))
        .await;
    let found = match looked_up {
        // Too many failures: refused without a look at the password.
        Ok((Some(left), _)) => {
            tracing::info!("a sign-in was refused: too many failures");
            let minutes = (left + 59) / 60;
            let message =
                format!("Too many failed sign-ins for this name. Try again in {minutes} minutes.");
            return (
                StatusCode::TOO_MANY_REQUESTS,
                sign_in_page(&v, Some(&message)),
            )
                .into_response();
        }
        Ok((None, found)) => found,
        Err(e) => return crate::internal(e),
    };
    // An unknown name costs the same work as a wrong password.
    let (user, stored) = match found {
        Some((user, stored)) => (Some(user), stored),
        None => (
            None,
            format!(
                "pbkdf2-sha256${ROUNDS}$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            ),
        ),
    };
    let password = f.password;
    let Ok(permit) = app.hashing.acquire().await else {
        return crate::internal("the hashing semaphore is closed");
    };
    let ok = tokio::task::spawn_blocking(move || verify_password(&stored, &password))
        .await
        .unwrap_or(false);
    drop(permit);
    let (n, success) = (name.clone(), user.is_some() && ok);
    let counted = app
        .db
        .call(move |c| match success {
            true => db::sign_in_succeeded(c, &n),
            false => db::sign_in_failed(c, &n),
        })
        .await;
    if let Err(e) = counted {
        return crate::internal(e);
    }
    match user.filter(|_| ok) {
        Some(user) => match new_session(&app, user, v.session_hash).await {
            Ok((visitor, cookie)) => signed_in(visitor, cookie),
            Err(r) => r,
        },
        None => {
            tracing::info!("a sign-in was refused");
            (
                StatusCode::UNAUTHORIZED,
                sign_in_page(&v, Some("Wrong name or password.")),
            )
                .into_response()
        }
    }
}

/// A form with nothing but its CSRF token (a button).
#[derive(Deserialize)]
pub struct CsrfOnly {
    pub csrf: String,
}

impl HasCsrf for CsrfOnly {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /logout`: the session is gone; the browser gets a fresh, signed-out one.
pub async fn logout(
    State(app): State<App>,
    axum::Extension(v): axum::Extension<Visitor>,
    _: CsrfForm<CsrfOnly>,
) -> Response {
    let hash = v.session_hash;
    if let Err(e) = app.db.call(move |c| db::delete_session(c, &hash)).await {
        return crate::internal(e);
    }
    match new_anonymous(&app) {
        Ok((_, cookie)) => (
            StatusCode::SEE_OTHER,
            [
                (header::SET_COOKIE, cookie),
                (header::LOCATION, HeaderValue::from_static("/")),
            ],
        )
            .into_response(),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_matches_its_hash_only() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("pbkdf2-sha256$600000$"));
        assert!(verify_password(&h, "correct horse"));
        assert!(!verify_password(&h, "correct horsE"));
        assert_ne!(h, hash_password("correct horse").unwrap(), "salted");
        for bad in [
            "",
            "x",
            "pbkdf2-sha256$0$AA$AA",
            "pbkdf2-sha256$1$!!$AA",
            &format!("{h}$x"),
        ] {
            assert!(!verify_password(bad, "correct horse"), "{bad}");
        }
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("x_digime_app_session=no; digime_app_session=yes"),
        );
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("yes"));
        assert_eq!(cookie(&h, "other"), None);
    }
}
