//! The postbox era (`docs/protocol.md`, "Postbox era"): the establish-session call, the
//! v1.5 OAuth calls with the flat token, postbox pushes of the three eras (E0 on
//! `/v1.0/` and `/v1.4/`, E1 on `/v1.5/`, E2 on `/v1.7/`), the native app that consumes
//! `digime://postbox/create` links, and the import of pending postbox items.

use crate::checks::{ApiFailure, check_redirect_uri, verify_bearer};
use crate::common::{
    ApiResult, CODE_TTL_MS, DRAIN_LIMIT, Destination, EXPIRED_SESSION_MEMORY_MS, Owner,
    POSTBOX_ITEM_TTL_S, SESSION_TTL_MS, Upload, drain, internal, internal_msg, json_body, jwks,
    new_postbox, postbox_key, postbox_not_found, redirect, server_token_at, session_expired,
    session_not_found, store_upload, too_large, unknown_user,
};
use crate::postbox::{MultipartFile, PostboxDecoder};
use crate::state::{
    LegacyPreAuth, LibraryFile, Persisted, PostboxKind, PostboxRecord, SessionRecord,
};
use crate::tokens::{
    check_authorize_claims, issue_auth_code, live_access_token, redeem_grant, token_answer,
};
use crate::{Shared, now_ms, random_id};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use digime_crypto::PrivateKey;
use serde_json::{Map, Value, json};

/// Largest postbox push body (the whole multipart body); more → 413.
pub(crate) const MAX_POSTBOX_BODY: u64 = 256 << 20;

/// The write era of a push route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Era {
    /// Header-authenticated (`/v1.0/`, `/v1.4/`).
    E0,
    /// JWT with `session_key` (`/v1.5/`).
    E1,
    /// JWT with `access_token` (`/v1.7/`).
    E2,
}

pub(crate) fn api_routes() -> Router<Shared> {
    let mut r = Router::new();
    for v in ["v1.0", "v1.4", "v1.5"] {
        r = r.route(
            &format!("/{v}/permission-access/session"),
            post(establish_session),
        );
    }
    for (v, era) in [
        ("v1.0", Era::E0),
        ("v1.4", Era::E0),
        ("v1.5", Era::E1),
        ("v1.7", Era::E2),
    ] {
        r = r.route(
            &format!("/{v}/permission-access/postbox/{{postbox}}"),
            post(
                move |State(shared): State<Shared>,
                      Path(id): Path<String>,
                      headers: HeaderMap,
                      body: Body| push(shared, era, id, headers, body),
            )
            .layer(axum::extract::DefaultBodyLimit::disable()),
        );
    }
    r.route("/v1.5/jwks/oauth", get(jwks))
        .route("/v1.5/oauth/authorize", post(authorize_v15))
        .route("/v1.5/oauth/token", post(token_v15))
}

pub(crate) fn control_routes() -> Router<Shared> {
    Router::new()
        .route("/_sandbox/app/postbox/create", get(native_create))
        .route(
            "/_sandbox/users/{user}/postbox-import",
            post(postbox_import),
        )
        .route("/_sandbox/users/{user}/postboxes", get(postboxes))
}

fn v15_base(shared: &Shared) -> String {
    shared.info.api_version("v1.5")
}

// ---------------------------------------------------------------------------
// Establish session.

fn field<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    path: &str,
    ok: impl Fn(&Value) -> bool,
    what: &str,
) -> Result<Option<&'a Value>, ApiFailure> {
    match m.get(key) {
        None => Ok(None),
        Some(v) if ok(v) => Ok(Some(v)),
        Some(_) => Err(ApiFailure::bad_params(&format!("{path} must be {what}"))),
    }
}

