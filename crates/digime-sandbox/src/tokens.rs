//! Codes and tokens, shared by the OAuth calls of every API version, the user-scoped
//! calls and the control API: issuing a token pair, redeeming a grant, checking an
//! access token and the authorize claims.

use crate::checks::{ApiFailure, Verified, check_redirect_uri, verify_bearer};
use crate::common::CODE_TTL_MS;
use crate::common::{ApiResult, internal, server_token_at};
use crate::state::{AuthCode, IssuedToken, Persisted};
use crate::{Shared, now_ms, random_id};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};

/// How long an access token is remembered after the refresh token minted with it died:
/// it is still genuine, so a user-reauth request (`oauth/token/reference` with PKCE)
/// accepts it. Later it is forgotten, and is as unknown as a made-up one.
pub(crate) const EXPIRED_ACCESS_TOKEN_MEMORY_S: u64 = 30 * 86_400;

/// Looks up a genuine access token, live or expired (not yet forgotten); an unknown
/// one is the 401 `InvalidToken` "is invalid".
pub(crate) fn genuine_access_token(
    shared: &Shared,
    value: &str,
) -> Result<IssuedToken, ApiFailure> {
    let st = shared.lock();
    st.access_tokens
        .get(value)
        .cloned()
        .ok_or_else(|| ApiFailure::invalid_token("access_token", false))
}

/// Looks up a live access token; errors are the 401 that makes SDKs refresh.
pub(crate) fn live_access_token(shared: &Shared, value: &str) -> Result<IssuedToken, ApiFailure> {
    let t = genuine_access_token(shared, value)?;
    if t.expires_s * 1000 <= now_ms() {
        return Err(ApiFailure::invalid_token("access_token", true));
    }
    Ok(t)
}

/// A user-scoped call: a verified bearer whose `access_token` claim is a live access
/// token of the same contract.
pub(crate) fn user_call(
    shared: &Shared,
    headers: &HeaderMap,
) -> Result<(Verified, IssuedToken), ApiFailure> {
    let v = verify_bearer(shared, headers)?;
    let tok = user_token(shared, &v, false)?;
    Ok((v, tok))
}

/// The `access_token` claim of a verified bearer: an access token of the same
/// contract, live, or (`genuine_will_do`, for user-reauth) merely genuine.
pub(crate) fn user_token(
    shared: &Shared,
    v: &Verified,
    genuine_will_do: bool,
) -> Result<IssuedToken, ApiFailure> {
    let at = v.require_str("access_token")?;
    let tok = if genuine_will_do {
        genuine_access_token(shared, at)?
    } else {
        live_access_token(shared, at)?
    };
    if tok.client_id != v.contract.client_id() {
        return Err(ApiFailure::invalid_token("access_token", false));
    }
    Ok(tok)
}

/// The claims every `oauth/authorize` carries (v1.5 and v1.7): `response_type=code`,
/// `response_mode=query`, an S256 PKCE challenge and an acceptable `redirect_uri`.
/// Returns the challenge and the redirect URI.
pub(crate) fn check_authorize_claims(v: &Verified) -> Result<(&str, &str), ApiFailure> {
    for (claim, expected) in [("response_type", "code"), ("response_mode", "query")] {
        if v.str_claim(claim) != Some(expected) {
            return Err(ApiFailure::bad_params(&format!(
                "{claim} must be {expected}"
            )));
        }
    }
    let challenge = check_pkce_claims(v)?;
    let redirect_uri = v.require_str("redirect_uri")?;
    check_redirect_uri(redirect_uri)?;
    Ok((challenge, redirect_uri))
}

/// `code_challenge_method=S256` and a `code_challenge` that is a base64url SHA-256 (43
/// characters); the challenge.
pub(crate) fn check_pkce_claims(v: &Verified) -> Result<&str, ApiFailure> {
    if v.str_claim("code_challenge_method") != Some("S256") {
        return Err(ApiFailure::bad_params("code_challenge_method must be S256"));
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
    Ok(challenge)
}

/// Issues a single-use authorization code of `client_id` for `user_id`, exchanged
/// at `oauth/token` with the verifier of `code_challenge` (and, for a code of the
/// postbox era's native app, only with `legacy_redirect_uri`); forgets expired codes.
pub(crate) fn issue_auth_code(
    st: &mut Persisted,
    client_id: &str,
    user_id: &str,
    code_challenge: &str,
    legacy_redirect_uri: Option<String>,
    now: u64,
) -> String {
    let code = random_id("AUTH_");
    st.codes.retain(|_, c| c.expires_ms > now);
    st.codes.insert(
        code.clone(),
        AuthCode {
            client_id: client_id.to_owned(),
            user_id: user_id.to_owned(),
            code_challenge: code_challenge.to_owned(),
            expires_ms: now.saturating_add(CODE_TTL_MS),
            legacy_redirect_uri,
        },
    );
    code
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
    // Measured from when the pair's refresh token dies (at the latest), so that the
    // user-reauth a dead refresh token calls for finds its access token genuine.
    let memory = shared.config.refresh_token_ttl.as_secs() + EXPIRED_ACCESS_TOKEN_MEMORY_S;
    st.access_tokens
        .retain(|_, t| t.expires_s.saturating_add(memory) > now_s);
    Minted {
        access,
        access_exp,
        refresh,
        refresh_exp,
        consent_id,
    }
}

/// The answer of every `oauth/token`: mints a pair of `client_id` for `user_id`, saves
/// it, and answers 201 `{"token": JWS}` signed for the API base `base`, whose payload
/// `claims` makes from the pair (each API version has its own shape).
pub(crate) fn token_answer(
    shared: &Shared,
    base: &str,
    client_id: &str,
    user_id: &str,
    claims: impl FnOnce(&Minted) -> Value,
) -> ApiResult {
    let minted = {
        let mut st = shared.lock();
        let m = mint_tokens(shared, &mut st, client_id, user_id);
        shared.save(&st).map_err(internal)?;
        m
    };
    let token = server_token_at(shared, base, claims(&minted))?;
    Ok((StatusCode::CREATED, axum::Json(json!({ "token": token }))).into_response())
}

/// Redeems the grant of an `oauth/token` request (authorization code with PKCE, or
/// refresh token with rotation) and answers whose tokens to issue. `legacy_redirect`:
/// the `redirect_uri` claim of a v1.5 call, which only takes codes of the native app
/// made for that redirect URI (v1.7 takes only the onboard page's codes).
pub(crate) fn redeem_grant(
    shared: &Shared,
    v: &Verified,
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
