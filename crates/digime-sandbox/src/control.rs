//! The control API under `/_sandbox/`: inspect libraries, expire tokens and sessions,
//! make files, make accounts fail, change settings, reset. Not part of the digi.me API;
//! no authentication. Shapes are documented in the crate docs.

use crate::checks::ApiFailure;
use crate::common::{hex, safe_name, unknown_user};
use crate::demo::{DemoLibrary, Generator, seed_of};
use crate::library::library_for;
use crate::serve::{Plain, plain_body};
use crate::state::{
    AccountError, Compression, GeneratedContent, LibraryFile, Persisted, UserRecord,
};
use crate::sync::account_list;
use crate::tokens::mint_tokens;
use crate::{
    DEMO_APP_ID, DEMO_READ_CONTRACT, DEMO_WRITE_CONTRACT, Settings, Shared, now_ms, random_id,
};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use sha2::Digest;

/// Largest number of files one `generate-files` call makes.
const MAX_GENERATED_COUNT: u64 = 10_000;
/// Largest synthetic file.
const MAX_GENERATED_SIZE: u64 = 64 << 30;
/// Largest total of one `generate-files` call (every byte is hashed once).
const MAX_GENERATED_TOTAL: u64 = 64 << 30;

/// The control routes (the postbox era adds its own, see `legacy`).
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/_sandbox/info", get(info))
        .route("/_sandbox/requests", get(requests))
        .route("/_sandbox/users", get(users).post(create_user))
        .route("/_sandbox/users/{user}/files", get(files))
        .route(
            "/_sandbox/users/{user}/generate-files",
            post(generate_files),
        )
        .route("/_sandbox/users/{user}/accounts", get(user_accounts))
        .route(
            "/_sandbox/users/{user}/accounts/{account}/fail",
            post(fail_account).delete(heal_account),
        )
        .route("/_sandbox/sessions/{key}/expire", post(expire_session))
        .route("/_sandbox/settings", get(get_settings).post(set_settings))
        .route("/_sandbox/users/{user}/files/{file}", get(file_content))
        .route(
            "/_sandbox/users/{user}/expire-access-tokens",
            post(expire_access),
        )
        .route(
            "/_sandbox/users/{user}/expire-refresh-tokens",
            post(expire_refresh),
        )
        .route("/_sandbox/faults", get(get_faults).post(set_faults))
        .route("/_sandbox/users/{user}/refresh-tokens", get(refresh_tokens))
        .route("/_sandbox/reset", post(reset))
}

/// The user's live refresh tokens, as the SHA-256 of each (never the token itself).
async fn refresh_tokens(
    State(shared): State<Shared>,
    Path(user): Path<String>,
) -> Result<Response, ApiFailure> {
    let st = shared.lock();
    if !st.users.contains_key(&user) {
        return Err(unknown_user());
    }
    let now_s = now_ms() / 1000;
    let mut live: Vec<Value> = st
        .refresh_tokens
        .iter()
        .filter(|(_, t)| t.user_id == user && t.expires_s > now_s)
        .map(|(token, t)| {
            json!({
                "sha256": hex(&sha2::Sha256::digest(token.as_bytes())),
                "clientId": t.client_id,
                "expires": t.expires_s,
            })
        })
        .collect();
    live.sort_by(|a, b| a["sha256"].as_str().cmp(&b["sha256"].as_str()));
    Ok(axum::Json(json!({ "refreshTokens": live })).into_response())
}

async fn get_faults(State(shared): State<Shared>) -> Response {
    let view = shared
        .faults
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .view();
    axum::Json(view).into_response()
}

async fn set_faults(State(shared): State<Shared>, body: Bytes) -> Result<Response, ApiFailure> {
    let body = Value::Object(object_body(&body)?);
    let mut faults = shared.faults.lock().unwrap_or_else(|p| p.into_inner());
    faults.update(&body)?;
    Ok(axum::Json(faults.view()).into_response())
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

fn bad_request(detail: &str) -> ApiFailure {
    ApiFailure::bad_params(detail)
}

fn storage_failed(e: std::io::Error) -> ApiFailure {
    ApiFailure::new(500, "InternalError", e.to_string())
}

/// A JSON object body; an empty body is `{}`.
fn object_body(bytes: &[u8]) -> Result<Map<String, Value>, ApiFailure> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(bad_request("the body must be a JSON object")),
    }
}