/// `POST {v1.0,v1.4,v1.5}/permission-access/session` → 200
/// `{"expiry","sessionKey","sessionExchangeToken"}`.
async fn establish_session(State(shared): State<Shared>, body: Bytes) -> ApiResult {
    let body = json_body(&body)?;
    let m = body.as_object().cloned().unwrap_or_default();
    let required = |key: &str| -> Result<String, ApiFailure> {
        field(&m, key, key, Value::is_string, "a string")?
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ApiFailure::bad_params(&format!("{key} is required")))
    };
    let app_id = required("appId")?;
    let contract_id = required("contractId")?;
    let agent = field(&m, "sdkAgent", "sdkAgent", Value::is_object, "an object")?
        .and_then(Value::as_object)
        .ok_or_else(|| ApiFailure::bad_params("sdkAgent is required"))?;
    let name = field(agent, "name", "sdkAgent.name", Value::is_string, "a string")?
        .and_then(Value::as_str);
    let version = field(
        agent,
        "version",
        "sdkAgent.version",
        Value::is_string,
        "a string",
    )?;
    field(
        agent,
        "meta",
        "sdkAgent.meta",
        Value::is_object,
        "an object",
    )?;
    let (Some(name), Some(_)) = (name, version) else {
        return Err(ApiFailure::bad_params(
            "sdkAgent.name and sdkAgent.version are required",
        ));
    };
    field(&m, "scope", "scope", Value::is_object, "an object")?;
    if let Some(accept) =
        field(&m, "accept", "accept", Value::is_object, "an object")?.and_then(Value::as_object)
    {
        field(
            accept,
            "compression",
            "accept.compression",
            Value::is_string,
            "a string",
        )?;
    }
    if !shared.config.agents.iter().any(|a| a == name) {
        return Err(ApiFailure::new(
            400,
            "SDKInvalid",
            format!("The SDK is invalid: {name}"),
        ));
    }
    let client_id = format!("{app_id}_{contract_id}");
    if shared.contract(&client_id).is_none() {
        return Err(ApiFailure::new(
            404,
            "InvalidContractId",
            format!("The contract id ({contract_id}) is invalid for the application ({app_id})"),
        ));
    }
    let key = random_id("sess_");
    let exchange = random_id("sxt_");
    let now = now_ms();
    let expiry = now + SESSION_TTL_MS;
    {
        let mut st = shared.lock();
        st.sessions
            .retain(|_, s| s.expires_ms + EXPIRED_SESSION_MEMORY_MS > now);
        st.sessions.insert(
            key.clone(),
            SessionRecord {
                client_id,
                expires_ms: expiry,
                user_id: None,
                sync: None,
                exchange_token: Some(exchange.clone()),
            },
        );
        shared.save(&st).map_err(internal)?;
    }
    Ok(axum::Json(json!({
        "expiry": expiry,
        "sessionKey": key,
        "sessionExchangeToken": exchange,
    }))
    .into_response())
}

/// A live establish-session session of `client_id`; another client's is as good as
/// unknown.
fn check_session(st: &Persisted, key: &str, client_id: &str, now: u64) -> Result<(), ApiFailure> {
    let s = st
        .sessions
        .get(key)
        .filter(|s| s.exchange_token.is_some() && s.client_id == client_id)
        .ok_or_else(session_not_found)?;
    if s.expires_ms <= now {
        return Err(session_expired());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// v1.5 OAuth.

fn body_must_be_empty(body: &[u8]) -> Result<(), ApiFailure> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(())
    } else {
        Err(ApiFailure::bad_params(
            "this call takes no body on v1.5 (the JSON body with agent and actions is v1.6+)",
        ))
    }
}

/// `POST v1.5/oauth/authorize`, no body → 201 `{"token": JWS{preauthorization_code}}`.
async fn authorize_v15(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let v = verify_bearer(&shared, &headers)?;
    body_must_be_empty(&body)?;
    let (challenge, redirect_uri) = check_authorize_claims(&v)?;
    let state = v.optional_str("state")?.map(str::to_owned);
    let code = random_id("PRE_");
    let now = now_ms();
    {
        let mut st = shared.lock();
        st.legacy_preauths.retain(|_, p| p.expires_ms > now);
        st.legacy_preauths.insert(
            code.clone(),
            LegacyPreAuth {
                client_id: v.contract.client_id(),
                code_challenge: challenge.to_owned(),
                redirect_uri: redirect_uri.to_owned(),
                state,
                expires_ms: now + CODE_TTL_MS,
            },
        );
        shared.save(&st).map_err(internal)?;
    }
    let token = server_token_at(
        &shared,
        &v15_base(&shared),
        json!({"preauthorization_code": code}),
    )?;
    Ok((StatusCode::CREATED, axum::Json(json!({ "token": token }))).into_response())
}

