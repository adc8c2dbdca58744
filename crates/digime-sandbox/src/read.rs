//! The read calls: `permission-access/trigger`, the file list, file download and HEAD,
//! and the accounts. The sync they show is simulated in [`crate::sync`].

use crate::checks::{ApiFailure, Verified, check_agent};
use crate::common::{
    ApiResult, EXPIRED_SESSION_MEMORY_MS, SESSION_TTL_MS, internal, internal_msg, json_body,
    session_expired, session_not_found,
};
use crate::demo::DemoLibrary;
use crate::library::{hidden_from, library_for};
use crate::serve::{Damage, HEADER_LEN, Plain, encrypted_body};
use crate::state::{Compression, IssuedToken, SessionRecord, SyncPlan};
use crate::sync::{RawRef, What, account_list, parse_options, start_sync, view};
use crate::tokens::user_call;
use crate::{DEMO_APP_ID, Shared, now_ms, random_id};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use digime_crypto::envelope::{Format, encrypted_len};
use serde_json::{Map, Value, json};
use std::time::{Duration, SystemTime};

/// The read routes of `/v1.7/`.
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/v1.7/permission-access/trigger",
            axum::routing::post(trigger),
        )
        .route("/v1.7/permission-access/accounts", get(accounts))
        .route("/v1.7/permission-access/query/{session}", get(file_list))
        .route("/v1.7/permission-access/query/{session}/{file}", get(file))
}

fn require_read(v: &Verified) -> Result<(), ApiFailure> {
    if v.contract.kind.can_read() {
        Ok(())
    } else {
        Err(ApiFailure::insufficient_scope())
    }
}

// ---------------------------------------------------------------------------
// Handlers.

/// `POST permission-access/trigger` → 202 `{"session":{"key","expiry"}}`.
pub(crate) async fn trigger(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let (v, tok) = user_call(&shared, &headers)?;
    require_read(&v)?;
    let body = json_body(&body)?;
    check_agent(&shared, &body)?;
    let now = now_ms();
    let opts = parse_options(&body, now)?;
    let settings = shared.settings();
    let key = random_id("sess_");
    let expiry = now + SESSION_TTL_MS;
    {
        let mut st = shared.lock();
        if !st.users.contains_key(&tok.user_id) {
            return Err(ApiFailure::invalid_token("access_token", false));
        }
        let client_id = v.contract.client_id();
        let plan = start_sync(
            &shared,
            &mut st,
            &settings,
            &tok.user_id,
            &client_id,
            opts,
            now,
        );
        st.sessions
            .retain(|_, s| s.expires_ms + EXPIRED_SESSION_MEMORY_MS > now);
        st.sessions.insert(
            key.clone(),
            SessionRecord {
                client_id: v.contract.client_id(),
                expires_ms: expiry,
                user_id: Some(tok.user_id.clone()),
                sync: Some(plan),
                exchange_token: None,
            },
        );
        shared.save(&st).map_err(internal)?;
    }
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"session": {"key": key, "expiry": expiry}})),
    )
        .into_response())
}

/// What a session read needs, copied out of the state.
struct SessionCtx {
    plan: SyncPlan,
    lib: DemoLibrary,
    raws: Vec<RawRef>,
}

fn open_session(
    shared: &Shared,
    v: &Verified,
    tok: &IssuedToken,
    key: &str,
    now: u64,
) -> Result<SessionCtx, ApiFailure> {
    let st = shared.lock();
    // Another client's or user's session is indistinguishable from an unknown one.
    let s = st
        .sessions
        .get(key)
        .filter(|s| {
            s.client_id == v.contract.client_id() && s.user_id.as_deref() == Some(&tok.user_id)
        })
        .ok_or_else(session_not_found)?;
    let plan = s.sync.clone().ok_or_else(session_not_found)?;
    if s.expires_ms <= now {
        return Err(session_expired());
    }
    let client_id = v.contract.client_id();
    let lib =
        library_for(shared, &st, &tok.user_id, Some(&client_id)).ok_or_else(session_not_found)?;
    let app = &v.contract.app_id;
    let mut raws = Vec::new();
    if app == DEMO_APP_ID {
        for (i, r) in lib.raw.iter().enumerate() {
            raws.push(RawRef {
                name: r.name.to_owned(),
                created: lib.created_ms,
                app_id: r.app_id().to_owned(),
                contract_id: r.contract_id().to_owned(),
                descriptor: r.descriptor(),
                what: What::DemoRaw(i),
            });
        }
    }
    for f in st.files.iter().filter(|f| {
        f.user_id == tok.user_id
            && f.app_id == *app
            && f.created <= now
            && !hidden_from(&st, f, &client_id)
    }) {
        raws.push(RawRef {
            name: f.id.clone(),
            created: f.created,
            app_id: f.app_id.clone(),
            contract_id: f.contract_id.clone(),
            descriptor: f.descriptor.clone(),
            what: What::Stored(Box::new(f.clone())),
        });
    }
    Ok(SessionCtx { plan, lib, raws })
}

