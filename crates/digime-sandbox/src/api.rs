//! The digi.me API endpoints and the onboard pages.

use crate::checks::{
    ApiFailure, Verified, check_agent, check_redirect_uri, verify_bearer, verify_jws,
};
use crate::read::{self, SESSION_TTL_MS};
use crate::state::{
    AuthCode, IssuedToken, LibraryFile, Persisted, PreAuthorization, SessionRecord, UserRecord,
};
use crate::{ConsentMode, LoggedRequest, Shared, now_ms, random_id};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Digest;
use tokio::io::AsyncWriteExt;

/// Lifetime of preauthorization and authorization codes.
pub(crate) const CODE_TTL_MS: u64 = 10 * 60 * 1000;
/// Largest JSON body accepted on the API.
const MAX_JSON_BODY: usize = 256 * 1024;

type ApiResult = Result<Response, ApiFailure>;

pub(crate) fn router(shared: Shared) -> Router {
    Router::new()
        .route("/v1.7/jwks/oauth", get(jwks))
        .route("/v1.7/oauth/authorize", post(authorize))
        .route("/v1.7/oauth/token", post(token))
        .route(
            "/v1.7/permission-access/import",
            post(import).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1.7/permission-access/trigger", post(read::trigger))
        .route("/v1.7/permission-access/accounts", get(read::accounts))
        .route(
            "/v1.7/permission-access/query/{session}",
            get(read::file_list),
        )
        .route(
            "/v1.7/permission-access/query/{session}/{file}",
            get(read::file),
        )
        .route("/apps/saas/authorize", get(onboard_page))
        .route("/apps/saas/authorize/decision", post(onboard_decision))
        .merge(crate::legacy::api_routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), log_requests))
        .with_state(shared)
}

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

async fn not_found() -> Response {
    ApiFailure::new(404, "NotFound", "The requested resource was not found").into_response()
}

fn server_token(shared: &Shared, claims: Value) -> Result<String, ApiFailure> {
    server_token_at(shared, &shared.info.api, claims)
}

/// A server JWS whose `jku` is the key set of the API base `base` (the base the client
/// talks to, e.g. `…/v1.5/`).
pub(crate) fn server_token_at(
    shared: &Shared,
    base: &str,
    claims: Value,
) -> Result<String, ApiFailure> {
    let header = json!({"alg": "PS512", "typ": "JWT", "kid": shared.kid, "jku": format!("{base}jwks/oauth")});
    digime_crypto::jws::sign(
        header.to_string().as_bytes(),
        claims.to_string().as_bytes(),
        &shared.signing_key,
    )
    .map_err(|_| ApiFailure::new(500, "InternalError", "signing failed"))
}

pub(crate) async fn jwks(State(shared): State<Shared>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        shared.jwks.clone(),
    )
        .into_response()
}

/// The key set body, built once at start: `{kid, kty, alg, use, n, e, pem}` per key.
pub(crate) fn jwks_body(key: &digime_crypto::PublicKey, kid: &str) -> String {
    json!({"keys": [{
        "kid": kid,
        "kty": "RSA",
        "alg": "PS512",
        "use": "sig",
        "n": digime_crypto::b64url_encode(key.modulus()),
        "e": digime_crypto::b64url_encode(key.exponent()),
        "pem": key.to_pkcs1_pem(),
    }]})
    .to_string()
}

pub(crate) fn json_body(bytes: &[u8]) -> Result<Value, ApiFailure> {
    if bytes.len() > MAX_JSON_BODY {
        return Err(ApiFailure::new(
            413,
            "PayloadTooLarge",
            "The request body is too large",
        ));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(ApiFailure::bad_params("the body must be a JSON object")),
    }
}