/// `POST v1.5/oauth/token`, no body → 201 `{"token": JWS{access_token, refresh_token,
/// expires_on}}` (the flat payload of v1.5).
async fn token_v15(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let v = verify_bearer(&shared, &headers)?;
    body_must_be_empty(&body)?;
    let redirect_uri = v.require_str("redirect_uri")?;
    check_redirect_uri(redirect_uri)?;
    let user_id = redeem_grant(&shared, &v, Some(redirect_uri))?;
    let client_id = v.contract.client_id();
    token_answer(&shared, &v15_base(&shared), &client_id, &user_id, |m| {
        json!({
            "access_token": m.access,
            "refresh_token": m.refresh,
            "expires_on": m.access_exp,
        })
    })
}

// ---------------------------------------------------------------------------
// The native app: `digime://postbox/create?…`.

/// What a postbox-creation link asks for.
struct Link {
    user: String,
    allow: bool,
    session_key: String,
    app_id: String,
    callback: url::Url,
    /// `callbackURL` (v0.5) without `resultVersion`: answers `POSTBOX_READY`.
    ready_vocabulary: bool,
    preauthorization: Option<String>,
}

fn parse_link(query: &str) -> Result<Link, ApiFailure> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let need = |k: &str| {
        get(k)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiFailure::bad_params(&format!("the link has no {k}")))
    };
    let user = get("user").filter(|u| !u.is_empty()).ok_or_else(|| {
        ApiFailure::bad_params("user (the sandbox user who opens the link) is required")
    })?;
    let allow = match get("decision") {
        None | Some("allow") => true,
        Some("deny") => false,
        Some(_) => return Err(ApiFailure::bad_params("decision must be allow or deny")),
    };
    let (callback, v05) = match (get("callbackUrl"), get("callbackURL")) {
        (Some(c), _) => (c, false),
        (None, Some(c)) => (c, true),
        (None, None) => {
            return Err(ApiFailure::bad_params(
                "the link has no callbackUrl (callbackURL)",
            ));
        }
    };
    let callback = url::Url::parse(callback)
        .map_err(|_| ApiFailure::bad_params("the callback must be an absolute URL"))?;
    Ok(Link {
        user: user.to_owned(),
        allow,
        session_key: need("sessionKey")?.to_owned(),
        app_id: need("appId")?.to_owned(),
        callback,
        ready_vocabulary: v05 && get("resultVersion").is_none(),
        preauthorization: get("preauthorizationCode").map(str::to_owned),
    })
}

/// Checks a link against the state: `(client id, pre-authorization)`.
fn check_link(
    shared: &Shared,
    st: &Persisted,
    link: &Link,
    now: u64,
) -> Result<(String, Option<LegacyPreAuth>), ApiFailure> {
    if !st.users.contains_key(&link.user) {
        return Err(unknown_user());
    }
    let session = st
        .sessions
        .get(&link.session_key)
        .filter(|s| s.exchange_token.is_some())
        .ok_or_else(session_not_found)?;
    let contract = shared
        .contract(&session.client_id)
        .filter(|c| c.app_id == link.app_id)
        .ok_or_else(session_not_found)?;
    if session.expires_ms <= now {
        return Err(session_expired());
    }
    if !contract.kind.can_write() {
        return Err(ApiFailure::insufficient_scope());
    }
    let pre = match &link.preauthorization {
        None => None,
        Some(code) => {
            let pre = st
                .legacy_preauths
                .get(code)
                .filter(|p| p.expires_ms > now && p.client_id == session.client_id)
                .cloned()
                .ok_or_else(|| {
                    ApiFailure::new(
                        400,
                        "InvalidGrant",
                        "The preauthorization code is unknown, used, expired or of another contract",
                    )
                })?;
            if pre.redirect_uri != link.callback.as_str()
                && url::Url::parse(&pre.redirect_uri).ok().as_ref() != Some(&link.callback)
            {
                return Err(ApiFailure::new(
                    404,
                    "InvalidRedirectUri",
                    format!(
                        "The callbackUrl must be the redirect_uri of the pre-authorization ({})",
                        pre.redirect_uri
                    ),
                ));
            }
            Some(pre)
        }
    };
    Ok((session.client_id.clone(), pre))
}

