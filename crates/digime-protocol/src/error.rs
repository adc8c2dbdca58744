//! The error model (docs/protocol.md, "Errors"), as one typed enum.

use crate::token::UserAccessToken;
use digime_crypto::CryptoError;
use std::fmt;
use std::time::Duration;
use thiserror::Error;

/// Everything that can go wrong in an SDK operation.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller's input was rejected before any request was sent.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The server answered with a recognised error body.
    #[error("{0}")]
    Api(ApiError),
    /// The refresh token is invalid or expired: the user must authorize again
    /// (`getReauthorizeUrl` or a fresh authorization).
    #[error("reauthorization needed: the refresh token was refused ({0})")]
    ReauthorizationRequired(ApiError),
    /// The server answered a non-success status with a body we do not recognise.
    #[error("unexpected HTTP status {status}{}", body_suffix(.body))]
    UnexpectedStatus {
        /// HTTP status code.
        status: u16,
        /// The start of the body, for debugging (error bodies carry no secrets).
        body: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// A success response whose body is not what the protocol says.
    #[error("could not decode the {context} response: {detail}")]
    Decode {
        /// Which response.
        context: &'static str,
        /// What was wrong (never the body itself: success bodies may hold tokens).
        detail: String,
    },
    /// A token signed by the server failed verification (format, algorithm, signature, expiry).
    #[error("server token rejected: {0}")]
    ServerToken(String),
    /// A server token names a key set other than the configured one; it was not fetched.
    #[error("server token names key set {jku:?}, but only {expected:?} is trusted")]
    UntrustedKeySet {
        /// The `jku` in the token header.
        jku: String,
        /// The configured key-set URL.
        expected: String,
    },
    /// The server's key set has no key with the token's `kid`.
    #[error("no server key with kid {kid:?} in the key set")]
    UnknownSigningKey {
        /// The `kid` in the token header.
        kid: String,
    },
    /// A local cryptographic failure (for example an unusable contract key).
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
    /// A downloaded file could not be decrypted: truncated, corrupted, or encrypted to
    /// another key (docs/protocol.md, "File envelope").
    #[error("the file could not be decrypted: {0}")]
    Decryption(CryptoError),
    /// A downloaded file decrypted but did not decompress as its metadata says.
    #[error("the file could not be decompressed ({compression}): {detail}")]
    Decompression {
        /// The compression named in `X-Metadata`.
        compression: &'static str,
        /// What the decompressor said.
        detail: String,
    },
    /// The request could not be completed (connection, timeout, the caller's body
    /// source or sink).
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    /// The authorization callback was an error or did not parse.
    #[error("callback: {0}")]
    Callback(#[from] CallbackError),
    /// A flow was driven against its contract (polled out of order, fed a body it did
    /// not ask for), or a driver lost one of its tasks (it panicked, or the driver does
    /// not know it). A bug in a driver or in the caller's code, never in the input.
    #[error("flow misuse: {0}")]
    Misuse(String),
    /// The server refused the user's token, and the call was told not to refresh it
    /// itself ([`crate::refresh::Refreshing::without_refresh`]): refresh, then run it
    /// again. The server's answer is inside.
    #[error("{0} (the token needs a refresh)")]
    RefreshNeeded(Box<Error>),
    /// The request may have been processed, but how it ended is unknown: the connection
    /// failed after it went out, or a server or gateway error (500, 502, 504) answered
    /// it, and it was not repeated, since repeating it could do its write twice
    /// (docs/protocol.md, "Retries"). Check before doing it again: for a library push,
    /// look for the file in the library; for a refresh, the old refresh token may be
    /// spent; for a deletion, it may be done. The failure is inside.
    #[error("the outcome is unknown, the request may have been processed: {0}")]
    OutcomeUnknown(Box<Error>),
    /// The call refreshed the user's token and then failed. Persist `refreshed_token`
    /// all the same: the refresh rotated the refresh token, so the old one is spent.
    #[error("{error} (after refreshing the access token; persist the new token)")]
    AfterRefresh {
        /// The token the refresh issued.
        refreshed_token: Box<UserAccessToken>,
        /// Why the call failed after the refresh.
        error: Box<Error>,
    },
}

fn body_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

impl Error {
    /// Whether the user must go through authorization again (the refresh token is dead).
    pub fn needs_reauthorization(&self) -> bool {
        match self {
            Error::AfterRefresh { error, .. }
            | Error::RefreshNeeded(error)
            | Error::OutcomeUnknown(error) => error.needs_reauthorization(),
            e => matches!(e, Error::ReauthorizationRequired(_)),
        }
    }

    /// The token issued by a refresh that happened before the call failed: persist it.
    pub fn refreshed_token(&self) -> Option<&UserAccessToken> {
        match self {
            Error::AfterRefresh {
                refreshed_token, ..
            } => Some(refreshed_token),
            _ => None,
        }
    }

    /// The underlying error, looking through [`Error::AfterRefresh`],
    /// [`Error::RefreshNeeded`] and [`Error::OutcomeUnknown`].
    pub fn cause(&self) -> &Error {
        match self {
            Error::AfterRefresh { error, .. }
            | Error::RefreshNeeded(error)
            | Error::OutcomeUnknown(error) => error.cause(),
            e => e,
        }
    }

    /// Whether the request may have been processed although the call failed
    /// ([`Error::OutcomeUnknown`], also after a refresh): check before doing it again.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            Error::AfterRefresh { error, .. } | Error::RefreshNeeded(error) => {
                error.outcome_unknown()
            }
            e => matches!(e, Error::OutcomeUnknown(_)),
        }
    }

    /// Whether trying the same operation again later may succeed. `false` when the
    /// [outcome is unknown](Error::outcome_unknown): find out first.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::OutcomeUnknown(_) => false,
            Error::AfterRefresh { error, .. } | Error::RefreshNeeded(error) => error.is_retryable(),
            Error::Transport(t) => t.is_retryable(),
            Error::Api(api) => crate::retry::RETRY_STATUS_CODES.contains(&api.status),
            Error::UnexpectedStatus { status, .. } => {
                crate::retry::RETRY_STATUS_CODES.contains(status)
            }
            _ => false,
        }
    }

    /// The delay the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::AfterRefresh { error, .. }
            | Error::RefreshNeeded(error)
            | Error::OutcomeUnknown(error) => error.retry_after(),
            Error::Api(api) => api.retry_after,
            Error::UnexpectedStatus { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The API error, if the server sent a recognised error body.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::AfterRefresh { error, .. }
            | Error::RefreshNeeded(error)
            | Error::OutcomeUnknown(error) => error.api(),
            Error::Api(api) | Error::ReauthorizationRequired(api) => Some(api),
            _ => None,
        }
    }
}