/// The claims every `oauth/authorize` carries (v1.5 and v1.7): `response_type=code`,
/// `response_mode=query`, an S256 PKCE challenge and an acceptable `redirect_uri`.
/// Returns the challenge and the redirect URI.
pub(crate) fn check_authorize_claims(v: &Verified) -> Result<(&str, &str), ApiFailure> {
    for (claim, expected) in [
        ("response_type", "code"),
        ("response_mode", "query"),
        ("code_challenge_method", "S256"),
    ] {
        if v.str_claim(claim) != Some(expected) {
            return Err(ApiFailure::bad_params(&format!(
                "{claim} must be {expected}"
            )));
        }
    }
    let challenge = v.require_str("code_challenge")?;
    if challenge.len() != 43
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ApiFailure::bad_params(
            "code_challenge must be a base64url SHA-256",
        ));
    }
    let redirect_uri = v.require_str("redirect_uri")?;
    check_redirect_uri(redirect_uri)?;
    Ok((challenge, redirect_uri))
}

/// Looks up a live access token; errors are the 401 that makes SDKs refresh.
pub(crate) fn live_access_token(shared: &Shared, value: &str) -> Result<IssuedToken, ApiFailure> {
    let st = shared.lock();
    let t = st
        .access_tokens
        .get(value)
        .cloned()
        .ok_or_else(|| ApiFailure::invalid_token("access_token", false))?;
    if t.expires_s * 1000 <= now_ms() {
        return Err(ApiFailure::invalid_token("access_token", true));
    }
    Ok(t)
}

async fn authorize(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let v = verify_bearer(&shared, &headers)?;
    let body = json_body(&body)?;
    check_agent(&shared, &body)?;
    if body.get("actions").is_some_and(|a| !a.is_object()) {
        return Err(ApiFailure::bad_params("actions must be an object"));
    }
    let (challenge, redirect_uri) = check_authorize_claims(&v)?;
    let state = v.require_str("state")?;
    let link_user = match v.str_claim("access_token") {
        Some(at) => {
            let t = live_access_token(&shared, at)?;
            let same_app = shared
                .contract(&t.client_id)
                .is_some_and(|c| c.app_id == v.contract.app_id);
            if !same_app {
                return Err(ApiFailure::invalid_token("access_token", false));
            }
            Some(t.user_id)
        }
        None => None,
    };
    let code = random_id("PRE_");
    let session_key = random_id("sess_");
    let now = now_ms();
    {
        let mut st = shared.lock();
        st.preauths.retain(|_, p| p.expires_ms > now);
        st.preauths.insert(
            code.clone(),
            PreAuthorization {
                client_id: v.contract.client_id(),
                code_challenge: challenge.to_owned(),
                redirect_uri: redirect_uri.to_owned(),
                state: state.to_owned(),
                link_user,
                expires_ms: now + CODE_TTL_MS,
                session_key: Some(session_key.clone()),
            },
        );
        st.sessions.insert(
            session_key.clone(),
            SessionRecord {
                client_id: v.contract.client_id(),
                expires_ms: now + SESSION_TTL_MS,
                user_id: None,
                sync: None,
                exchange_token: None,
            },
        );
        shared.save(&st).map_err(internal)?;
    }
    let token = server_token(&shared, json!({"preauthorization_code": code}))?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"token": token, "session": {"key": session_key, "expiry": now + SESSION_TTL_MS}})),
    )
        .into_response())
}

pub(crate) fn internal(e: std::io::Error) -> ApiFailure {
    ApiFailure::new(500, "InternalError", format!("sandbox storage failed: {e}"))
}

