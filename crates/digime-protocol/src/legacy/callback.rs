//! The callbacks that end postbox creation, by era (docs/protocol.md, "Postbox era").

use super::push::Postbox;
use crate::auth::{
    AuthorizationCallback, AuthorizationCode, callback_query_pairs, check_state, parse_callback,
};
use crate::error::{CallbackError, CallbackErrorCode, Error};
use digime_crypto::PublicKey;
use std::fmt;

/// A postbox id, as the callback of postbox creation carries it.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct PostboxId(String);

impl PostboxId {
    /// Wraps a non-empty id.
    pub fn new(id: impl Into<String>) -> Result<Self, Error> {
        let id = id.into();
        if id.is_empty() {
            return Err(Error::InvalidInput("PostboxId cannot be empty".into()));
        }
        Ok(PostboxId(id))
    }

    /// The id as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PostboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PostboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostboxId({:?})", self.0)
    }
}

/// The `result` parameter of a deep-link-era callback (SDK v0.5–v4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostboxResult {
    /// `SUCCESS` (SDK v1+, `resultVersion=2`).
    Success,
    /// `POSTBOX_READY` (SDK v0.5; some app versions kept sending it).
    PostboxReady,
    /// `ERROR`.
    Error,
    /// `CANCEL`: the user declined.
    Cancel,
    /// Any other value, as sent.
    Other(String),
}

impl PostboxResult {
    /// Parses the wire value.
    pub fn parse(s: &str) -> Self {
        match s {
            "SUCCESS" => Self::Success,
            "POSTBOX_READY" => Self::PostboxReady,
            "ERROR" => Self::Error,
            "CANCEL" => Self::Cancel,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The wire value.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Success => "SUCCESS",
            Self::PostboxReady => "POSTBOX_READY",
            Self::Error => "ERROR",
            Self::Cancel => "CANCEL",
            Self::Other(s) => s,
        }
    }

    /// Whether the postbox was created (`SUCCESS` or `POSTBOX_READY`).
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Success | Self::PostboxReady)
    }
}

/// A successful callback of a one-off postbox creation (SDK v0.5–v4,
/// `digime://postbox/create` without a preauthorization code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostboxCallback {
    /// `SUCCESS` or `POSTBOX_READY`.
    pub result: PostboxResult,
    /// The new postbox.
    pub postbox: Postbox,
    /// Every other parameter (the app's own, e.g. its `sessionKey`), in order.
    pub extra: Vec<(String, String)>,
}

/// A successful callback of an ongoing postbox creation (SDK v4): the postbox and the
/// authorization code to exchange with [`super::Legacy::exchange_code_for_token_ongoing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OngoingPostboxCallback {
    /// `SUCCESS` or `POSTBOX_READY`.
    pub result: PostboxResult,
    /// The new postbox.
    pub postbox: Postbox,
    /// The code, the echoed `state` and every other parameter.
    pub authorization: AuthorizationCallback,
}

impl OngoingPostboxCallback {
    /// Checks the echoed state against the one given to the pre-authorization
    /// (constant time).
    pub fn verify_state(mut self, expected: &str) -> Result<Self, CallbackError> {
        self.authorization = self.authorization.verify_state(expected)?;
        Ok(self)
    }

    /// The authorization code.
    pub fn code(&self) -> &AuthorizationCode {
        &self.authorization.code
    }
}

/// A successful callback of the web authorization of a write contract (SDK v5–v8):
/// `success=true&code&state&postboxId&publicKey`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaasPostboxCallback {
    /// The postbox created with the consent.
    pub postbox: Postbox,
    /// The code, the echoed state and every other parameter (without `postboxId` and
    /// `publicKey`).
    pub authorization: AuthorizationCallback,
}

impl SaasPostboxCallback {
    /// Checks the echoed state against the one the app stored (constant time).
    pub fn verify_state(mut self, expected: &str) -> Result<Self, CallbackError> {
        self.authorization = self.authorization.verify_state(expected)?;
        Ok(self)
    }

    /// The authorization code.
    pub fn code(&self) -> &AuthorizationCode {
        &self.authorization.code
    }
}

fn malformed(m: impl Into<String>) -> CallbackError {
    CallbackError::Malformed(m.into())
}

/// Builds the postbox from the `postboxId` and `publicKey` parameters.
fn postbox_of(id: Option<String>, key: Option<String>) -> Result<Postbox, CallbackError> {
    let id = id
        .filter(|i| !i.is_empty())
        .ok_or_else(|| malformed("no postboxId"))?;
    let key = key
        .filter(|k| !k.is_empty())
        .ok_or_else(|| malformed("no publicKey"))?;
    let public_key =
        PublicKey::from_postbox_key(&key).map_err(|e| malformed(format!("publicKey: {e}")))?;
    Ok(Postbox {
        id: PostboxId(id),
        public_key,
    })
}

