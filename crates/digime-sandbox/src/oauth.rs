//! The OAuth calls of `/v1.7/`: the key set, `oauth/authorize`, `oauth/token`,
//! `oauth/token/reference` and `reference`. The pages their codes open are in
//! `onboard`.

use crate::checks::{ApiFailure, check_agent, check_redirect_uri, verify_bearer};
use crate::clouds::storage_not_found;
use crate::common::{
    ApiResult, CODE_TTL_MS, SESSION_TTL_MS, internal, json_body, jwks, server_token_at,
    still_remembered,
};
use crate::state::{
    PreAuthorization, ReferenceCode, ReferenceKind, ReferenceRecord, SessionRecord,
};
use crate::sync::parse_options;
use crate::tokens::{
    check_authorize_claims, check_pkce_claims, live_access_token, redeem_grant, token_answer,
    user_token,
};
use crate::{Shared, now_ms, random_id};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};

/// The OAuth routes of `/v1.7/`.
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1.7/jwks/oauth", get(jwks))
        .route("/v1.7/oauth/authorize", post(authorize))
        .route("/v1.7/oauth/token", post(token))
        .route("/v1.7/oauth/token/reference", post(token_reference))
        .route("/v1.7/reference", post(reference))
}

/// `actions` of a request body: absent, or an object whose `pull` (if any) is checked
/// as the options of a read session.
fn check_actions(body: &Value) -> Result<Option<Value>, ApiFailure> {
    match body.get("actions") {
        None => Ok(None),
        Some(actions @ Value::Object(m)) => {
            match m.get("pull") {
                None => {}
                Some(pull @ Value::Object(_)) => {
                    parse_options(pull, now_ms())?;
                }
                Some(_) => return Err(ApiFailure::bad_params("actions.pull must be an object")),
            }
            Ok(Some(actions.clone()))
        }
        Some(_) => Err(ApiFailure::bad_params("actions must be an object")),
    }
}

/// The session a code hands out: bound to the user, and readable, once they consent.
fn pending_session(client_id: String, now: u64) -> SessionRecord {
    SessionRecord {
        client_id,
        expires_ms: now + SESSION_TTL_MS,
        user_id: None,
        sync: None,
        exchange_token: None,
    }
}

/// The answer of `oauth/authorize` and `oauth/token/reference`: 201 with the code in a
/// server token, and the session it hands out.
fn code_answer(shared: &Shared, claims: Value, session_key: &str, now: u64) -> ApiResult {
    let token = server_token_at(shared, &shared.info.api, claims)?;
    let session = json!({"key": session_key, "expiry": now + SESSION_TTL_MS});
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"token": token, "session": session})),
    )
        .into_response())
}

async fn authorize(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let v = verify_bearer(&shared, &headers)?;
    let body = json_body(&body)?;
    check_agent(&shared, &body)?;
    let actions = check_actions(&body)?;
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
        st.preauths
            .retain(|_, p| still_remembered(p.expires_ms, now));
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
                actions,
            },
        );
        st.sessions.insert(
            session_key.clone(),
            pending_session(v.contract.client_id(), now),
        );
        shared.save(&st).map_err(internal)?;
    }
    code_answer(
        &shared,
        json!({"preauthorization_code": code}),
        &session_key,
        now,
    )
}

/// `_body`: the call has no body, but a client may send an empty (chunked) one; it is
/// read so that the connection stays usable for the next request (hyper closes a
/// keep-alive connection whose request body was left unread).
async fn token(State(shared): State<Shared>, headers: HeaderMap, _body: Bytes) -> ApiResult {
    let v = verify_bearer(&shared, &headers)?;
    let client_id = v.contract.client_id();
    let user_id = redeem_grant(&shared, &v, None)?;
    token_answer(&shared, &shared.info.api, &client_id, &user_id, |m| {
        json!({
            "access_token": {"value": m.access, "expires_on": m.access_exp},
            "refresh_token": {"value": m.refresh, "expires_on": m.refresh_exp},
            "sub": user_id,
            "consentid": m.consent_id,
            "identifier": {"id": format!("{user_id}-{client_id}")},
            "token_type": "Bearer",
        })
    })
}