#[derive(Deserialize)]
struct OnboardQuery {
    code: Option<String>,
    #[serde(rename = "sourceType")]
    source_type: Option<String>,
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn error_page(status: StatusCode, code: &str, text: &str) -> Response {
    (
        status,
        Html(format!(
            "<!doctype html><html><head><title>digi.me sandbox</title></head><body><h1>Authorization failed</h1><p>{}</p><p><code>{}</code></p></body></html>",
            html_escape(text),
            html_escape(code)
        )),
    )
        .into_response()
}

async fn onboard_page(State(shared): State<Shared>, Query(q): Query<OnboardQuery>) -> Response {
    let Some(code) = q.code else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "INVALID_CODE",
            "The link has no code.",
        );
    };
    if q.source_type
        .as_deref()
        .is_some_and(|st| !matches!(st, "pull" | "push"))
    {
        return error_page(
            StatusCode::BAD_REQUEST,
            "ONBOARD_ERROR",
            "Unknown sourceType.",
        );
    }
    let pre = {
        let st = shared.lock();
        st.preauths.get(&code).cloned()
    };
    let Some(pre) = pre.filter(|p| p.expires_ms > now_ms()) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "INVALID_CODE",
            "This authorization link is unknown, used or expired.",
        );
    };
    if shared.config.consent == ConsentMode::Auto {
        return decide(&shared, &code, true).await;
    }
    let contract = shared.contract(&pre.client_id);
    let name = contract
        .map(|c| c.name)
        .unwrap_or_else(|| pre.client_id.clone());
    let code = html_escape(&code);
    Html(format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>digi.me sandbox: share your data?</title></head>
<body style="font-family: sans-serif; max-width: 36em; margin: 3em auto">
<h1>digi.me sandbox</h1>
<p><strong>{app}</strong> asks to connect to your digi.me library.</p>
<p>Contract: <code>{client}</code></p>
<form method="post" action="decision">
<input type="hidden" name="code" value="{code}">
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>
</body></html>"#,
        app = html_escape(&name),
        client = html_escape(&pre.client_id),
    ))
    .into_response()
}

#[derive(Deserialize)]
struct Decision {
    code: String,
    decision: String,
}

async fn onboard_decision(
    State(shared): State<Shared>,
    axum::Form(d): axum::Form<Decision>,
) -> Response {
    match d.decision.as_str() {
        "allow" => decide(&shared, &d.code, true).await,
        "deny" => decide(&shared, &d.code, false).await,
        _ => error_page(
            StatusCode::BAD_REQUEST,
            "ONBOARD_ERROR",
            "Unknown decision.",
        ),
    }
}

/// Whether consenting to this preauthorization must make a new postbox: its contract
/// may write and the linked user (if any) has none for it yet.
fn needs_postbox_key(shared: &Shared, code: &str) -> bool {
    let st = shared.lock();
    let Some(pre) = st.preauths.get(code) else {
        return false;
    };
    let writes = shared
        .contract(&pre.client_id)
        .is_some_and(|c| c.kind.can_write());
    writes
        && pre
            .link_user
            .as_ref()
            .is_none_or(|u| crate::legacy::saas_postbox_of(&st, u, &pre.client_id).is_none())
}

