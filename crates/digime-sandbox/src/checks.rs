//! Strict request checks, done as the server: the bearer JWT against the registered
//! contract key, nonce and timestamp, the SDK agent, and the error shapes.

use crate::state::RegisteredContract;
use crate::{Shared, now_ms};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use digime_crypto::jws::Compact;
use serde_json::{Map, Value, json};

/// How far a request `timestamp` may be from the server's clock.
pub const TIMESTAMP_WINDOW_MS: u64 = 5 * 60 * 1000;
/// How long nonces are remembered (longer than the window, so a replay inside it is seen).
pub const NONCE_MEMORY_MS: u64 = 2 * TIMESTAMP_WINDOW_MS;

/// An error answer in the standard shape, with the X-Error-* headers.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiFailure {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiFailure {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: message.into(),
        }
    }
    pub fn validation() -> Self {
        Self::new(406, "ValidationErrors", "Parameter validation errors")
    }
    pub fn bad_params(detail: &str) -> Self {
        // The real message is fixed; the detail helps people using the sandbox.
        Self::new(
            400,
            "ValidationErrors",
            format!("Parameter validation errors: {detail}"),
        )
    }
    pub fn insufficient_scope() -> Self {
        Self::new(
            403,
            "InsufficientScope",
            "The request requires higher privileges than provided by the access token",
        )
    }
    pub fn invalid_token(which: &str, expired: bool) -> Self {
        let what = if expired { "expired" } else { "invalid" };
        Self::new(
            401,
            "InvalidToken",
            format!("The token ({which}) is {what}"),
        )
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let reference = digime_crypto::random::alphanumeric(32).unwrap_or_default();
        let body =
            json!({"error": {"code": self.code, "message": self.message, "reference": reference}});
        let mut headers = HeaderMap::new();
        let safe = |s: &str| {
            HeaderValue::from_str(&s.replace(|c: char| !c.is_ascii() || c.is_ascii_control(), " "))
                .unwrap_or(HeaderValue::from_static("-"))
        };
        headers.insert("x-error-code", safe(self.code));
        headers.insert("x-error-message", safe(&self.message));
        headers.insert("x-error-reference", safe(&reference));
        (self.status, headers, axum::Json(body)).into_response()
    }
}

/// A verified request JWT.
pub struct Verified {
    pub contract: RegisteredContract,
    pub claims: Map<String, Value>,
}

impl Verified {
    pub fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
    pub fn require_str(&self, name: &str) -> Result<&str, ApiFailure> {
        self.str_claim(name)
            .ok_or_else(|| ApiFailure::bad_params(&format!("claim {name} is required")))
    }
    /// An optional claim that, when present, must be a string.
    pub fn optional_str(&self, name: &str) -> Result<Option<&str>, ApiFailure> {
        match self.claims.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiFailure::bad_params(&format!("{name} must be a string"))),
        }
    }
}

/// Verifies `Authorization: Bearer <PS512 JWS>` against the key of the `client_id`
/// claim, then the nonce (once only) and the timestamp window.
pub fn verify_bearer(shared: &Shared, headers: &HeaderMap) -> Result<Verified, ApiFailure> {
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(ApiFailure::validation)?;
    let (scheme, token) = auth.split_once(' ').ok_or_else(ApiFailure::validation)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiFailure::validation());
    }
    let (contract, claims) = verify_jws(shared, token.trim(), None)?;
    let nonce = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
    if nonce.len() != 32 || !nonce.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ApiFailure::validation());
    }
    let Some(ts) = claims.get("timestamp").and_then(Value::as_u64) else {
        return Err(ApiFailure::validation());
    };
    let now = now_ms();
    if ts.abs_diff(now) > TIMESTAMP_WINDOW_MS {
        return Err(ApiFailure::new(
            406,
            "InvalidRequest",
            format!("The timestamp provided in JWT payload ({ts}) is outside the accepted window"),
        ));
    }
    {
        let mut st = shared.lock();
        st.nonces
            .retain(|_, seen| now.saturating_sub(*seen) < NONCE_MEMORY_MS);
        if st.nonces.contains_key(nonce) {
            return Err(ApiFailure::new(
                406,
                "InvalidRequest",
                format!("The nonce provided in JWT payload ({nonce}) has already been used"),
            ));
        }
        st.nonces.insert(nonce.to_owned(), now);
    }
    Ok(Verified { contract, claims })
}

/// Verifies a compact JWS whose header is exactly PS512/JWT. With `contract` given the
/// key is that contract's; otherwise it is looked up by the `client_id` claim (the
/// whole string, never split).
pub fn verify_jws(
    shared: &Shared,
    token: &str,
    contract: Option<&RegisteredContract>,
) -> Result<(RegisteredContract, Map<String, Value>), ApiFailure> {
    let compact = Compact::parse(token).map_err(|_| ApiFailure::validation())?;
    let header: Value = compact
        .header()
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or_else(ApiFailure::validation)?;
    if header.get("alg").and_then(Value::as_str) != Some("PS512")
        || header.get("typ").and_then(Value::as_str) != Some("JWT")
    {
        return Err(ApiFailure::validation());
    }
    let Some(Value::Object(claims)) = compact
        .payload()
        .ok()
        .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
    else {
        return Err(ApiFailure::validation());
    };
    let contract = match contract {
        Some(c) => c.clone(),
        None => {
            let client_id = claims
                .get("client_id")
                .and_then(Value::as_str)
                .ok_or_else(ApiFailure::validation)?;
            shared.contract(client_id).ok_or_else(|| {
                ApiFailure::new(
                    400,
                    "InvalidClient",
                    format!("The client_id ({client_id}) is invalid"),
                )
            })?
        }
    };
    compact
        .verify(&contract.key)
        .map_err(|_| ApiFailure::validation())?;
    Ok((contract, claims))
}

/// Checks `agent.sdk` in a JSON request body, as the server does.
pub fn check_agent(shared: &Shared, body: &Value) -> Result<(), ApiFailure> {
    let sdk = body.get("agent").and_then(|a| a.get("sdk"));
    let name = sdk.and_then(|s| s.get("name")).and_then(Value::as_str);
    let version = sdk.and_then(|s| s.get("version")).and_then(Value::as_str);
    let (Some(name), Some(version)) = (name, version) else {
        return Err(ApiFailure::bad_params(
            "agent.sdk.name and agent.sdk.version are required",
        ));
    };
    if !shared.config.agents.iter().any(|a| a == name) {
        return Err(ApiFailure::new(
            400,
            "SDKInvalid",
            format!("The SDK is invalid: {name}"),
        ));
    }
    // Node.js SDKs before the SaaS flow (v5) cannot speak this API.
    let major: Option<u64> = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok());
    if matches!(name, "nodejs" | "js") && major.is_none_or(|m| m < 5) {
        return Err(ApiFailure::new(
            403,
            "SDKVersionInvalid",
            "This SDK version is no longer supported.",
        ));
    }
    Ok(())
}

/// Checks a redirect URI: absolute, no fragment, https, or http on a loopback host.
pub fn check_redirect_uri(uri: &str) -> Result<url::Url, ApiFailure> {
    let invalid = || {
        ApiFailure::new(
            404,
            "InvalidRedirectUri",
            format!("The redirect_uri ({uri}) is invalid"),
        )
    };
    let url = url::Url::parse(uri).map_err(|_| invalid())?;
    if url.fragment().is_some() {
        return Err(invalid());
    }
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(invalid()),
    }
}