fn opt_str<'a>(m: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, ApiFailure> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad_request(&format!("{key} must be a string"))),
    }
}

fn opt_bool(m: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiFailure> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad_request(&format!("{key} must be a boolean"))),
    }
}

fn opt_u64(m: &Map<String, Value>, key: &str) -> Result<Option<u64>, ApiFailure> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| bad_request(&format!("{key} must be a non-negative integer"))),
    }
}

fn opt_compression(m: &Map<String, Value>, key: &str) -> Result<Option<Compression>, ApiFailure> {
    opt_str(m, key)?
        .map(|s| s.parse::<Compression>().map_err(|e| bad_request(&e)))
        .transpose()
}

fn opt_names(m: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, ApiFailure> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(|| bad_request(&format!("{key} must be an array of file names"))),
        Some(_) => Err(bad_request(&format!(
            "{key} must be an array of file names"
        ))),
    }
}

/// `POST /_sandbox/users` `{"id"?, "clients"?: [clientId]}`: a SANDBOX SHORTCUT that
/// creates (or reuses) a user and issues tokens to the given clients (default: the demo
/// read and write contracts) without the authorization flow.
async fn create_user(State(shared): State<Shared>, body: Bytes) -> Result<Response, ApiFailure> {
    let body = object_body(&body)?;
    let id = match opt_str(&body, "id")? {
        Some(id) if safe_name(id) => id.to_owned(),
        Some(_) => return Err(bad_request("id must be 1-128 characters of [A-Za-z0-9._-]")),
        None => random_id("usr_"),
    };
    let clients = match opt_names(&body, "clients")? {
        Some(c) => c,
        None => [DEMO_READ_CONTRACT, DEMO_WRITE_CONTRACT]
            .map(|c| format!("{DEMO_APP_ID}_{c}"))
            .to_vec(),
    };
    if let Some(unknown) = clients.iter().find(|c| shared.contract(c).is_none()) {
        return Err(bad_request(&format!("unknown client id {unknown:?}")));
    }
    let mut st = shared.lock();
    let now = now_ms();
    let user = st
        .users
        .entry(id.clone())
        .or_insert_with(|| UserRecord {
            id: id.clone(),
            created: now,
        })
        .clone();
    let mut tokens = Map::new();
    for client in &clients {
        let m = mint_tokens(&shared, &mut st, client, &id);
        tokens.insert(
            client.clone(),
            json!({
                "accessToken": {"value": m.access, "expiry": m.access_exp},
                "refreshToken": {"value": m.refresh, "expiry": m.refresh_exp},
                "user": {"id": id},
                "consentid": m.consent_id,
            }),
        );
    }
    shared.save(&st).map_err(storage_failed)?;
    Ok(axum::Json(json!({"user": user, "tokens": tokens})).into_response())
}

async fn files(
    State(shared): State<Shared>,
    Path(user): Path<String>,
) -> Result<Response, ApiFailure> {
    let (files, lib) = {
        let st = shared.lock();
        let lib = library_for(&shared, &st, &user, None).ok_or_else(unknown_user)?;
        let files: Vec<Value> = st
            .files
            .iter()
            .filter(|f| f.user_id == user)
            .map(|f| {
                let mut v = serde_json::to_value(f).unwrap_or(Value::Null);
                if let Value::Object(m) = &mut v {
                    m.insert("name".into(), json!(f.id));
                }
                v
            })
            .collect();
        (files, lib)
    };
    let demo: Vec<Value> = demo_files(&lib)
        .into_iter()
        .map(|(name, mut info, bytes)| {
            if let Value::Object(m) = &mut info {
                m.insert("name".into(), json!(name));
                m.insert("size".into(), json!(bytes.len()));
                m.insert("sha256".into(), json!(hex(&digime_crypto::sha256(&bytes))));
            }
            info
        })
        .collect();
    Ok(axum::Json(json!({ "files": files, "demo": demo })).into_response())
}

