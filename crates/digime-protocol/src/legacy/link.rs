//! Postbox-creation deep links (docs/protocol.md, "Postbox era") and the ongoing postbox's
//! pre-authorization and flat tokens (docs/protocol.md, "Postbox era").

use crate::config::{Config, SessionKey};
use crate::error::{Error, TransportError};
use crate::flow::{AuthorizeFlow, Flow, Step};
use crate::token::{Token, User, UserAccessToken};
use digime_crypto::CodeVerifier;
use http::Response;
use serde_json::{Map, Value};
use std::time::SystemTime;

/// The deep link that opens the native digi.me app to create a postbox.
pub const CREATE_POSTBOX_LINK: &str = "digime://postbox/create";

fn deep_link(pairs: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    format!("{CREATE_POSTBOX_LINK}?{}", q.finish())
}

/// The deep link of a one-off postbox, and the state its callback must echo.
#[derive(Clone)]
pub struct OncePostboxUrl {
    /// `digime://postbox/create?callbackUrl=…`: open it on the user's device.
    pub url: String,
    /// Keep it with the session, for [`super::parse_postbox_callback`]: the callback
    /// URL in the link carries it, and a callback without it is forged.
    pub state: String,
}

impl std::fmt::Debug for OncePostboxUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The link holds the session key; the state is a CSRF token.
        f.write_str("OncePostboxUrl { url: [redacted], state: [redacted] }")
    }
}

/// The one-off link, SDK v4 form: `callbackUrl`, `sessionKey`, `appId`, `sdkVersion`,
/// form-urlencoded in that order. The callback URL gets a fresh `state` parameter
/// (docs/protocol.md, "Postbox era"): the native app keeps the callback URL's query, so
/// the callback echoes it, and a forged callback cannot.
pub(crate) fn once_postbox_url(
    config: &Config,
    session_key: &SessionKey,
    callback_url: &str,
) -> Result<OncePostboxUrl, Error> {
    let mut callback = url::Url::parse(callback_url)
        .map_err(|e| Error::InvalidInput(format!("callback URL is not an absolute URL: {e}")))?;
    if callback.query_pairs().any(|(k, _)| k == "state") {
        return Err(Error::InvalidInput(
            "the callback URL has a state parameter: the SDK adds its own".into(),
        ));
    }
    let state = digime_crypto::random::nonce()?;
    callback.query_pairs_mut().append_pair("state", &state);
    let url = deep_link(&[
        ("callbackUrl", callback.as_str()),
        ("sessionKey", session_key.as_str()),
        ("appId", config.application_id().as_str()),
        ("sdkVersion", &config.agent.version),
    ]);
    Ok(OncePostboxUrl { url, state })
}

/// The ongoing link: `preauthorizationCode` first, then as the one-off link with the
/// `redirectUri` as `callbackUrl`.
pub(crate) fn ongoing_postbox_url(
    config: &Config,
    preauthorization_code: &str,
    redirect_uri: &str,
    session_key: &SessionKey,
) -> String {
    deep_link(&[
        ("preauthorizationCode", preauthorization_code),
        ("callbackUrl", redirect_uri),
        ("sessionKey", session_key.as_str()),
        ("appId", config.application_id().as_str()),
        ("sdkVersion", &config.agent.version),
    ])
}

/// Checks a callback or redirect URI: an absolute URL (any scheme: apps use their own).
pub(crate) fn check_url(what: &str, url: &str) -> Result<(), Error> {
    url::Url::parse(url)
        .map(drop)
        // The URL itself is left out: callbacks may carry the app's own secrets.
        .map_err(|e| Error::InvalidInput(format!("{what} is not an absolute URL: {e}")))
}

/// The deep link of an ongoing postbox, and the PKCE verifier to keep until the code
/// comes back.
#[derive(Debug, Clone)]
pub struct OngoingPostboxUrl {
    /// `digime://postbox/create?preauthorizationCode=…`: open it on the user's device.
    pub url: String,
    /// Keep it server-side, for [`super::Legacy::exchange_code_for_token_ongoing`].
    pub code_verifier: CodeVerifier,
}

/// The pre-authorization of an ongoing postbox (SDK v4): `POST {base}oauth/authorize`
/// with no body and a fresh PKCE pair per attempt, the server token verified against
/// the pinned key set (the same machinery as today's authorization), then the deep link.
#[derive(Debug)]
pub struct CreatePostboxOngoing {
    inner: AuthorizeFlow,
}

impl CreatePostboxOngoing {
    pub(crate) fn new(inner: AuthorizeFlow) -> Self {
        CreatePostboxOngoing { inner }
    }
}

impl Flow for CreatePostboxOngoing {
    type Output = OngoingPostboxUrl;

    fn poll(&mut self, now: SystemTime) -> Step<OngoingPostboxUrl> {
        match self.inner.poll(now) {
            Step::Send(r) => Step::Send(r),
            Step::Receive => Step::Receive,
            Step::Sleep(d) => Step::Sleep(d),
            Step::Event(e) => Step::Event(e),
            Step::Done(r) => Step::Done(r.map(|a| OngoingPostboxUrl {
                url: a.url,
                code_verifier: a.code_verifier,
            })),
        }
    }

    fn handle_response(&mut self, response: Response<Vec<u8>>) {
        self.inner.handle_response(response);
    }

    fn handle_transport_error(&mut self, error: TransportError) {
        self.inner.handle_transport_error(error);
    }
}

/// The claims SDK v4 adds to its `oauth/token` requests: `redirect_uri`.
pub(crate) fn flat_token_claims(redirect_uri: &str) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("redirect_uri".into(), redirect_uri.into());
    claims
}

/// Maps SDK v4's flat token payload `{"access_token":"…","refresh_token":"…",
/// "expires_on":N}` (docs/protocol.md, "Postbox era") to a [`UserAccessToken`] whose two expiries are
/// both `expires_on`; no user id, no consent id.
pub fn token_from_flat_claims(claims: &Map<String, Value>) -> Result<UserAccessToken, Error> {
    let decode = |detail: String| Error::Decode {
        context: "token",
        detail,
    };
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| decode(format!("no {name} string")))
    };
    let access = text("access_token")?;
    let refresh = text("refresh_token")?;
    let expiry = claims
        .get("expires_on")
        .and_then(Value::as_u64)
        .ok_or_else(|| decode("no numeric expires_on".into()))?;
    Ok(UserAccessToken {
        access_token: Token {
            value: crate::token::bounded_token_value("access_token", access)?,
            expiry,
        },
        refresh_token: Token {
            value: crate::token::bounded_token_value("refresh_token", refresh)?,
            expiry,
        },
        user: User::default(),
        consent_id: None,
    })
}