/// `GET /_sandbox/app/postbox/create?<the deep link's query>&user=<id>[&decision=deny]`:
/// what the native app does with `digime://postbox/create?…`.
async fn native_create(State(shared): State<Shared>, RawQuery(query): RawQuery) -> ApiResult {
    let link = parse_link(query.as_deref().unwrap_or(""))?;
    let (_, pre) = check_link(&shared, &shared.lock(), &link, now_ms())?;
    if !link.allow {
        let mut st = shared.lock();
        if let Some(code) = &link.preauthorization {
            st.legacy_preauths.remove(code);
        }
        shared.save(&st).map_err(internal)?;
        let mut params = vec![("result", "CANCEL".to_owned())];
        if let Some(state) = pre.and_then(|p| p.state) {
            params.push(("state", state));
        }
        return Ok(redirect(link.callback, &params));
    }
    let key = postbox_key().await?;
    let now = now_ms();
    let mut st = shared.lock();
    // Checked again: the state may have changed while the key was made.
    let (client_id, pre) = check_link(&shared, &st, &link, now)?;
    let kind = if pre.is_some() {
        PostboxKind::Ongoing
    } else {
        PostboxKind::Once
    };
    let (id, public_key) = new_postbox(
        &mut st,
        &key,
        &client_id,
        &link.user,
        kind,
        Some(link.session_key.clone()),
        now,
    )
    .ok_or_else(|| internal_msg("the postbox key did not encode"))?;
    let result = if link.ready_vocabulary {
        "POSTBOX_READY"
    } else {
        "SUCCESS"
    };
    let mut params = vec![
        ("result", result.to_owned()),
        ("postboxId", id),
        ("publicKey", public_key),
    ];
    if let (Some(code), Some(pre)) = (&link.preauthorization, pre) {
        st.legacy_preauths.remove(code);
        let auth_code = issue_auth_code(
            &mut st,
            &client_id,
            &link.user,
            &pre.code_challenge,
            Some(pre.redirect_uri),
            now,
        );
        params.push(("code", auth_code));
        if let Some(state) = pre.state {
            params.push(("state", state));
        }
    }
    shared.save(&st).map_err(internal)?;
    drop(st);
    Ok(redirect(link.callback, &params))
}

// ---------------------------------------------------------------------------
// Pushes.

/// What an accepted push will do with the file.
struct PushPlan {
    postbox_id: String,
    owner: Owner,
    deliver: bool,
    decoder: PostboxDecoder,
}

/// A push body: the `file` part of the multipart body, decrypted with the postbox's key.
struct PushUpload {
    parser: MultipartFile,
    decoder: PostboxDecoder,
    /// The part's bytes of the current chunk.
    part: Vec<u8>,
}

impl Upload for PushUpload {
    fn update(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), ApiFailure> {
        let refused = |e: &dyn std::fmt::Display| ApiFailure::bad_params(&e.to_string());
        self.part.clear();
        self.parser
            .feed(chunk, &mut self.part)
            .map_err(|e| refused(&e))?;
        self.decoder
            .update(&self.part, out)
            .map_err(|e| refused(&e))
    }
    fn is_done(&self) -> bool {
        self.parser.is_done()
    }
    fn finish(self, out: &mut Vec<u8>) -> Result<Value, ApiFailure> {
        let refused = |e: &dyn std::fmt::Display| ApiFailure::bad_params(&e.to_string());
        self.parser.finish().map_err(|e| refused(&e))?;
        self.decoder.finish(out).map_err(|e| refused(&e))
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, ApiFailure> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiFailure::bad_params(&format!("the {name} header is required")))
}

