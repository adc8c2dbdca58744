//! Exit codes: one per kind of failure, so that a script knows what to do next.

use digime_protocol::Error;
use digime_protocol::error::TransportErrorKind;
use std::process::ExitCode;

/// The exit codes, as `digime --help` lists them.
pub const HELP: &str = "\
Exit codes:
  0   success
  1   a local failure (a file could not be written, no randomness)
  2   usage: a flag or an argument is wrong
  3   bad input: a malformed key, token file or argument the SDK refused
  4   the user must authorize again (run `digime reauthorize`)
  5   retryable: the service is busy or unreachable; run the command again later
  6   outcome unknown: the request may have been done; check before repeating it
  7   refused: the service answered with an error (see the message)
  8   bad answer: the service's answer failed verification or did not parse
  9   the authorization was denied, or its callback was wrong
  10  a network failure that retrying will not fix (TLS, refused name)
  11  partly done: some files failed (read-all), the others were written";

/// Why a command failed, with the exit code it ends with.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    kind: &'static str,
    message: String,
    detail: Option<serde_json::Value>,
}

impl Failure {
    fn new(code: u8, kind: &'static str, message: impl Into<String>) -> Self {
        Failure {
            code,
            kind,
            message: message.into(),
            detail: None,
        }
    }

    /// A local failure (exit 1).
    pub fn local(message: impl Into<String>) -> Self {
        Self::new(1, "local", message)
    }

    /// Bad input (exit 3).
    pub fn input(message: impl Into<String>) -> Self {
        Self::new(3, "bad_input", message)
    }

    /// The authorization was denied or its callback was wrong (exit 9).
    pub fn callback(message: impl Into<String>) -> Self {
        Self::new(9, "callback", message)
    }

    /// Partly done (exit 11), with what was done.
    pub fn partial(message: impl Into<String>, detail: serde_json::Value) -> Self {
        Failure {
            detail: Some(detail),
            ..Self::new(11, "partial", message)
        }
    }

    /// The exit code.
    #[cfg(test)]
    pub fn code(&self) -> u8 {
        self.code
    }

    /// Prints the failure (a line on stderr; with `--json`, also an object on stdout)
    /// and gives the exit code.
    pub fn report(self, json: bool) -> ExitCode {
        eprintln!("digime: {}", self.message);
        if json {
            let mut v = serde_json::json!({
                "error": { "kind": self.kind, "exitCode": self.code, "message": self.message }
            });
            if let Some(detail) = self.detail {
                v["error"]["detail"] = detail;
            }
            println!("{v}");
        }
        ExitCode::from(self.code)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let message = match e.refreshed_token() {
            // The refreshed token was written back by the client's listener.
            Some(_) => format!("{} (the refreshed token was kept)", e.cause()),
            None => e.to_string(),
        };
        let (code, kind) = if e.needs_reauthorization() {
            (4, "reauthorize")
        } else if e.outcome_unknown() {
            (6, "outcome_unknown")
        } else if e.is_retryable() {
            (5, "retryable")
        } else {
            match e.cause() {
                Error::InvalidInput(_) | Error::Crypto(_) | Error::Misuse(_) => (3, "bad_input"),
                Error::Api(_) | Error::UnexpectedStatus { .. } => (7, "refused"),
                Error::Callback(_) => (9, "callback"),
                // Our own file could not be read or written.
                Error::Transport(t)
                    if matches!(
                        t.kind,
                        TransportErrorKind::Sink | TransportErrorKind::BodySource
                    ) =>
                {
                    (1, "local")
                }
                Error::Transport(_) => (10, "network"),
                _ => (8, "bad_answer"),
            }
        };
        Failure::new(code, kind, message)
    }
}

impl From<digime_protocol::CallbackError> for Failure {
    fn from(e: digime_protocol::CallbackError) -> Self {
        Failure::callback(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use digime_protocol::error::TransportError;

    #[test]
    fn each_kind_of_error_has_its_code() {
        let code = |e: Error| Failure::from(e).code();
        assert_eq!(code(Error::InvalidInput("x".into())), 3);
        assert_eq!(
            code(Error::Decode {
                context: "c",
                detail: "d".into()
            }),
            8
        );
        assert_eq!(
            code(Error::Transport(TransportError::new(
                TransportErrorKind::Timeout,
                "slow"
            ))),
            5
        );
        assert_eq!(
            code(Error::OutcomeUnknown(Box::new(Error::Transport(
                TransportError::new(TransportErrorKind::Timeout, "slow")
            )))),
            6
        );
        assert_eq!(
            code(Error::UnexpectedStatus {
                status: 404,
                body: String::new(),
                retry_after: None
            }),
            7
        );
        assert_eq!(
            code(Error::Transport(TransportError::new(
                TransportErrorKind::Sink,
                "disk full"
            ))),
            1
        );
        assert_eq!(Failure::input("x").code(), 3);
        assert_eq!(Failure::callback("x").code(), 9);
    }
}
