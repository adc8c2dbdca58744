//! The read calls: `permission-access/trigger`, the file list, file download and HEAD,
//! and the accounts. The sync they show is simulated in [`crate::sync`].

use crate::checks::{ApiFailure, Verified, check_agent};
use crate::common::{
    ApiResult, EXPIRED_SESSION_MEMORY_MS, SESSION_TTL_MS, internal, internal_msg, json_body,
    session_expired, session_not_found,
};
use crate::demo::DemoLibrary;
use crate::serve::{Damage, HEADER_LEN, Plain, encrypted_body};
use crate::state::{
    Compression, Criterion, GroupFilter, IssuedToken, SessionRecord, SyncPlan, TypeFilter,
};
use crate::sync::{RawRef, SessionOptions, What, account_list, start_sync, view};
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
// The trigger body.

fn bad(path: &str, what: &str) -> ApiFailure {
    ApiFailure::bad_params(&format!("{path} must be {what}"))
}

fn object_at<'a>(
    v: Option<&'a Value>,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>, ApiFailure> {
    match v {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(bad(path, "an object")),
    }
}

fn array_at<'a>(v: Option<&'a Value>, path: &str) -> Result<Option<&'a Vec<Value>>, ApiFailure> {
    match v {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(_) => Err(bad(path, "an array")),
    }
}

fn number_at(v: Option<&Value>, path: &str) -> Result<Option<f64>, ApiFailure> {
    match v {
        None => Ok(None),
        Some(n) => n
            .as_f64()
            .filter(|x| x.is_finite())
            .map(Some)
            .ok_or_else(|| bad(path, "a number")),
    }
}

fn id_at(v: Option<&Value>, path: &str) -> Result<u64, ApiFailure> {
    v.and_then(Value::as_u64)
        .ok_or_else(|| bad(path, "a non-negative integer"))
}