/// Every check of a push that needs no body, in the order the service checks them.
fn check_push(
    shared: &Shared,
    era: Era,
    id: &str,
    headers: &HeaderMap,
) -> Result<PushPlan, ApiFailure> {
    let postbox = shared
        .lock()
        .postboxes
        .get(id)
        .cloned()
        .ok_or_else(|| postbox_not_found(id))?;
    // A postbox takes the pushes of the era that made it: the native app's (E0, E1)
    // or the web consent's (E2). Otherwise an unsigned E0 push, whose session anyone
    // can open, would reach a postbox that only takes contract-signed pushes.
    let web_postbox = postbox.kind == PostboxKind::Saas;
    if web_postbox != matches!(era, Era::E2) {
        return Err(postbox_not_found(id));
    }
    let contract = shared
        .contract(&postbox.client_id)
        .ok_or_else(|| postbox_not_found(id))?;
    let now = now_ms();
    let (symmetrical_key, iv, metadata, deliver) = match era {
        Era::E0 => {
            let session = header_str(headers, "sessionKey")?;
            check_session(&shared.lock(), session, &postbox.client_id, now)?;
            (
                header_str(headers, "symmetricalKey")?.to_owned(),
                header_str(headers, "iv")?.to_owned(),
                header_str(headers, "metadata")?.to_owned(),
                false,
            )
        }
        Era::E1 | Era::E2 => {
            let v = verify_bearer(shared, headers)?;
            // Another contract's push is as good as one to an unknown postbox.
            if v.contract.client_id() != postbox.client_id {
                return Err(postbox_not_found(id));
            }
            let fields = (
                v.require_str("symmetrical_key")?.to_owned(),
                v.require_str("iv")?.to_owned(),
                v.require_str("metadata")?.to_owned(),
            );
            if era == Era::E1 {
                let session = v.require_str("session_key")?;
                check_session(&shared.lock(), session, &postbox.client_id, now)?;
                let redirect_uri = v.require_str("redirect_uri")?;
                if url::Url::parse(redirect_uri).is_err() {
                    return Err(ApiFailure::bad_params(
                        "redirect_uri must be an absolute URL",
                    ));
                }
            } else if v.claims.get("redirect_uri").is_some() {
                // v5–v7 sent it; tolerated, but it must be a string.
                v.require_str("redirect_uri")?;
            }
            let deliver = match v.claims.get("access_token") {
                None if era == Era::E1 => false,
                None => return Err(ApiFailure::bad_params("claim access_token is required")),
                Some(Value::String(at)) => live_access_token(shared, at).is_ok_and(|t| {
                    t.client_id == postbox.client_id && t.user_id == postbox.user_id
                }),
                Some(_) => return Err(ApiFailure::bad_params("access_token must be a string")),
            };
            (fields.0, fields.1, fields.2, deliver)
        }
    };
    let key =
        PrivateKey::from_pem(&postbox.private_key_pem).map_err(|e| internal_msg(&e.to_string()))?;
    let decoder = PostboxDecoder::new(&key, &symmetrical_key, &iv, &metadata)
        .map_err(|e| ApiFailure::bad_params(&e.to_string()))?;
    Ok(PushPlan {
        postbox_id: postbox.id,
        owner: Owner {
            user_id: postbox.user_id,
            app_id: contract.app_id,
            contract_id: contract.contract_id,
        },
        deliver,
        decoder,
    })
}