/// `GET permission-access/query/{sessionKey}` → the file list.
pub(crate) async fn file_list(
    State(shared): State<Shared>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let (v, tok) = user_call(&shared, &headers)?;
    require_read(&v)?;
    let now = now_ms();
    let ctx = open_session(&shared, &v, &tok, &key, now)?;
    let view = view(&ctx.lib, &ctx.plan, ctx.raws, crate::system_now_ms());
    let mut status = Map::new();
    status.insert("state".into(), json!(view.state));
    if let Some(d) = view.details {
        status.insert("details".into(), Value::Object(d));
    }
    let mut body = Map::new();
    body.insert("status".into(), Value::Object(status));
    if view.state != "pending" {
        let list: Vec<Value> = view.files.into_iter().map(|f| f.entry).collect();
        body.insert("fileList".into(), Value::Array(list));
    }
    Ok(axum::Json(Value::Object(body)).into_response())
}

fn http_date(ms: u64) -> String {
    httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
}

/// `GET` / `HEAD permission-access/query/{sessionKey}/{fileName}`: one file, encrypted.
pub(crate) async fn file(
    State(shared): State<Shared>,
    method: Method,
    Path((key, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let (v, tok) = user_call(&shared, &headers)?;
    require_read(&v)?;
    let now = now_ms();
    let ctx = open_session(&shared, &v, &tok, &key, now)?;
    let item = view(&ctx.lib, &ctx.plan, ctx.raws, crate::system_now_ms())
        .files
        .into_iter()
        .find(|f| f.name == name)
        .ok_or_else(|| {
            ApiFailure::new(
                404,
                "FileNotFound",
                format!("The file ({name}) was not found"),
            )
        })?;
    let settings = shared.settings();
    let (plain, compression) = match item.what {
        What::Mapped { file, version } => {
            let f = ctx
                .lib
                .files
                .get(file)
                .ok_or_else(|| internal_msg("no such file"))?;
            (
                Plain::Bytes(ctx.lib.mapped_content(f, version)),
                settings.compression,
            )
        }
        What::DemoRaw(i) => {
            let r = ctx
                .lib
                .raw
                .get(i)
                .ok_or_else(|| internal_msg("no such file"))?;
            (Plain::Bytes(ctx.lib.raw_content(r)), settings.compression)
        }
        What::Stored(f) => match &f.generated {
            Some(g) => (
                Plain::Generated {
                    seed: g.seed,
                    size: f.size,
                },
                g.compression.unwrap_or(settings.compression),
            ),
            None => (
                Plain::File(shared.library_dir().join(&f.user_id).join(&f.id)),
                settings.compression,
            ),
        },
    };
    let plain_len = match &plain {
        Plain::Bytes(b) => b.len() as u64,
        Plain::Generated { size, .. } => *size,
        Plain::File(p) => match tokio::fs::metadata(p).await {
            Ok(m) => m.len(),
            // Deleted (with its account or its user) since the list was read.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ApiFailure::new(
                    404,
                    "FileNotFound",
                    format!("The file ({name}) was not found"),
                ));
            }
            Err(e) => return Err(internal(e)),
        },
    };
    let damage = if settings.truncate.contains(&name) {
        Damage::Truncate
    } else if settings.corrupt.contains(&name) {
        Damage::Corrupt
    } else {
        Damage::None
    };
    let mut x_metadata = Map::new();
    x_metadata.insert("metadata".into(), item.metadata);
    if let Some(label) = compression.label() {
        x_metadata.insert("compression".into(), json!(label));
    }
    let encoded = digime_crypto::b64url_encode(Value::Object(x_metadata).to_string().as_bytes());
    let mut out = HeaderMap::new();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let value = |s: String| HeaderValue::from_str(&s).map_err(|_| internal_msg("bad header"));
    out.insert("x-metadata", value(encoded)?);
    out.insert(header::LAST_MODIFIED, value(http_date(item.updated_ms))?);
    let length = match (damage, compression) {
        (Damage::Truncate, _) => Some(HEADER_LEN),
        (_, Compression::None) => Some(encrypted_len(plain_len, Format::Current)),
        _ => None,
    };
    if let Some(n) = length {
        out.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    if method == Method::HEAD {
        return Ok((StatusCode::OK, out, Body::empty()).into_response());
    }
    let body = encrypted_body(
        v.contract.key.clone(),
        plain,
        plain_len,
        compression,
        damage,
    )
    .await
    .map_err(|e| {
        internal_msg(&format!(
            "the file could not be read, compressed or encrypted: {e}"
        ))
    })?;
    Ok((StatusCode::OK, out, body).into_response())
}

/// `GET permission-access/accounts` → a bare array of the accounts of the user that
/// the calling contract sees.
pub(crate) async fn accounts(State(shared): State<Shared>, headers: HeaderMap) -> ApiResult {
    let (v, tok) = user_call(&shared, &headers)?;
    let now = now_ms();
    let client_id = v.contract.client_id();
    let (lib, failures, synced) = {
        let st = shared.lock();
        let lib = library_for(&shared, &st, &tok.user_id, Some(&client_id))
            .ok_or_else(|| ApiFailure::invalid_token("access_token", false))?;
        let synced = st
            .sync_ends
            .get(&tok.user_id)
            .and_then(|e| e.iter().copied().filter(|&e| e <= now).max())
            .unwrap_or(0);
        let failures = st
            .account_failures
            .get(&tok.user_id)
            .cloned()
            .unwrap_or_default();
        (lib, failures, synced)
    };
    let updated = synced.max(lib.created_ms);
    Ok(axum::Json(account_list(&lib, &failures, updated)).into_response())
}