/// Consumes the preauthorization and redirects to the app with the result. Consent to a
/// contract that may write also gives the user a postbox for it (one per user and
/// contract, reused), whose id and public key follow the other success parameters
/// (write.md §5.5, §6).
async fn decide(shared: &Shared, code: &str, allow: bool) -> Response {
    // The postbox key pair is made before the state is locked (it takes a while).
    let mut postbox_key = None;
    if allow && needs_postbox_key(shared, code) {
        match crate::legacy::postbox_key(shared).await {
            Ok(k) => postbox_key = Some(k),
            Err(e) => {
                return error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "SERVER_ERROR",
                    &e.message,
                );
            }
        }
    }
    let now = now_ms();
    let settings = shared.settings();
    let mut st = shared.lock();
    let Some(pre) = st.preauths.remove(code).filter(|p| p.expires_ms > now) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "INVALID_CODE",
            "This authorization link is unknown, used or expired.",
        );
    };
    let Ok(mut target) = url::Url::parse(&pre.redirect_uri) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "SERVER_ERROR",
            "The redirect URI is invalid.",
        );
    };
    let mut params: Vec<(&str, String)> = Vec::new();
    if allow {
        let user_id = match pre.link_user.clone() {
            Some(u) if st.users.contains_key(&u) => u,
            _ => {
                let id = random_id("usr_");
                st.users.insert(
                    id.clone(),
                    UserRecord {
                        id: id.clone(),
                        created: now,
                    },
                );
                id
            }
        };
        // The session handed out with the authorization now reads this user's library,
        // and the sources start syncing.
        if let Some(key) = &pre.session_key {
            let plan = read::start_sync(
                shared,
                &mut st,
                &settings,
                &user_id,
                read::SessionOptions::default(),
                now,
            );
            if let Some(s) = st.sessions.get_mut(key) {
                s.user_id = Some(user_id.clone());
                s.sync = Some(plan);
            }
        }
        let auth_code = random_id("AUTH_");
        st.codes.retain(|_, c| c.expires_ms > now);
        st.codes.insert(
            auth_code.clone(),
            AuthCode {
                client_id: pre.client_id.clone(),
                user_id: user_id.clone(),
                code_challenge: pre.code_challenge.clone(),
                expires_ms: now + CODE_TTL_MS,
                legacy_redirect_uri: None,
            },
        );
        params.push(("success", "true".into()));
        params.push(("code", auth_code));
        params.push(("state", pre.state.clone()));
        let writes = shared
            .contract(&pre.client_id)
            .is_some_and(|c| c.kind.can_write());
        if writes {
            let Some((id, public_key)) = crate::legacy::saas_postbox(
                &mut st,
                &pre.client_id,
                &user_id,
                postbox_key.take(),
                now,
            ) else {
                return error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "SERVER_ERROR",
                    "The postbox could not be made; follow the link again.",
                );
            };
            params.push(("postboxId", id));
            params.push(("publicKey", public_key));
        }
    } else {
        params.push(("success", "false".into()));
        params.push(("errorCode", "USER_CANCEL".into()));
        params.push(("state", pre.state.clone()));
    }
    if let Err(e) = shared.save(&st) {
        return error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SERVER_ERROR",
            &e.to_string(),
        );
    }
    drop(st);
    {
        // Merge with the callback's own query parameters.
        let mut q = target.query_pairs_mut();
        for (k, v) in &params {
            q.append_pair(k, v);
        }
    }
    // 302, as the real onboard pages answer (auth.md §13.4).
    (
        StatusCode::FOUND,
        [(axum::http::header::LOCATION, target.to_string())],
    )
        .into_response()
}

/// A freshly issued token pair.
pub(crate) struct Minted {
    pub(crate) access: String,
    pub(crate) access_exp: u64,
    pub(crate) refresh: String,
    pub(crate) refresh_exp: u64,
    pub(crate) consent_id: String,
}

/// Issues an access and a refresh token of `client_id` for `user_id` (not saved).
pub(crate) fn mint_tokens(
    shared: &Shared,
    st: &mut Persisted,
    client_id: &str,
    user_id: &str,
) -> Minted {
    let now_s = now_ms() / 1000;
    let access = random_id("at_");
    let refresh = random_id("rt_");
    let consent_key = format!("{user_id}|{client_id}");
    let consent_id = st
        .consents
        .entry(consent_key)
        .or_insert_with(|| random_id("cns_"))
        .clone();
    let access_exp = now_s + shared.config.access_token_ttl.as_secs();
    let refresh_exp = now_s + shared.config.refresh_token_ttl.as_secs();
    let rec = |expires_s| IssuedToken {
        client_id: client_id.to_owned(),
        user_id: user_id.to_owned(),
        consent_id: consent_id.clone(),
        expires_s,
    };
    st.access_tokens.insert(access.clone(), rec(access_exp));
    st.refresh_tokens.insert(refresh.clone(), rec(refresh_exp));
    st.access_tokens.retain(|_, t| t.expires_s + 86_400 > now_s);
    Minted {
        access,
        access_exp,
        refresh,
        refresh_exp,
        consent_id,
    }
}

fn issue_tokens(shared: &Shared, client_id: &str, user_id: &str) -> Result<Value, ApiFailure> {
    let mut st = shared.lock();
    let Minted {
        access,
        access_exp,
        refresh,
        refresh_exp,
        consent_id,
    } = mint_tokens(shared, &mut st, client_id, user_id);
    shared.save(&st).map_err(internal)?;
    Ok(json!({
        "access_token": {"value": access, "expires_on": access_exp},
        "refresh_token": {"value": refresh, "expires_on": refresh_exp},
        "sub": user_id,
        "consentid": consent_id,
        "identifier": {"id": format!("{user_id}-{client_id}")},
        "token_type": "Bearer",
    }))
}

