//! The web-app shape of the official example app, on axum and the async driver:
//! `/authorize` starts authorization for a user, `/return` receives the callback,
//! `/push` writes a file. Code verifiers and state are kept per user server-side and
//! the state is checked on return; tokens are kept per user and replaced when a push
//! refreshes them.
//!
//! ```text
//! cargo run -p digime-examples --bin web_app            # embedded sandbox, consent page
//! open http://127.0.0.1:8080/
//! ```
//! `WEB_APP_SELF_TEST=1` plays the browser once (authorize, Allow, push) and exits.

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Router, http::StatusCode};
use digime_async::Client;
use digime_protocol::{
    AuthorizeOptions, CodeVerifier, Config, Contract, FileDescriptor, UserAccessToken,
    parse_callback,
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

async fn authorize(State(app): State<App>, Query(q): Query<UserQuery>) -> Response {
    let state = match digime_crypto::random::alphanumeric(24) {
        Ok(s) => s,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    match app
        .client
        .authorize_url(
            &app.contract,
            &app.callback,
            &state,
            AuthorizeOptions::default(),
        )
        .await
    {
        Ok(auth) => {
            app.pending.lock().unwrap().insert(
                state,
                Pending {
                    user: q.user,
                    verifier: auth.code_verifier,
                },
            );
            Redirect::to(&auth.url).into_response()
        }
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("authorization failed: {e}"),
        )
            .into_response(),
    }
}

async fn callback(State(app): State<App>, uri: axum::http::Uri) -> Response {
    let query = uri.query().unwrap_or("");
    let state = form_state(query);
    let Some(pending) = state.and_then(|s| app.pending.lock().unwrap().remove(&s)) else {
        return (StatusCode::BAD_REQUEST, "unknown or reused state").into_response();
    };
    let expected = form_state(query).unwrap_or_default();
    let cb = match parse_callback(query).and_then(|c| c.verify_state(&expected)) {
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
            Html(format!(
                r#"<p>Connected {user}.</p><form method="post" action="/push?user={user}"><button>Push a file</button></form>"#,
                user = pending.user
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

fn form_state(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
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
            Redirect::to(&format!("/authorize?user={}", q.user)).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("push failed: {e}")).into_response(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sandbox = Sandbox::start(SandboxConfig::default()).await?;
    let info = sandbox.info().clone();
    let config = Config::new(&info.demo.application_id)?
        .with_base_url(&info.api)?
        .with_onboard_url(&info.onboard)?;
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
        contract: Contract::from_pem(
            &info.demo.write.contract_id,
            &info.demo.write.private_key_pem()?,
        )?,
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
    let onboard = location(
        &http
            .get(format!("{base}/authorize?user=alice"))
            .send()
            .await?,
    )?;
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
    let connected = http.get(back).send().await?.text().await?;
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
