//! The web-app shape of the official example app, on axum and the async driver:
//! `/authorize` starts authorization for a user, `/return` receives the callback,
//! `/push` writes a file. The code verifier stays server-side; the state is random,
//! single use, and bound to the browser by a cookie, and it is checked against the
//! callback's. Tokens are kept per user and replaced when a push refreshes them. (The
//! `user` query parameter stands in for your app's own login session.)
//!
//! ```text
//! cargo run -p digime-examples --bin web_app            # embedded sandbox, consent page
//! open http://127.0.0.1:8080/
//! ```
//! `WEB_APP_SELF_TEST=1` plays the browser once (authorize, Allow, push) and exits.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use digime_async::Client;
use digime_protocol::{
    AuthorizeOptions, CodeVerifier, Contract, FileDescriptor, UserAccessToken, parse_callback,
};
use digime_sandbox::{Sandbox, SandboxConfig};
use serde::Deserialize;
use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex};

struct Pending {
    user: String,
    verifier: CodeVerifier,
}

#[derive(Clone)]
struct App {
    client: Client,
    contract: Contract,
    callback: String,
    /// state → the user it was issued to and their code verifier
    pending: Arc<Mutex<HashMap<String, Pending>>>,
    /// user → token
    tokens: Arc<Mutex<HashMap<String, UserAccessToken>>>,
}

#[derive(Deserialize)]
struct UserQuery {
    user: String,
}

async fn index() -> Html<&'static str> {
    Html(
        r#"<h1>digi.me write example</h1><form action="/authorize"><input name="user" value="alice"><button>Connect digi.me</button></form>"#,
    )
}

/// The cookie that binds an authorization to the browser that started it.
const STATE_COOKIE: &str = "digime_state";

async fn authorize(State(app): State<App>, Query(q): Query<UserQuery>) -> Response {
    let state = match digime_crypto::random::alphanumeric(24) {
        Ok(s) => s,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let auth = match app
        .client
        .authorize_url(
            &app.contract,
            &app.callback,
            &state,
            AuthorizeOptions::default(),
        )
        .await
    {
        Ok(auth) => auth,
        Err(e) => {
            return (
                StatusCode::BAD_GATEWAY,
                format!("authorization failed: {e}"),
            )
                .into_response();
        }
    };
    // Keep the verifier server-side; give the browser only the state, in a cookie.
    let cookie = format!("{STATE_COOKIE}={state}; HttpOnly; SameSite=Lax; Path=/return");
    app.pending.lock().unwrap().insert(
        state,
        Pending {
            user: q.user,
            verifier: auth.code_verifier,
        },
    );
    (
        StatusCode::FOUND,
        [(header::SET_COOKIE, cookie), (header::LOCATION, auth.url)],
    )
        .into_response()
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

async fn callback(State(app): State<App>, headers: HeaderMap, uri: axum::http::Uri) -> Response {
    // The state this browser was given; the one in the URL must match it.
    let Some(expected) = cookie(&headers, STATE_COOKIE) else {
        return (
            StatusCode::BAD_REQUEST,
            "no authorization in progress in this browser",
        )
            .into_response();
    };
    let Some(pending) = app.pending.lock().unwrap().remove(&expected) else {
        return (StatusCode::BAD_REQUEST, "unknown or reused state").into_response();
    };
    let cb = match parse_callback(uri.query().unwrap_or("")).and_then(|c| c.verify_state(&expected))
    {
        Ok(cb) => cb,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("authorization failed: {e}"),
            )
                .into_response();
        }
    };
    match app
        .client
        .exchange_code_for_token(&app.contract, &cb.code, &pending.verifier)
        .await
    {
        Ok(token) => {
            app.tokens
                .lock()
                .unwrap()
                .insert(pending.user.clone(), token);
            let user: String = form_urlencoded::byte_serialize(pending.user.as_bytes()).collect();
            Html(format!(
                r#"<p>Connected.</p><form method="post" action="/push?user={user}"><button>Push a file</button></form>"#
            ))
            .into_response()
        }
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("token exchange failed: {e}"),
        )
            .into_response(),
    }
}