/// A recognised server error body with its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// The error code.
    pub code: ErrorCode,
    /// The server's message.
    pub message: String,
    /// The server's reference id for support, when given.
    pub reference: Option<String>,
    /// The server's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)?;
        if let Some(r) = &self.reference {
            write!(f, " (reference {r})")?;
        }
        Ok(())
    }
}

macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $text:literal,)*) => {
        /// Server error codes (docs/protocol.md, "Errors", docs/protocol.md, "Writing"), with a fallback.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
            /// Any other code, as sent.
            Other(String),
        }
        impl ErrorCode {
            /// The code as it appears on the wire.
            pub fn as_str(&self) -> &str {
                match self { $(ErrorCode::$variant => $text,)* ErrorCode::Other(s) => s }
            }
        }
        impl From<&str> for ErrorCode {
            fn from(s: &str) -> Self {
                match s { $($text => ErrorCode::$variant,)* other => ErrorCode::Other(other.to_owned()) }
            }
        }
    };
}

error_codes! {
    /// The access or refresh token is invalid or expired.
    InvalidToken = "InvalidToken",
    /// The callback is not registered for the contract.
    InvalidRedirectUri = "InvalidRedirectUri",
    /// The `client_id` is unknown.
    InvalidClient = "InvalidClient",
    /// The contract may not do this (for example a read contract pushing).
    InsufficientScope = "InsufficientScope",
    /// The SDK agent is unknown.
    SdkInvalid = "SDKInvalid",
    /// The SDK version is no longer supported.
    SdkVersionInvalid = "SDKVersionInvalid",
    /// A parameter or the bearer JWT failed validation.
    ValidationErrors = "ValidationErrors",
    /// The request was refused (for example a replayed nonce).
    InvalidRequest = "InvalidRequest",
    /// The authorization code or PKCE verifier was refused.
    InvalidGrant = "InvalidGrant",
    /// The requested scope is outside the contract.
    ScopeOutOfBounds = "ScopeOutOfBounds",
    /// The contract type does not allow this request.
    InvalidContractDataRequest = "InvalidContractDataRequest",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure below HTTP: no response was received, or the body could not be sent.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{kind:?}: {message}")]
pub struct TransportError {
    /// What kind of failure.
    pub kind: TransportErrorKind,
    /// A description from the HTTP library.
    pub message: String,
}

impl TransportError {
    /// A transport error of `kind`.
    pub fn new(kind: TransportErrorKind, message: impl Into<String>) -> Self {
        TransportError {
            kind,
            message: message.into(),
        }
    }

    /// A failure of the caller's sink (for drivers).
    pub fn sink(error: &std::io::Error) -> Self {
        TransportError::new(TransportErrorKind::Sink, error.to_string())
    }

    /// A failure of the caller's upload body: its reader, its length, its transform.
    pub fn body_source(message: impl Into<String>) -> Self {
        TransportError::new(TransportErrorKind::BodySource, message)
    }

    /// Whether a retry may help (the HTTP client's retryable error codes).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            TransportErrorKind::Connect | TransportErrorKind::Timeout | TransportErrorKind::Reset
        )
    }
}