/// `_body`: the call has no body, but a client may send an empty (chunked) one; it is
/// read so that the connection stays usable for the next request (hyper closes a
/// keep-alive connection whose request body was left unread).
async fn token(State(shared): State<Shared>, headers: HeaderMap, _body: Bytes) -> ApiResult {
    let v = verify_bearer(&shared, &headers)?;
    let client_id = v.contract.client_id();
    let user_id = redeem_grant(&shared, &v, None)?;
    let claims = issue_tokens(&shared, &client_id, &user_id)?;
    let token = server_token(&shared, claims)?;
    Ok((StatusCode::CREATED, axum::Json(json!({ "token": token }))).into_response())
}

/// Redeems the grant of an `oauth/token` request (authorization code with PKCE, or
/// refresh token with rotation) and answers whose tokens to issue. `legacy_redirect`:
/// the `redirect_uri` claim of a v1.5 call, which only takes codes of the native app
/// made for that redirect URI (v1.7 takes only the onboard page's codes).
pub(crate) fn redeem_grant(
    shared: &Shared,
    v: &crate::checks::Verified,
    legacy_redirect: Option<&str>,
) -> Result<String, ApiFailure> {
    let client_id = v.contract.client_id();
    match v.str_claim("grant_type") {
        Some("authorization_code") => {
            let code = v.require_str("code")?;
            let verifier = v.require_str("code_verifier")?;
            let grant = {
                let mut st = shared.lock();
                // Single use: the code is spent by any attempt of its own client.
                let found = match st.codes.get(code) {
                    Some(c) if c.client_id == client_id => st.codes.remove(code),
                    _ => None,
                };
                shared.save(&st).map_err(internal)?;
                found
            };
            let invalid = || {
                ApiFailure::new(
                    400,
                    "InvalidGrant",
                    "The authorization code or code verifier is invalid",
                )
            };
            let grant = grant
                .filter(|g| g.expires_ms > now_ms())
                .ok_or_else(invalid)?;
            let recomputed = digime_crypto::pkce::challenge_of(verifier);
            if !digime_crypto::constant_time_eq(
                recomputed.as_bytes(),
                grant.code_challenge.as_bytes(),
            ) {
                return Err(invalid());
            }
            match (grant.legacy_redirect_uri.as_deref(), legacy_redirect) {
                (None, None) => {}
                (Some(expected), Some(got)) if expected == got => {}
                (Some(_), Some(_)) => {
                    return Err(ApiFailure::new(
                        400,
                        "InvalidGrant",
                        "The redirect_uri does not match the one of the authorization",
                    ));
                }
                _ => return Err(invalid()),
            }
            Ok(grant.user_id)
        }
        Some("refresh_token") => {
            let presented = v.require_str("refresh_token")?;
            let mut st = shared.lock();
            let rec = st
                .refresh_tokens
                .get(presented)
                .filter(|t| t.client_id == client_id)
                .cloned()
                .ok_or_else(|| ApiFailure::invalid_token("refresh_token", false))?;
            if rec.expires_s * 1000 <= now_ms() {
                return Err(ApiFailure::invalid_token("refresh_token", true));
            }
            if !shared.config.keep_rotated_refresh_tokens {
                st.refresh_tokens.remove(presented);
            }
            Ok(rec.user_id)
        }
        _ => Err(ApiFailure::bad_params(
            "grant_type must be authorization_code or refresh_token",
        )),
    }
}

/// Checks a FileDescriptor JWT payload: exactly `{"metadata": {...}}` with the schema
/// of write.md §2.4.
fn check_descriptor(claims: &serde_json::Map<String, Value>) -> Result<Value, ApiFailure> {
    if claims.len() != 1 {
        return Err(ApiFailure::validation());
    }
    let meta = claims
        .get("metadata")
        .and_then(Value::as_object)
        .ok_or_else(ApiFailure::validation)?;
    if !meta.get("mimeType").is_some_and(Value::is_string) {
        return Err(ApiFailure::validation());
    }
    let accounts = meta
        .get("accounts")
        .and_then(Value::as_array)
        .ok_or_else(ApiFailure::validation)?;
    if !accounts
        .iter()
        .all(|a| a.get("accountId").is_some_and(Value::is_string))
    {
        return Err(ApiFailure::validation());
    }
    for list in ["reference", "tags"] {
        if meta
            .get(list)
            .is_some_and(|v| !v.as_array().is_some_and(|a| a.iter().all(Value::is_string)))
        {
            return Err(ApiFailure::validation());
        }
    }
    Ok(Value::Object(meta.clone()))
}