async fn push(
    State(app): State<App>,
    Query(q): Query<UserQuery>,
    body: axum::body::Bytes,
) -> Response {
    let Some(token) = app.tokens.lock().unwrap().get(&q.user).cloned() else {
        return (StatusCode::UNAUTHORIZED, "connect digi.me first").into_response();
    };
    let bytes = if body.is_empty() {
        b"{\"hello\":\"digi.me\"}".to_vec()
    } else {
        body.to_vec()
    };
    match app
        .client
        .push_to_library(
            &app.contract,
            &token,
            &FileDescriptor::new("application/json"),
            Cursor::new(bytes.clone()),
        )
        .await
    {
        Ok(done) => {
            if let Some(new) = done.refreshed_token {
                app.tokens.lock().unwrap().insert(q.user.clone(), new);
            }
            format!("pushed {} bytes for {}", bytes.len(), q.user).into_response()
        }
        Err(e) if e.needs_reauthorization() => {
            let user: String = form_urlencoded::byte_serialize(q.user.as_bytes()).collect();
            Redirect::to(&format!("/authorize?user={user}")).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("push failed: {e}")).into_response(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sandbox = Sandbox::start(SandboxConfig::default()).await?;
    let info = sandbox.info().clone();
    let config = info.client_config();
    let self_test = std::env::var_os("WEB_APP_SELF_TEST").is_some();
    let listen = if self_test {
        "127.0.0.1:0"
    } else {
        "127.0.0.1:8080"
    };
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = App {
        client: Client::new(config),
        contract: info.demo.write.contract()?,
        callback: format!("http://{addr}/return"),
        pending: Default::default(),
        tokens: Default::default(),
    };
    let router = Router::new()
        .route("/", get(index))
        .route("/authorize", get(authorize))
        .route("/return", get(callback))
        .route("/push", post(push))
        .with_state(app);
    println!(
        "web app on http://{addr}/ (digi.me sandbox at {})",
        info.api
    );
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    if self_test {
        let outcome = play_browser(&format!("http://{addr}")).await;
        server.abort();
        return outcome;
    }
    server.await??;
    Ok(())
}

/// Plays a user: start, press Allow on the consent page, come back, push.
async fn play_browser(base: &str) -> Result<(), Box<dyn std::error::Error>> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let location = |r: &reqwest::Response| -> Result<String, Box<dyn std::error::Error>> {
        Ok(r.headers()
            .get("location")
            .ok_or("no redirect")?
            .to_str()?
            .to_owned())
    };
    let started = http
        .get(format!("{base}/authorize?user=alice"))
        .send()
        .await?;
    let onboard = location(&started)?;
    let cookie = started
        .headers()
        .get("set-cookie")
        .ok_or("no state cookie")?
        .to_str()?
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    let page = http.get(&onboard).send().await?.text().await?;
    let code = page
        .split("name=\"code\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .ok_or("no consent form")?;
    let decision = onboard.split('?').next().unwrap_or_default().to_owned() + "/decision";
    let back = location(
        &http
            .post(decision)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("code={code}&decision=allow"))
            .send()
            .await?,
    )?;
    // Without the cookie the callback is refused: it was not started by this browser.
    let forged = http.get(&back).send().await?;
    if forged.status() != reqwest::StatusCode::BAD_REQUEST {
        return Err("a callback without the state cookie was accepted".into());
    }
    let connected = http
        .get(back)
        .header("cookie", cookie)
        .send()
        .await?
        .text()
        .await?;
    println!("{connected}");
    let pushed = http
        .post(format!("{base}/push?user=alice"))
        .send()
        .await?
        .text()
        .await?;
    println!("{pushed}");
    if !pushed.starts_with("pushed") {
        return Err(pushed.into());
    }
    Ok(())
}