fn strings_at(v: Option<&Value>, path: &str) -> Result<Option<Vec<String>>, ApiFailure> {
    let Some(items) = array_at(v, path)? else {
        return Ok(None);
    };
    items
        .iter()
        .map(|s| {
            s.as_str()
                .map(str::to_owned)
                .ok_or_else(|| bad(path, "an array of strings"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Seconds (possibly fractional) to ms; negative values are refused.
fn seconds_to_ms(s: f64, path: &str) -> Result<u64, ApiFailure> {
    if s < 0.0 {
        return Err(bad(path, "a non-negative number of seconds"));
    }
    Ok((s * 1000.0).min(u64::MAX as f64 / 2.0) as u64)
}

/// `"<n>d|m|y"` before `now`, in ms.
fn last_to_from_ms(v: Option<&Value>, path: &str, now: u64) -> Result<Option<u64>, ApiFailure> {
    let Some(v) = v else { return Ok(None) };
    let text = v
        .as_str()
        .ok_or_else(|| bad(path, "a string like \"6m\""))?;
    let Some(unit) = text.chars().last() else {
        return Err(bad(path, "a string like \"6m\""));
    };
    let n = &text[..text.len() - unit.len_utf8()];
    let day = 86_400_000u64;
    let unit_ms = match unit {
        'd' => day,
        'm' => 30 * day,
        'y' => 365 * day,
        _ => return Err(bad(path, "a string like \"6m\" (units d, m, y)")),
    };
    let n: u64 = n
        .parse()
        .ok()
        .filter(|_| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| bad(path, "a string like \"6m\""))?;
    Ok(Some(now.saturating_sub(n.saturating_mul(unit_ms))))
}

/// Checks the types of the session options; unknown keys are ignored.
pub(crate) fn parse_options(body: &Value, now: u64) -> Result<SessionOptions, ApiFailure> {
    let mut opts = SessionOptions::default();
    if let Some(limits) = object_at(body.get("limits"), "limits")?
        && let Some(duration) = object_at(limits.get("duration"), "limits.duration")?
        && let Some(s) = number_at(duration.get("sourceFetch"), "limits.duration.sourceFetch")?
    {
        // Validated only: the simulated sync always finishes.
        seconds_to_ms(s, "limits.duration.sourceFetch")?;
    }
    match body.get("sourceFetch") {
        None => {}
        Some(Value::Bool(b)) => opts.fetch = Some(*b),
        Some(_) => return Err(bad("sourceFetch", "a boolean")),
    }
    if let Some(filter) = object_at(body.get("sourceFetchFilter"), "sourceFetchFilter")?
        && let Some(account) = object_at(filter.get("account"), "sourceFetchFilter.account")?
    {
        opts.only_accounts = strings_at(account.get("id"), "sourceFetchFilter.account.id")?;
    }
    let Some(scope) = object_at(body.get("scope"), "scope")? else {
        return Ok(opts);
    };
    if let Some(ranges) = array_at(scope.get("timeRanges"), "scope.timeRanges")? {
        for r in ranges {
            let r = r
                .as_object()
                .ok_or_else(|| bad("scope.timeRanges[]", "an object"))?;
            let mut from = number_at(r.get("from"), "scope.timeRanges[].from")?
                .map(|s| seconds_to_ms(s, "scope.timeRanges[].from"))
                .transpose()?;
            let to = number_at(r.get("to"), "scope.timeRanges[].to")?
                .map(|s| seconds_to_ms(s, "scope.timeRanges[].to"))
                .transpose()?;
            if let Some(last) = last_to_from_ms(r.get("last"), "scope.timeRanges[].last", now)? {
                from = Some(from.map_or(last, |f| f.max(last)));
            }
            opts.scope.time_ranges.push((from, to));
        }
    }
    if let Some(groups) = array_at(scope.get("serviceGroups"), "scope.serviceGroups")? {
        let mut out = Vec::new();
        for g in groups {
            let g = g
                .as_object()
                .ok_or_else(|| bad("scope.serviceGroups[]", "an object"))?;
            let id = id_at(g.get("id"), "scope.serviceGroups[].id")?;
            let types = array_at(g.get("serviceTypes"), "scope.serviceGroups[].serviceTypes")?
                .ok_or_else(|| bad("scope.serviceGroups[].serviceTypes", "an array"))?;
            let mut service_types = Vec::new();
            for t in types {
                let path = "scope.serviceGroups[].serviceTypes[]";
                let t = t.as_object().ok_or_else(|| bad(path, "an object"))?;
                let id = id_at(t.get("id"), "scope.serviceGroups[].serviceTypes[].id")?;
                let object_types = array_at(
                    t.get("serviceObjectTypes"),
                    "scope.serviceGroups[].serviceTypes[].serviceObjectTypes",
                )?
                .map(|list| {
                    list.iter()
                        .map(|o| {
                            id_at(
                                o.get("id"),
                                "scope.serviceGroups[].serviceTypes[].serviceObjectTypes[].id",
                            )
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?;
                service_types.push(TypeFilter { id, object_types });
            }
            out.push(GroupFilter {
                id,
                service_types: Some(service_types),
            });
        }
        opts.scope.service_groups = Some(out);
    }
    if let Some(criteria) = array_at(scope.get("criteria"), "scope.criteria")? {
        let mut out = Vec::new();
        for c in criteria {
            let c = c
                .as_object()
                .ok_or_else(|| bad("scope.criteria[]", "an object"))?;
            let mut crit = Criterion {
                from_ms: number_at(c.get("from"), "scope.criteria[].from")?
                    .map(|s| seconds_to_ms(s, "scope.criteria[].from"))
                    .transpose()?,
                ..Criterion::default()
            };
            if let Some(last) = last_to_from_ms(c.get("last"), "scope.criteria[].last", now)? {
                crit.from_ms = Some(crit.from_ms.map_or(last, |f| f.max(last)));
            }
            if let Some(m) = object_at(c.get("metadata"), "scope.criteria[].metadata")? {
                let p = |k: &str| format!("scope.criteria[].metadata.{k}");
                crit.app_id = strings_at(m.get("appId"), &p("appId"))?;
                crit.contract_id = strings_at(m.get("contractId"), &p("contractId"))?;
                crit.mime_type = strings_at(m.get("mimeType"), &p("mimeType"))?;
                crit.reference = strings_at(m.get("reference"), &p("reference"))?;
                crit.tags = strings_at(m.get("tags"), &p("tags"))?;
                if let Some(accounts) = array_at(m.get("accounts"), &p("accounts"))? {
                    let mut ids = Vec::new();
                    for a in accounts {
                        let id = a.get("accountId").and_then(Value::as_str).ok_or_else(|| {
                            bad("scope.criteria[].metadata.accounts[].accountId", "a string")
                        })?;
                        if a.get("username").is_some_and(|u| !u.is_string()) {
                            return Err(bad(
                                "scope.criteria[].metadata.accounts[].username",
                                "a string",
                            ));
                        }
                        ids.push(id.to_owned());
                    }
                    crit.accounts = Some(ids);
                }
            }
            out.push(crit);
        }
        opts.scope.criteria = Some(out);
    }
    Ok(opts)
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
        let plan = start_sync(&shared, &mut st, &settings, &tok.user_id, opts, now);
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
    let user = st.users.get(&tok.user_id).ok_or_else(session_not_found)?;
    let lib = DemoLibrary::of(&user.id, user.created, shared.config.demo_data);
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
    for f in st
        .files
        .iter()
        .filter(|f| f.user_id == tok.user_id && f.app_id == *app && f.created <= now)
    {
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
    let view = view(&ctx.lib, &ctx.plan, ctx.raws, now);
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
    let item = view(&ctx.lib, &ctx.plan, ctx.raws, now)
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
        Plain::File(p) => tokio::fs::metadata(p).await.map_err(internal)?.len(),
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

/// `GET permission-access/accounts` → a bare array of the user's accounts.
pub(crate) async fn accounts(State(shared): State<Shared>, headers: HeaderMap) -> ApiResult {
    let (_, tok) = user_call(&shared, &headers)?;
    let now = now_ms();
    let (created, failures, synced) = {
        let st = shared.lock();
        let user = st
            .users
            .get(&tok.user_id)
            .ok_or_else(|| ApiFailure::invalid_token("access_token", false))?;
        let synced = st
            .sync_ends
            .get(&tok.user_id)
            .and_then(|e| e.iter().copied().filter(|&e| e <= now).max())
            .unwrap_or(0);
        (
            user.created,
            st.account_failures
                .get(&tok.user_id)
                .cloned()
                .unwrap_or_default(),
            synced,
        )
    };
    let lib = DemoLibrary::of(&tok.user_id, created, shared.config.demo_data);
    Ok(axum::Json(account_list(&lib, &failures, synced.max(created))).into_response())
}