struct DeepLinkCallback {
    result: PostboxResult,
    postbox: Postbox,
    code: Option<String>,
    state: Option<String>,
    extra: Vec<(String, String)>,
}

/// `expected`: the state the callback must echo, checked before anything else it says
/// (a forged `CANCEL` is as false as a forged `SUCCESS`).
fn parse_deep_link_callback(
    input: &str,
    expected: Option<&str>,
) -> Result<DeepLinkCallback, CallbackError> {
    let (mut result, mut id, mut key, mut code, mut state) = (None, None, None, None, None);
    let mut extra = Vec::new();
    for (k, v) in callback_query_pairs(input)? {
        match &*k {
            "result" => result = Some(v),
            "postboxId" => id = Some(v),
            "publicKey" => key = Some(v),
            "code" => code = Some(v),
            "state" => state = Some(v),
            _ => extra.push((k, v)),
        }
    }
    if let Some(expected) = expected {
        check_state(state.as_deref(), expected)?;
    }
    let result = PostboxResult::parse(
        result
            .as_deref()
            .ok_or_else(|| malformed("no result parameter"))?,
    );
    if !result.is_success() {
        return Err(CallbackError::Failed {
            code: CallbackErrorCode::Other(result.as_str().to_owned()),
            state,
        });
    }
    Ok(DeepLinkCallback {
        result,
        postbox: postbox_of(id, key)?,
        code,
        state,
        extra,
    })
}

/// Parses the callback of a one-off postbox creation (SDK v0.5–v4):
/// `<callback>?state=…&result=SUCCESS|POSTBOX_READY&postboxId=…&publicKey=…` (a full
/// URL, a path with a query, or a bare query), whose `state` must be
/// `expected_state`, the [`super::OncePostboxUrl::state`] of its link (compared in
/// constant time; anything else is [`CallbackError::StateMismatch`], checked first):
/// without it, anyone could send the app a postbox under a key of their own, and the
/// app would encrypt the user's file to it. `result=ERROR`, `CANCEL` or any other
/// value is [`CallbackError::Failed`] with [`CallbackErrorCode::Other`] holding the
/// value (type it with [`PostboxResult::parse`]). Repeated parameters are refused. A
/// `code`, if present, lands in `extra`.
pub fn parse_postbox_callback(
    input: &str,
    expected_state: &str,
) -> Result<PostboxCallback, CallbackError> {
    let cb = parse_deep_link_callback(input, Some(expected_state))?;
    let mut extra = cb.extra;
    if let Some(c) = cb.code {
        extra.push(("code".into(), c));
    }
    Ok(PostboxCallback {
        result: cb.result,
        postbox: cb.postbox,
        extra,
    })
}

/// Parses the callback of an ongoing postbox creation (SDK v4):
/// `<redirectUri>?result=SUCCESS&postboxId=…&publicKey=…&code=…&state=…`. As
/// [`parse_postbox_callback`], and the `code` is required. Check the state with
/// [`OngoingPostboxCallback::verify_state`] when the pre-authorization had one.
pub fn parse_ongoing_postbox_callback(
    input: &str,
) -> Result<OngoingPostboxCallback, CallbackError> {
    let cb = parse_deep_link_callback(input, None)?;
    let code = cb
        .code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| malformed("success without a code"))?;
    Ok(OngoingPostboxCallback {
        result: cb.result,
        postbox: cb.postbox,
        authorization: AuthorizationCallback {
            code: AuthorizationCode::new(code),
            state: cb.state,
            account_reference: None,
            extra: cb.extra,
        },
    })
}

/// Parses the redirect back from the web authorization of a write contract (SDK
/// v5–v8): `success=true&code&state&postboxId&publicKey`, or `success=false&errorCode`
/// ([`CallbackError::Failed`]). The same parser as today's [`parse_callback`], with the
/// postbox taken out of its `extra` parameters; a success without a postbox is
/// malformed.
pub fn parse_saas_postbox_callback(input: &str) -> Result<SaasPostboxCallback, CallbackError> {
    let mut authorization = parse_callback(input)?;
    let (mut id, mut key) = (None, None);
    authorization.extra.retain(|(k, v)| match k.as_str() {
        "postboxId" => {
            id = Some(v.clone());
            false
        }
        "publicKey" => {
            key = Some(v.clone());
            false
        }
        _ => true,
    });
    Ok(SaasPostboxCallback {
        postbox: postbox_of(id, key)?,
        authorization,
    })
}
