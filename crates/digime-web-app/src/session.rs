//! Who is asking: the app's own accounts (name and password), a session per browser
//! in a cookie, and the CSRF token that every state-changing form carries.
//!
//! - The session cookie is `HttpOnly`, `SameSite=Lax` (so it comes back with the
//!   redirect from digi.me, a top-level GET), and `Secure` when the app is served
//!   over HTTPS. The database keeps only its SHA-256.
//! - Every browser gets a session on its first request, signed in or not, so the
//!   sign-in form has a CSRF token too. Signing in or out replaces the session (a
//!   session id known before sign-in is worthless after it).
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
/// A signed-out one, a day.
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

fn random(len: usize) -> Result<String, Response> {
    digime_crypto::random::alphanumeric(len).map_err(|e| {
        tracing::error!(error = %e, "no randomness");
        pages::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Unavailable",
            "The app cannot serve you right now.",
        )
    })
}

/// A new session row for `user`, and the cookie that names it.
async fn new_session(
    app: &App,
    user: Option<i64>,
    replacing: Option<Vec<u8>>,
) -> Result<(Visitor, HeaderValue), Response> {
    let id = random(43)?;
    let csrf = random(32)?;
    let hash = digime_crypto::sha256(id.as_bytes()).to_vec();
    let ttl = if user.is_some() {
        SIGNED_IN_TTL
    } else {
        ANONYMOUS_TTL
    };
    let (h, c) = (hash.clone(), csrf.clone());
    let user_row = app
        .db
        .transaction(move |tx| {
            if let Some(old) = replacing {
                db::delete_session(tx, &old)?;
            }
            db::insert_session(tx, &h, user, &c, db::now() + ttl)?;
            match user {
                Some(id) => Ok(db::session(tx, &h)?
                    .and_then(|s| s.user)
                    .filter(|u| u.id == id)),
                None => Ok(None),
            }
        })
        .await
        .map_err(crate::internal)?;
    let secure = if app.secure_cookies { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={ttl}{secure}");
    let value = HeaderValue::from_str(&cookie).map_err(crate::internal)?;
    Ok((
        Visitor {
            session_hash: hash,
            user: user_row,
            csrf,
        },
        value,
    ))
}

/// Finds the browser's session, or gives it a new one, for every request; adds the
/// headers every page carries.
pub async fn middleware(State(app): State<App>, mut req: Request, next: Next) -> Response {
    let found = match cookie(req.headers(), COOKIE) {
        Some(id) => {
            let hash = digime_crypto::sha256(id.as_bytes()).to_vec();
            let h = hash.clone();
            match app.db.call(move |c| db::session(c, &h)).await {
                Ok(row) => row.map(|row| Visitor {
                    session_hash: hash,
                    user: row.user,
                    csrf: row.csrf,
                }),
                Err(e) => return crate::internal(e),
            }
        }
        None => None,
    };
    let (visitor, set_cookie) = match found {
        Some(v) => (v, None),
        None => match new_session(&app, None, None).await {
            Ok((v, c)) => (v, Some(c)),
            Err(r) => return r,
        },
    };
    req.extensions_mut().insert(visitor);
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    if let Some(c) = set_cookie
        && !headers.contains_key(header::SET_COOKIE)
    {
        headers.insert(header::SET_COOKIE, c);
    }
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    ] {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
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
    Form(f): Form<Credentials>,
) -> Response {
    if let Err(r) = v.check_csrf(&f.csrf) {
        return r;
    }
    let name = f.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return (
            StatusCode::BAD_REQUEST,
            sign_in_page(&v, Some("A name has 1 to 64 characters.")),
        )
            .into_response();
    }
    if f.password.chars().count() < 8 || f.password.len() > 1024 {
        return (
            StatusCode::BAD_REQUEST,
            sign_in_page(&v, Some("A password has at least 8 characters.")),
        )
            .into_response();
    }
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
    match new_session(&app, Some(id), Some(v.session_hash)).await {
        Ok((visitor, cookie)) => signed_in(visitor, cookie),
        Err(r) => r,
    }
}

/// `POST /login`.
pub async fn login(
    State(app): State<App>,
    axum::Extension(v): axum::Extension<Visitor>,
    Form(f): Form<Credentials>,
) -> Response {
    if let Err(r) = v.check_csrf(&f.csrf) {
        return r;
    }
    let name = f.name.trim().to_owned();
    let found = match app.db.call(move |c| db::user_by_name(c, &name)).await {
        Ok(found) => found,
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
    let ok = tokio::task::spawn_blocking(move || verify_password(&stored, &password))
        .await
        .unwrap_or(false);
    match user.filter(|_| ok) {
        Some(user) => match new_session(&app, Some(user.id), Some(v.session_hash)).await {
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

#[derive(Deserialize)]
pub struct CsrfOnly {
    pub csrf: String,
}

/// `POST /logout`: the session is gone; the browser gets a fresh, signed-out one.
pub async fn logout(
    State(app): State<App>,
    axum::Extension(v): axum::Extension<Visitor>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    if let Err(r) = v.check_csrf(&f.csrf) {
        return r;
    }
    match new_session(&app, None, Some(v.session_hash)).await {
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