/// `GET /_sandbox/users/{id}/accounts`: every account of the user (whichever contract
/// sees it), their failures, and the accounts each contract lost permission to.
async fn user_accounts(
    State(shared): State<Shared>,
    Path(user): Path<String>,
) -> Result<Response, ApiFailure> {
    let (lib, failures, revoked) = {
        let st = shared.lock();
        let lib = library_for(&shared, &st, &user, None).ok_or_else(unknown_user)?;
        (
            lib,
            st.account_failures.get(&user).cloned().unwrap_or_default(),
            st.revoked.get(&user).cloned().unwrap_or_default(),
        )
    };
    let accounts = account_list(&lib, &failures, lib.created_ms);
    Ok(
        axum::Json(json!({"accounts": accounts, "failures": failures, "revoked": revoked}))
            .into_response(),
    )
}

/// `POST /_sandbox/users/{id}/generate-files`
/// `{"count", "size", "compression"?, "prefix"?, "mimeType"?, "appId"?, "contractId"?}`.
async fn generate_files(
    State(shared): State<Shared>,
    Path(user): Path<String>,
    body: Bytes,
) -> Result<Response, ApiFailure> {
    let body = object_body(&body)?;
    let count = opt_u64(&body, "count")?.ok_or_else(|| bad_request("count is required"))?;
    let size = opt_u64(&body, "size")?.ok_or_else(|| bad_request("size is required"))?;
    if count == 0 || count > MAX_GENERATED_COUNT {
        return Err(bad_request(&format!(
            "count must be 1..={MAX_GENERATED_COUNT}"
        )));
    }
    if size > MAX_GENERATED_SIZE || count.saturating_mul(size) > MAX_GENERATED_TOTAL {
        return Err(bad_request(&format!(
            "size must be at most {MAX_GENERATED_SIZE} and count*size at most {MAX_GENERATED_TOTAL}"
        )));
    }
    let compression = opt_compression(&body, "compression")?;
    let prefix = match opt_str(&body, "prefix")? {
        Some(p) if safe_name(p) && p.len() <= 64 => p.to_owned(),
        Some(_) => {
            return Err(bad_request(
                "prefix must be 1-64 characters of [A-Za-z0-9._-]",
            ));
        }
        None => random_id("gen-").chars().take(12).collect::<String>() + "-",
    };
    let mime = opt_str(&body, "mimeType")?
        .unwrap_or("application/octet-stream")
        .to_owned();
    let app_id = opt_str(&body, "appId")?.unwrap_or(DEMO_APP_ID).to_owned();
    let contract_id = opt_str(&body, "contractId")?
        .unwrap_or(DEMO_WRITE_CONTRACT)
        .to_owned();
    let names: Vec<String> = (1..=count).map(|i| format!("{prefix}{i:04}.bin")).collect();
    {
        let st = shared.lock();
        if !st.users.contains_key(&user) {
            return Err(unknown_user());
        }
        if let Some(dup) = names
            .iter()
            .find(|n| st.files.iter().any(|f| f.user_id == user && f.id == **n))
        {
            return Err(bad_request(&format!("a file named {dup:?} already exists")));
        }
    }
    let salt = random_id("");
    let specs: Vec<(String, u64)> = names
        .into_iter()
        .map(|n| {
            let seed = seed_of(&["generated", &user, &n, &salt]);
            (n, seed)
        })
        .collect();
    // Hash every file once by streaming its generator (off the async runtime).
    let hashed = tokio::task::spawn_blocking(move || {
        specs
            .into_iter()
            .map(|(name, seed)| {
                let mut g = Generator::new(seed, size);
                let mut hasher = sha2::Sha256::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = g.fill(&mut buf);
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                }
                (name, seed, hex(&hasher.finalize()))
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| ApiFailure::new(500, "InternalError", e.to_string()))?;
    let now = now_ms();
    let mut out = Vec::new();
    let mut st = shared.lock();
    if !st.users.contains_key(&user) {
        return Err(unknown_user());
    }
    for (name, seed, sha256) in hashed {
        out.push(json!({"name": name, "size": size, "sha256": sha256}));
        st.files.push(LibraryFile {
            id: name.clone(),
            user_id: user.clone(),
            app_id: app_id.clone(),
            contract_id: contract_id.clone(),
            descriptor: json!({
                "mimeType": mime, "accounts": [], "reference": [name], "tags": ["generated"],
            }),
            size,
            sha256,
            created: now,
            generated: Some(GeneratedContent { seed, compression }),
        });
    }
    shared.save(&st).map_err(storage_failed)?;
    Ok(axum::Json(json!({ "files": out })).into_response())
}

fn known_account(
    shared: &Shared,
    st: &Persisted,
    user: &str,
    account: &str,
) -> Result<(), ApiFailure> {
    library_for(shared, st, user, None)
        .ok_or_else(unknown_user)?
        .account(account)
        .map(|_| ())
        .ok_or_else(|| ApiFailure::new(404, "NotFound", "No such account"))
}

/// `POST /_sandbox/users/{id}/accounts/{accountId}/fail`
/// `{"code"?, "statusCode"?, "message"?, "reauth"?}`: syncs of that account started from
/// now on end `partial` with this error.
async fn fail_account(
    State(shared): State<Shared>,
    Path((user, account)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiFailure> {
    let body = object_body(&body)?;
    let mut error = AccountError::default();
    if let Some(code) = opt_str(&body, "code")? {
        error.code = code.to_owned();
    }
    if let Some(status) = opt_u64(&body, "statusCode")? {
        error.status_code = u16::try_from(status)
            .ok()
            .filter(|s| (100..=599).contains(s))
            .ok_or_else(|| bad_request("statusCode must be 100..=599"))?;
    }
    if let Some(message) = opt_str(&body, "message")? {
        error.message = message.to_owned();
    }
    if let Some(reauth) = opt_bool(&body, "reauth")? {
        error.reauth = reauth;
    }
    let mut st = shared.lock();
    known_account(&shared, &st, &user, &account)?;
    st.account_failures
        .entry(user)
        .or_default()
        .insert(account.clone(), error.clone());
    shared.save(&st).map_err(storage_failed)?;
    Ok(axum::Json(json!({"account": account, "error": error})).into_response())
}

/// `DELETE /_sandbox/users/{id}/accounts/{accountId}/fail`: heals the account.
async fn heal_account(
    State(shared): State<Shared>,
    Path((user, account)): Path<(String, String)>,
    _body: Bytes,
) -> Result<Response, ApiFailure> {
    let mut st = shared.lock();
    known_account(&shared, &st, &user, &account)?;
    let healed = st
        .account_failures
        .get_mut(&user)
        .and_then(|m| m.remove(&account))
        .is_some();
    shared.save(&st).map_err(storage_failed)?;
    Ok(axum::Json(json!({"account": account, "healed": healed})).into_response())
}

/// `POST /_sandbox/sessions/{key}/expire`.
async fn expire_session(
    State(shared): State<Shared>,
    Path(key): Path<String>,
    _body: Bytes,
) -> Result<Response, ApiFailure> {
    let mut st = shared.lock();
    let now = now_ms();
    let s = st
        .sessions
        .get_mut(&key)
        .ok_or_else(|| ApiFailure::new(404, "NotFound", "No such session"))?;
    s.expires_ms = s.expires_ms.min(now);
    shared.save(&st).map_err(storage_failed)?;
    Ok(axum::Json(json!({"expired": key})).into_response())
}

fn settings_json(s: &Settings) -> Response {
    axum::Json(json!({ "settings": s })).into_response()
}

async fn get_settings(State(shared): State<Shared>) -> Response {
    settings_json(&shared.settings())
}

/// `POST /_sandbox/settings` `{"syncStepMs"?, "rewriteMidSync"?, "compression"?,
/// "corrupt"?: [name], "truncate"?: [name]}`; the lists replace the current ones.
async fn set_settings(State(shared): State<Shared>, body: Bytes) -> Result<Response, ApiFailure> {
    let body = object_body(&body)?;
    let step = opt_u64(&body, "syncStepMs")?;
    if step.is_some_and(|s| s == 0 || s > 3_600_000) {
        return Err(bad_request("syncStepMs must be 1..=3600000"));
    }
    let rewrite = opt_bool(&body, "rewriteMidSync")?;
    let compression = opt_compression(&body, "compression")?;
    let corrupt = opt_names(&body, "corrupt")?;
    let truncate = opt_names(&body, "truncate")?;
    let mut s = shared.settings.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(step) = step {
        s.sync_step_ms = step;
    }
    if let Some(r) = rewrite {
        s.rewrite_mid_sync = r;
    }
    if let Some(c) = compression {
        s.compression = c;
    }
    if let Some(c) = corrupt {
        s.corrupt = c.into_iter().collect();
    }
    if let Some(t) = truncate {
        s.truncate = t.into_iter().collect();
    }
    Ok(settings_json(&s))
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
    let mime = entry.descriptor["mimeType"]
        .as_str()
        .unwrap_or("application/octet-stream")
        .to_owned();
    if let Some(g) = &entry.generated {
        let body = plain_body(Plain::Generated {
            seed: g.seed,
            size: entry.size,
        });
        return Ok((StatusCode::OK, [(header::CONTENT_TYPE, mime)], body).into_response());
    }
    let path = shared.library_dir().join(&entry.user_id).join(&entry.id);
    let f = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiFailure::new(500, "InternalError", e.to_string()))?;
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
    // They expire now: still genuine (an expired access token is good for a
    // user-reauth request), but refused everywhere else.
    let now_s = now_ms() / 1000;
    let mut n = 0;
    for t in map.values_mut().filter(|t| t.user_id == user) {
        t.expires_s = t.expires_s.min(now_s);
        n += 1;
    }
    shared
        .save(&st)
        .map_err(|e| ApiFailure::new(500, "InternalError", e.to_string()))?;
    Ok(axum::Json(json!({ "expired": n })).into_response())
}

// The POST handlers without a body still read it (`_body`), so that the client's
// keep-alive connection survives (hyper closes one whose request body was left unread).

async fn expire_access(
    State(shared): State<Shared>,
    Path(user): Path<String>,
    _body: Bytes,
) -> Result<Response, ApiFailure> {
    expire(&shared, &user, false)
}

async fn expire_refresh(
    State(shared): State<Shared>,
    Path(user): Path<String>,
    _body: Bytes,
) -> Result<Response, ApiFailure> {
    expire(&shared, &user, true)
}

async fn reset(State(shared): State<Shared>, _body: Bytes) -> Result<Response, ApiFailure> {
    let mut st = shared.lock();
    *st = Persisted::default();
    shared
        .save(&st)
        .map_err(|e| ApiFailure::new(500, "InternalError", e.to_string()))?;
    drop(st);
    *shared.settings.lock().unwrap_or_else(|p| p.into_inner()) =
        Settings::from_config(&shared.config);
    *shared.faults.lock().unwrap_or_else(|p| p.into_inner()) =
        crate::faults::FaultState::new(shared.config.faults.clone());
    let _ = std::fs::remove_dir_all(shared.library_dir());
    let _ = std::fs::create_dir_all(shared.library_dir());
    let _ = std::fs::remove_dir_all(crate::clouds::cloud_dir(&shared.dir));
    shared.log.lock().unwrap_or_else(|p| p.into_inner()).clear();
    Ok(axum::Json(json!({ "reset": true })).into_response())
}

/// Plaintext of a demo file for the control API: `(name, kind, bytes)` of every mapped
/// (version 0) and raw demo file of a user.
fn demo_files(lib: &DemoLibrary) -> Vec<(String, Value, Vec<u8>)> {
    let mut out = Vec::new();
    for f in &lib.files {
        let svc = lib
            .accounts
            .get(f.account)
            .map(|a| (a.id.clone(), a.service));
        let Some((account, svc)) = svc else { continue };
        out.push((
            f.name.clone(),
            json!({"kind": "mapped", "account": account, "serviceName": svc.type_ref,
                   "objectType": f.object_type, "objectCount": f.object_count(0)}),
            lib.mapped_content(f, 0),
        ));
    }
    for r in lib.raw {
        out.push((
            r.name.to_owned(),
            json!({"kind": "raw", "mimeType": r.mime_type}),
            lib.raw_content(r),
        ));
    }
    out
}