/// `POST {v1.0,v1.4,v1.5,v1.7}/permission-access/postbox/{postboxId}` → 200
/// `{"status":"delivered"|"pending","expires":2592000}`.
async fn push(shared: Shared, era: Era, id: String, headers: HeaderMap, body: Body) -> ApiResult {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_POSTBOX_BODY) {
        return Err(too_large(MAX_POSTBOX_BODY));
    }
    // Every check that needs no body happens before a byte of it is read.
    let checked = check_push(&shared, era, &id, &headers).and_then(|plan| {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let parser = MultipartFile::from_content_type(ct)
            .map_err(|e| ApiFailure::bad_params(&e.to_string()))?;
        Ok((plan, parser))
    });
    let (plan, parser) = match checked {
        Ok(x) => x,
        Err(failure) => {
            drain(body, DRAIN_LIMIT).await;
            return Err(failure);
        }
    };
    let destination = if plan.deliver {
        Destination::Library
    } else {
        Destination::Postbox(plan.postbox_id)
    };
    let upload = PushUpload {
        parser,
        decoder: plan.decoder,
        part: Vec::new(),
    };
    store_upload(
        &shared,
        body,
        MAX_POSTBOX_BODY,
        upload,
        plan.owner,
        destination,
    )
    .await?;
    let status = if plan.deliver { "delivered" } else { "pending" };
    Ok(axum::Json(json!({"status": status, "expires": POSTBOX_ITEM_TTL_S})).into_response())
}

// ---------------------------------------------------------------------------
// Control: import and inspection.

fn item_json(p: &PostboxRecord, f: &LibraryFile) -> Value {
    json!({
        "name": f.id, "postboxId": p.id, "size": f.size, "sha256": f.sha256,
        "descriptor": f.descriptor,
    })
}

/// `POST /_sandbox/users/{id}/postbox-import`: the user opens the native app (or
/// `digime://postbox/import`): every unexpired pending item of their postboxes joins
/// the library → `{"imported":[{"name","postboxId","size","sha256","descriptor"}],
/// "expired": n}`.
async fn postbox_import(
    State(shared): State<Shared>,
    Path(user): Path<String>,
    _body: Bytes,
) -> ApiResult {
    let now = now_ms();
    let mut imported = Vec::new();
    let mut expired = Vec::new();
    {
        let mut st = shared.lock();
        if !st.users.contains_key(&user) {
            return Err(unknown_user());
        }
        let mut boxes: Vec<(u64, String)> = st
            .postboxes
            .values()
            .filter(|p| p.user_id == user && !p.pending.is_empty())
            .map(|p| (p.created_ms, p.id.clone()))
            .collect();
        boxes.sort();
        let mut files = Vec::new();
        for (_, id) in boxes {
            let Some(p) = st.postboxes.get_mut(&id) else {
                continue;
            };
            for item in std::mem::take(&mut p.pending) {
                if item.expires_ms <= now {
                    expired.push(
                        shared
                            .library_dir()
                            .join(&item.file.user_id)
                            .join(&item.file.id),
                    );
                    continue;
                }
                let mut file = item.file;
                file.created = now;
                imported.push(item_json(p, &file));
                files.push(file);
            }
        }
        st.files.extend(files);
        shared.save(&st).map_err(internal)?;
    }
    for path in &expired {
        let _ = tokio::fs::remove_file(path).await;
    }
    Ok(axum::Json(json!({"imported": imported, "expired": expired.len()})).into_response())
}

/// `GET /_sandbox/users/{id}/postboxes` → `{"postboxes":[{"id","clientId","kind",
/// "created","publicKey","pending":[{"name","size","sha256","descriptor","pushed",
/// "expires"}]}]}`.
async fn postboxes(State(shared): State<Shared>, Path(user): Path<String>) -> ApiResult {
    let st = shared.lock();
    if !st.users.contains_key(&user) {
        return Err(unknown_user());
    }
    let mut list: Vec<&PostboxRecord> = st
        .postboxes
        .values()
        .filter(|p| p.user_id == user)
        .collect();
    list.sort_by_key(|p| (p.created_ms, p.id.clone()));
    let out: Vec<Value> = list
        .into_iter()
        .map(|p| {
            let pending: Vec<Value> = p
                .pending
                .iter()
                .map(|i| {
                    let mut v = item_json(p, &i.file);
                    v["pushed"] = json!(i.pushed_ms);
                    v["expires"] = json!(i.expires_ms);
                    v
                })
                .collect();
            json!({
                "id": p.id, "clientId": p.client_id, "kind": p.kind, "created": p.created_ms,
                "publicKey": p.public_key, "pending": pending,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "postboxes": out })).into_response())
}