/// What an accepted import request is allowed to store.
struct ImportTarget {
    user_id: String,
    app_id: String,
    contract_id: String,
    descriptor: Value,
}

fn check_import(shared: &Shared, headers: &HeaderMap) -> Result<ImportTarget, ApiFailure> {
    let v = verify_bearer(shared, headers)?;
    let at = v.require_str("access_token")?;
    let tok = live_access_token(shared, at)?;
    if tok.client_id != v.contract.client_id() {
        return Err(ApiFailure::invalid_token("access_token", false));
    }
    if !v.contract.kind.can_write() {
        return Err(ApiFailure::insufficient_scope());
    }
    let fd = headers
        .get("filedescriptor")
        .and_then(|h| h.to_str().ok())
        .ok_or_else(ApiFailure::validation)?;
    let (_, fd_claims) = verify_jws(shared, fd, Some(&v.contract))?;
    let descriptor = check_descriptor(&fd_claims)?;
    Ok(ImportTarget {
        user_id: tok.user_id,
        app_id: v.contract.app_id.clone(),
        contract_id: v.contract.contract_id.clone(),
        descriptor,
    })
}

/// Reads and discards up to `limit` bytes of a refused upload, so that a client still
/// writing its body can read the error instead of hitting a closed connection.
pub(crate) async fn drain(body: Body, limit: u64) {
    drain_stream(&mut body.into_data_stream(), limit).await;
}

/// [`drain`] for a body whose stream was already taken.
pub(crate) async fn drain_stream(stream: &mut axum::body::BodyDataStream, limit: u64) {
    let mut seen = 0u64;
    while let Some(Ok(chunk)) = stream.next().await {
        seen += chunk.len() as u64;
        if seen > limit {
            break;
        }
    }
}

async fn import(State(shared): State<Shared>, headers: HeaderMap, body: Body) -> ApiResult {
    // Every check happens before a byte of the body is stored.
    let target = match check_import(&shared, &headers) {
        Ok(t) => t,
        Err(failure) => {
            drain(body, 64 << 20).await;
            return Err(failure);
        }
    };
    let file_id = random_id("file_");
    let user_dir = shared.library_dir().join(&target.user_id);
    tokio::fs::create_dir_all(&user_dir)
        .await
        .map_err(internal)?;
    let partial = user_dir.join(format!("{file_id}.partial"));
    let final_path = user_dir.join(&file_id);
    let stored = async {
        let mut file = tokio::fs::File::create(&partial).await?;
        let mut hasher = sha2::Sha256::new();
        let mut size = 0u64;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(std::io::Error::other)?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            file.write_all(&chunk).await?;
        }
        file.sync_all().await?;
        tokio::fs::rename(&partial, &final_path).await?;
        Ok::<_, std::io::Error>((size, hasher.finalize()))
    }
    .await;
    let (size, digest) = match stored {
        Ok(x) => x,
        Err(e) => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(ApiFailure::new(
                400,
                "ValidationErrors",
                format!("The upload did not complete: {e}"),
            ));
        }
    };
    let entry = LibraryFile {
        id: file_id,
        user_id: target.user_id,
        app_id: target.app_id,
        contract_id: target.contract_id,
        descriptor: target.descriptor,
        size,
        sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
        created: now_ms(),
        generated: None,
    };
    {
        let mut st = shared.lock();
        st.files.push(entry);
        if let Err(e) = shared.save(&st) {
            st.files.pop();
            let _ = std::fs::remove_file(&final_path);
            return Err(internal(e));
        }
    }
    Ok(StatusCode::CREATED.into_response())
}
