//! The OAuth calls of `/v1.7/` and the onboard pages: the key set, `oauth/authorize`,
//! `oauth/token`, and the consent page with its decision.

use crate::checks::{ApiFailure, check_agent, verify_bearer};
use crate::common::{
    ApiResult, CODE_TTL_MS, SESSION_TTL_MS, html_escape, internal, json_body, jwks, postbox_key,
    saas_postbox, saas_postbox_of, server_token_at,
};
use crate::state::{AuthCode, PreAuthorization, SessionRecord, UserRecord};
use crate::sync::{SessionOptions, start_sync};
use crate::tokens::{check_authorize_claims, live_access_token, redeem_grant, token_answer};
use crate::{ConsentMode, Shared, now_ms, random_id};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

/// The OAuth routes of `/v1.7/` and the onboard pages.
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1.7/jwks/oauth", get(jwks))
        .route("/v1.7/oauth/authorize", post(authorize))
        .route("/v1.7/oauth/token", post(token))
        .route("/apps/saas/authorize", get(onboard_page))
        .route("/apps/saas/authorize/decision", post(onboard_decision))
}

async fn authorize(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> ApiResult {
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
    let token = server_token_at(
        &shared,
        &shared.info.api,
        json!({"preauthorization_code": code}),
    )?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"token": token, "session": {"key": session_key, "expiry": now + SESSION_TTL_MS}})),
    )
        .into_response())
}

#[derive(Deserialize)]
struct OnboardQuery {
    code: Option<String>,
    #[serde(rename = "sourceType")]
    source_type: Option<String>,
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
            .is_none_or(|u| saas_postbox_of(&st, u, &pre.client_id).is_none())
}

/// Consumes the preauthorization and redirects to the app with the result. Consent to a
/// contract that may write also gives the user a postbox for it (one per user and
/// contract, reused), whose id and public key follow the other success parameters
/// (as the real consent does for a write contract).
async fn decide(shared: &Shared, code: &str, allow: bool) -> Response {
    // The postbox key pair is made before the state is locked (it takes a while).
    let mut new_key = None;
    if allow && needs_postbox_key(shared, code) {
        match postbox_key().await {
            Ok(k) => new_key = Some(k),
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
            let plan = start_sync(
                shared,
                &mut st,
                &settings,
                &user_id,
                SessionOptions::default(),
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
            let Some((id, public_key)) =
                saas_postbox(&mut st, &pre.client_id, &user_id, new_key.take(), now)
            else {
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
    // 302, as the real onboard pages answer.
    (
        StatusCode::FOUND,
        [(axum::http::header::LOCATION, target.to_string())],
    )
        .into_response()
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