/// Kinds of [`TransportError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// Could not connect (refused, unreachable, DNS).
    Connect,
    /// Timed out.
    Timeout,
    /// The connection was reset or closed early.
    Reset,
    /// Reading the caller's request body failed; never retried.
    BodySource,
    /// Writing a downloaded file to the caller's sink failed; never retried.
    Sink,
    /// The response was larger than the SDK accepts for this call.
    ResponseTooLarge,
    /// Anything else.
    Other,
}

impl TransportErrorKind {
    /// The kind of an I/O failure, one table for every driver (so that a failure is
    /// retried, or not, whatever the transport): refused → `Connect`, timed out →
    /// `Timeout`, reset, aborted, broken pipe or cut short → `Reset`; anything else is
    /// `Other`, which is never retried.
    pub fn from_io(kind: std::io::ErrorKind) -> Self {
        use std::io::ErrorKind as K;
        match kind {
            K::ConnectionRefused | K::NotFound | K::AddrNotAvailable => TransportErrorKind::Connect,
            K::TimedOut | K::WouldBlock => TransportErrorKind::Timeout,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                TransportErrorKind::Reset
            }
            _ => TransportErrorKind::Other,
        }
    }
}

/// The authorization callback did not carry a usable code.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallbackError {
    /// The URL or its query did not parse, or a parameter was missing or malformed.
    #[error("malformed callback: {0}")]
    Malformed(String),
    /// The user or the service ended the flow with an error (`success=false`).
    #[error("authorization failed with {code}")]
    Failed {
        /// The `errorCode` parameter.
        code: CallbackErrorCode,
        /// The echoed `state`, when present.
        state: Option<String>,
    },
    /// The `state` does not match what the app stored: possible CSRF; do not continue.
    #[error("the callback state does not match the stored state")]
    StateMismatch,
}

/// The `errorCode` values of a failed authorization redirect (docs/protocol.md, "Callback").
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallbackErrorCode {
    /// `INITIALIZE_CHECK_FAIL`
    InitializeCheckFail,
    /// `USER_CANCEL`: the user denied consent.
    UserCancel,
    /// `ONBOARD_ERROR`
    OnboardError,
    /// `INVALID_CODE`
    InvalidCode,
    /// `SERVER_ERROR`
    ServerError,
    /// Any other value, as sent (empty when `errorCode` was missing).
    Other(String),
}

impl CallbackErrorCode {
    /// Parses the wire value.
    pub fn parse(s: &str) -> Self {
        match s {
            "INITIALIZE_CHECK_FAIL" => Self::InitializeCheckFail,
            "USER_CANCEL" => Self::UserCancel,
            "ONBOARD_ERROR" => Self::OnboardError,
            "INVALID_CODE" => Self::InvalidCode,
            "SERVER_ERROR" => Self::ServerError,
            other => Self::Other(other.to_owned()),
        }
    }
    /// The wire value.
    pub fn as_str(&self) -> &str {
        match self {
            Self::InitializeCheckFail => "INITIALIZE_CHECK_FAIL",
            Self::UserCancel => "USER_CANCEL",
            Self::OnboardError => "ONBOARD_ERROR",
            Self::InvalidCode => "INVALID_CODE",
            Self::ServerError => "SERVER_ERROR",
            Self::Other(s) => s,
        }
    }
}

impl fmt::Display for CallbackErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
