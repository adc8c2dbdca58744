//! POST `permission-access/trigger` (`docs/protocol.md`, "Read session"): a read
//! session; the user's sources sync while the session key reads files.

use super::{decode_json, user_request};
use crate::auth::{PullOptions, Session, parse_session};
use crate::config::{Config, Contract};
use crate::error::Error;
use crate::refresh::UserOperation;
use crate::retry::RetryPolicy;
use crate::sdk::Sdk;
use crate::token::UserAccessToken;
use crate::wire::{self, Body};
use http::{Method, Request, Response};
use serde_json::Value;
use std::time::SystemTime;

/// `POST permission-access/trigger` (docs/protocol.md, "Read session").
#[derive(Debug, Clone)]
pub struct ReadSession {
    options: PullOptions,
}

impl ReadSession {
    pub(crate) fn new(options: PullOptions) -> Self {
        ReadSession { options }
    }

    /// The request body: the options, then `agent` written last (a caller's `agent` is
    /// replaced).
    pub fn body(&self, config: &Config) -> Result<Vec<u8>, Error> {
        let mut obj = match serde_json::to_value(&self.options) {
            Ok(Value::Object(o)) => o,
            _ => {
                return Err(Error::InvalidInput(
                    "session options must be an object".into(),
                ));
            }
        };
        obj.remove("agent");
        // Keys serialise sorted; `agent` goes last, as the official SDK writes it.
        let mut out = serde_json::to_vec(&Value::Object(obj))
            .map_err(|e| Error::InvalidInput(e.to_string()))?;
        out.pop(); // the closing brace
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(br#""agent":"#);
        out.extend_from_slice(wire::agent_json(config).to_string().as_bytes());
        out.push(b'}');
        Ok(out)
    }
}

impl UserOperation for ReadSession {
    type Output = Session;
    fn method(&self) -> Method {
        Method::POST
    }
    fn retry_policy(&self, _sdk: &Sdk) -> RetryPolicy {
        // The client defaults, not the caller's retry options (docs/protocol.md, "Reading"); POST is not retried.
        RetryPolicy::default()
    }
    fn build(
        &self,
        sdk: &Sdk,
        contract: &Contract,
        token: &UserAccessToken,
        now: SystemTime,
    ) -> Result<Request<Body>, Error> {
        let body = self.body(sdk.config())?;
        let req = user_request(
            sdk,
            contract,
            token,
            now,
            Method::POST,
            "permission-access/trigger",
            Body::Bytes(body),
        )?;
        Ok(wire::accept_json(req))
    }
    fn parse(&self, response: Response<Vec<u8>>) -> Result<Session, Error> {
        let v: Value = decode_json(response.body(), "read session")?;
        parse_session(v.get("session"), "read session")?.ok_or(Error::Decode {
            context: "read session",
            detail: "no session in the response".into(),
        })
    }
    fn refresh_on_any_401(&self) -> bool {
        false
    }
}
