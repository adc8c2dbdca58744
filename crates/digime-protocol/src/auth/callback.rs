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
        check_state(self.state.as_deref(), expected)?;
        Ok(self)
    }
}

/// The echoed state must be the stored one (compared in constant time). An empty
/// expected state verifies nothing, and so never matches.
pub(crate) fn check_state(echoed: Option<&str>, expected: &str) -> Result<(), CallbackError> {
    if expected.is_empty() {
        return Err(CallbackError::StateMismatch);
    }
    match echoed {
        Some(s) if digime_crypto::constant_time_eq(s.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(CallbackError::StateMismatch),
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

/// The parameters of a successful return from an onboard page.
struct PageReturn {
    code: Option<String>,
    state: Option<String>,
    account_reference: Option<String>,
    extra: Vec<(String, String)>,
}

/// Sorts out the redirect of an onboard page: `success=true` gives its parameters
/// (`code` among them when the page `returns_code`, else it is an extra one);
/// `success=false` is [`CallbackError::Failed`] with `errorCode` and `state`.
fn page_return(input: &str, returns_code: bool) -> Result<PageReturn, CallbackError> {
    let mut success = None;
    let mut error_code = None;
    let mut page = PageReturn {
        code: None,
        state: None,
        account_reference: None,
        extra: Vec::new(),
    };
    for (k, v) in callback_query_pairs(input)? {
        match &*k {
            "success" => success = Some(v),
            "code" if returns_code => page.code = Some(v),
            "state" => page.state = Some(v),
            "errorCode" => error_code = Some(v),
            "accountReference" => page.account_reference = Some(v),
            _ => page.extra.push((k, v)),
        }
    }
    match success.as_deref() {
        Some("true") => Ok(page),
        Some("false") => Err(CallbackError::Failed {
            code: CallbackErrorCode::parse(error_code.as_deref().unwrap_or("")),
            state: page.state,
        }),
        Some(other) => Err(CallbackError::Malformed(format!("success={other:?}"))),
        None => Err(CallbackError::Malformed("no success parameter".into())),
    }
}

/// Parses the redirect back from the `authorize` or `user-reauth` page: a full URL, a
/// path with a query, or a bare query string. Repeated parameters are refused (they
/// make the redirect ambiguous).
pub fn parse_callback(input: &str) -> Result<AuthorizationCallback, CallbackError> {
    let page = page_return(input, true)?;
    let code = (page.code)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| CallbackError::Malformed("success without a code".into()))?;
    Ok(AuthorizationCallback {
        code: AuthorizationCode::new(code),
        state: page.state,
        account_reference: page.account_reference,
        extra: page.extra,
    })
}

/// A successful return from the `onboard` page (a service was added) or the
/// `reauthorize` page (an account was repaired). There is no code: the user's token
/// stays valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnboardCallback {
    /// The echoed state: present when the URL was asked for with one (the `onboard`
    /// page; the `reauthorize` page has none).
    pub state: Option<String>,
    /// `accountReference`, when the service sent one.
    pub account_reference: Option<String>,
    /// Every other query parameter, in order.
    pub extra: Vec<(String, String)>,
}

impl OnboardCallback {
    /// Checks the echoed state against the one the app stored (constant time).
    pub fn verify_state(self, expected: &str) -> Result<Self, CallbackError> {
        check_state(self.state.as_deref(), expected)?;
        Ok(self)
    }
}

/// Parses the redirect back from the `onboard` or `reauthorize` page:
/// `success=true[&state][&accountReference]`, or `success=false&errorCode=…`
/// ([`CallbackError::Failed`]). Input forms and repeated parameters as
/// [`parse_callback`].
pub fn parse_onboard_callback(input: &str) -> Result<OnboardCallback, CallbackError> {
    let page = page_return(input, false)?;
    Ok(OnboardCallback {
        state: page.state,
        account_reference: page.account_reference,
        extra: page.extra,
    })
}

/// A successful return from the revoke page (`result=success`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeCallback {
    /// Every other query parameter (the app's own), in order.
    pub extra: Vec<(String, String)>,
}

/// Parses the redirect back from the revoke page: `result=success`, or
/// `result=failed[&error_message=…]` ([`CallbackError::Failed`], whose code is the
/// `error_message`, from the same set as `errorCode`; it has no state).
pub fn parse_revoke_callback(input: &str) -> Result<RevokeCallback, CallbackError> {
    let mut result = None;
    let mut message = None;
    let mut extra = Vec::new();
    for (k, v) in callback_query_pairs(input)? {
        match &*k {
            "result" => result = Some(v),
            "error_message" => message = Some(v),
            _ => extra.push((k, v)),
        }
    }
    match result.as_deref() {
        Some("success") => Ok(RevokeCallback { extra }),
        Some("failed") => Err(CallbackError::Failed {
            code: CallbackErrorCode::parse(message.as_deref().unwrap_or("")),
            state: None,
        }),
        Some(other) => Err(CallbackError::Malformed(format!("result={other:?}"))),
        None => Err(CallbackError::Malformed("no result parameter".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onboard_and_reauthorize_pages_return_without_a_code() {
        let cb = parse_onboard_callback(
            "https://app.example/added?userId=7&success=true&state=s1&accountReference=r9",
        )
        .unwrap();
        assert_eq!(cb.state.as_deref(), Some("s1"));
        assert_eq!(cb.account_reference.as_deref(), Some("r9"));
        assert_eq!(cb.extra, vec![("userId".to_string(), "7".to_string())]);
        assert!(cb.clone().verify_state("s1").is_ok());
        assert_eq!(cb.verify_state("s2"), Err(CallbackError::StateMismatch));
        let reauthorized = parse_onboard_callback("success=true").unwrap();
        assert_eq!(reauthorized.state, None);
        assert_eq!(
            parse_onboard_callback("/r?success=false&errorCode=ONBOARD_ERROR&state=s"),
            Err(CallbackError::Failed {
                code: CallbackErrorCode::OnboardError,
                state: Some("s".into())
            })
        );
        for bad in ["https://x/cb", "success=yes", "success=true&success=true"] {
            assert!(
                matches!(
                    parse_onboard_callback(bad),
                    Err(CallbackError::Malformed(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_revoke_page_returns_a_result() {
        let ok = parse_revoke_callback("https://app.example/revoked?result=success&u=1").unwrap();
        assert_eq!(ok.extra, vec![("u".to_string(), "1".to_string())]);
        assert_eq!(
            parse_revoke_callback("result=failed&error_message=USER_CANCEL"),
            Err(CallbackError::Failed {
                code: CallbackErrorCode::UserCancel,
                state: None
            })
        );
        assert_eq!(
            parse_revoke_callback("result=failed"),
            Err(CallbackError::Failed {
                code: CallbackErrorCode::Other(String::new()),
                state: None
            })
        );
        for bad in ["result=ok", "success=true", "result=success&result=failed"] {
            assert!(
                matches!(parse_revoke_callback(bad), Err(CallbackError::Malformed(_))),
                "{bad}"
            );
        }
    }
}
