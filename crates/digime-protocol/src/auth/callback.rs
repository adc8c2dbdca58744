//! The redirect back to the app after authorization (`docs/protocol.md`, "Callback").

use crate::error::{CallbackError, CallbackErrorCode};
use digime_crypto::SecretString;
use std::fmt;

/// An authorization code from the callback.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorizationCode(SecretString);

impl AuthorizationCode {
    /// Wraps a code.
    pub fn new(code: impl Into<String>) -> Self {
        AuthorizationCode(SecretString::new(code))
    }
    /// The code.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

impl fmt::Debug for AuthorizationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthorizationCode([redacted])")
    }
}

/// A successful authorization callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationCallback {
    /// The code to exchange.
    pub code: AuthorizationCode,
    /// The echoed state.
    pub state: Option<String>,
    /// `accountReference`, when the service sent one.
    pub account_reference: Option<String>,
    /// Every other query parameter (the app's own, legacy `postboxId`, …), in order.
    pub extra: Vec<(String, String)>,
}

impl AuthorizationCallback {
    /// Checks the echoed state against the one the app stored (constant time).
    pub fn verify_state(self, expected: &str) -> Result<Self, CallbackError> {
        match &self.state {
            Some(s) if digime_crypto::constant_time_eq(s.as_bytes(), expected.as_bytes()) => {
                Ok(self)
            }
            _ => Err(CallbackError::StateMismatch),
        }
    }
}

/// The decoded query parameters of a callback (a full URL, a path with a query, or a
/// bare query string), in order; a repeated parameter is refused.
pub(crate) fn callback_query_pairs(input: &str) -> Result<Vec<(String, String)>, CallbackError> {
    let query = match input.find('?') {
        Some(i) => &input[i + 1..],
        None if input.contains("://") => "",
        None => input,
    };
    let query = query.split('#').next().unwrap_or("");
    let mut seen = std::collections::HashSet::new();
    let mut pairs = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if !seen.insert(k.to_string()) {
            return Err(CallbackError::Malformed(format!(
                "parameter {k:?} is repeated"
            )));
        }
        pairs.push((k.into_owned(), v.into_owned()));
    }
    Ok(pairs)
}

/// Parses the redirect back from the onboard page: a full URL, a path with a query,
/// or a bare query string. Repeated parameters are refused (they make the redirect
/// ambiguous).
pub fn parse_callback(input: &str) -> Result<AuthorizationCallback, CallbackError> {
    let mut success = None;
    let mut code = None;
    let mut state = None;
    let mut error_code = None;
    let mut account_reference = None;
    let mut extra = Vec::new();
    for (k, v) in callback_query_pairs(input)? {
        match &*k {
            "success" => success = Some(v),
            "code" => code = Some(v),
            "state" => state = Some(v),
            "errorCode" => error_code = Some(v),
            "accountReference" => account_reference = Some(v),
            _ => extra.push((k, v)),
        }
    }
    match success.as_deref() {
        Some("true") => {
            let code = code
                .filter(|c| !c.is_empty())
                .ok_or_else(|| CallbackError::Malformed("success without a code".into()))?;
            Ok(AuthorizationCallback {
                code: AuthorizationCode::new(code),
                state,
                account_reference,
                extra,
            })
        }
        Some("false") => Err(CallbackError::Failed {
            code: CallbackErrorCode::parse(error_code.as_deref().unwrap_or("")),
            state,
        }),
        Some(other) => Err(CallbackError::Malformed(format!("success={other:?}"))),
        None => Err(CallbackError::Malformed("no success parameter".into())),
    }
}