/// `POST oauth/token/reference`: a code for one of the pages an authorized user is
/// sent to. With a PKCE challenge it is a user-reauth code, and the access token may
/// have expired (that is what reauthorization is for) but must be genuine; without
/// one it is an onboard or reauthorize-account code, and the access token must be
/// live (an expired one → 401, so that the SDK refreshes and retries).
async fn token_reference(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let v = verify_bearer(&shared, &headers)?;
    let body = json_body(&body)?;
    check_agent(&shared, &body)?;
    let actions = check_actions(&body)?;
    v.require_str("access_token")?;
    let redirect_uri = v.require_str("redirect_uri")?;
    check_redirect_uri(redirect_uri)?;
    let state = v.optional_str("state")?.map(str::to_owned);
    let pkce =
        v.claims.contains_key("code_challenge") || v.claims.contains_key("code_challenge_method");
    let code_challenge = if pkce {
        Some(check_pkce_claims(&v)?.to_owned())
    } else {
        None
    };
    // User-reauth is for a dead token: a genuine one will do there.
    let tok = user_token(&shared, &v, pkce)?;
    let client_id = v.contract.client_id();
    let code = random_id("REF_");
    let session_key = random_id("sess_");
    let now = now_ms();
    let expires_ms = now + CODE_TTL_MS;
    {
        let mut st = shared.lock();
        if !st.users.contains_key(&tok.user_id) {
            return Err(ApiFailure::invalid_token("access_token", false));
        }
        st.reference_codes
            .retain(|_, c| still_remembered(c.expires_ms, now));
        st.reference_codes.insert(
            code.clone(),
            ReferenceCode {
                client_id: client_id.clone(),
                user_id: tok.user_id.clone(),
                redirect_uri: redirect_uri.to_owned(),
                state,
                code_challenge,
                actions,
                session_key: session_key.clone(),
                expires_ms,
            },
        );
        st.sessions
            .insert(session_key.clone(), pending_session(client_id, now));
        shared.save(&st).map_err(internal)?;
    }
    let claims =
        json!({"reference_code": code, "token_type": "Bearer", "expires_on": expires_ms / 1000});
    code_answer(&shared, claims, &session_key, now)
}

/// How long a reference is kept.
const REFERENCE_TTL_MS: u64 = 86_400_000;

/// `POST reference` `{"type": "accountId"|"cloudId", "value": <non-empty string>}`, a
/// client-only bearer → 200 `{"id"}`: an opaque reference of the calling contract. A
/// `cloudId` must name a storage of the caller's application (else 404
/// `StorageNotFound`).
async fn reference(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let v = verify_bearer(&shared, &headers)?;
    let body = json_body(&body)?;
    let kind = match body.get("type").and_then(Value::as_str) {
        Some("accountId") => ReferenceKind::AccountId,
        Some("cloudId") => ReferenceKind::CloudId,
        _ => return Err(ApiFailure::bad_params("type must be accountId or cloudId")),
    };
    let value = body
        .get("value")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiFailure::bad_params("value must be a non-empty string"))?;
    let id = random_id("ref_");
    {
        let mut st = shared.lock();
        if kind == ReferenceKind::CloudId && st.cloud.of_app(value, &v.contract.app_id).is_none() {
            return Err(storage_not_found(value));
        }
        let now = now_ms();
        // A reference serves one reauthorize link, which lives CODE_TTL_MS; a day is ample.
        st.references
            .retain(|_, r| r.created_ms.saturating_add(REFERENCE_TTL_MS) > now);
        st.references.insert(
            id.clone(),
            ReferenceRecord {
                client_id: v.contract.client_id(),
                kind,
                value: value.to_owned(),
                created_ms: now,
            },
        );
        shared.save(&st).map_err(internal)?;
    }
    Ok(axum::Json(json!({ "id": id })).into_response())
}
