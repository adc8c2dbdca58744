//! Establishing a session (docs/protocol.md, "Postbox era").

use crate::auth::Scope;
use crate::config::{ContractId, SessionKey};
use crate::error::{Error, TransportError};
use crate::flow::{Flow, Leg, Step, Sub, misuse};
use crate::sdk::Sdk;
use crate::wire::{self, Body};
use digime_crypto::SecretString;
use http::{Method, Response};
use serde::Serialize;
use serde_json::Value;
use std::time::SystemTime;

/// A session of the deep-link era (SDK v0.5–v4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacySession {
    /// `sessionKey`: goes into the deep links and authenticates pushes.
    pub session_key: SessionKey,
    /// `expiry`, as sent (its unit is not established, so it is kept opaque).
    pub expiry: serde_json::Number,
    /// `sessionExchangeToken` (a secret; redacted in `Debug`).
    pub session_exchange_token: SecretString,
    /// The `x-digi-sdk-status` response header (e.g. `deprecated`), when sent.
    pub sdk_status: Option<String>,
    /// The `x-digi-sdk-status-message` response header, when sent.
    pub sdk_status_message: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionRequest<'a> {
    app_id: &'a str,
    contract_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a Scope>,
    sdk_agent: SdkAgent<'a>,
    accept: Accept,
}

#[derive(Serialize)]
struct SdkAgent<'a> {
    name: &'a str,
    version: &'a str,
    meta: Value,
}

#[derive(Serialize)]
struct Accept {
    compression: &'static str,
}

/// The request body: `{"appId","contractId","scope"?,"sdkAgent":{name,version,meta},
/// "accept":{"compression":"gzip"}}`, compact, in that order.
pub(crate) fn session_body(
    sdk: &Sdk,
    contract_id: &ContractId,
    scope: Option<&Scope>,
) -> Result<Vec<u8>, Error> {
    let config = sdk.config();
    // Today's agent (name, version, and the same `meta` as every other request).
    let meta = wire::agent_json(config)
        .get("sdk")
        .and_then(|s| s.get("meta"))
        .cloned()
        .unwrap_or(Value::Null);
    let sdk_agent = SdkAgent {
        name: &config.agent.name,
        version: &config.agent.version,
        meta,
    };
    serde_json::to_vec(&SessionRequest {
        app_id: config.application_id().as_str(),
        contract_id: contract_id.as_str(),
        scope,
        sdk_agent,
        accept: Accept {
            compression: "gzip",
        },
    })
    .map_err(|e| Error::InvalidInput(e.to_string()))
}

/// Parses a successful session response strictly: `expiry` a number, `sessionKey` a
/// non-empty string, `sessionExchangeToken` a string.
pub fn parse_session_response(response: &Response<Vec<u8>>) -> Result<LegacySession, Error> {
    let decode = |detail: &str| Error::Decode {
        context: "session",
        detail: detail.to_owned(),
    };
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(response.body()) else {
        return Err(decode("body is not a JSON object"));
    };
    let expiry = match obj.get("expiry") {
        Some(Value::Number(n)) => n.clone(),
        _ => return Err(decode("no numeric expiry")),
    };
    let session_key = match obj.get("sessionKey").and_then(Value::as_str) {
        Some(k) if !k.is_empty() => SessionKey::new(k)?,
        _ => return Err(decode("no sessionKey string")),
    };
    let session_exchange_token = match obj.get("sessionExchangeToken").and_then(Value::as_str) {
        Some(t) => SecretString::new(t),
        None => return Err(decode("no sessionExchangeToken string")),
    };
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    Ok(LegacySession {
        session_key,
        expiry,
        session_exchange_token,
        sdk_status: header("x-digi-sdk-status"),
        sdk_status_message: header("x-digi-sdk-status-message"),
    })
}

/// `POST {base}permission-access/session`: no authentication, a JSON body, a
/// [`LegacySession`] back. Retried as the configuration says for POST (by default not).
pub struct EstablishSession {
    sdk: Sdk,
    body: Vec<u8>,
    leg: Leg,
    finished: bool,
}

impl std::fmt::Debug for EstablishSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EstablishSession")
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl EstablishSession {
    pub(crate) fn new(sdk: Sdk, body: Vec<u8>) -> Self {
        let policy = sdk.config().retry.clone();
        EstablishSession {
            sdk,
            body,
            leg: Leg::new("EstablishSession", Method::POST, policy),
            finished: false,
        }
    }
}

impl Flow for EstablishSession {
    type Output = LegacySession;

    fn poll(&mut self, now: SystemTime) -> Step<LegacySession> {
        if self.finished {
            return Step::Done(Err(misuse("poll after Done")));
        }
        let (sdk, body) = (&self.sdk, &self.body);
        let result = match self.leg.poll(now, |_| {
            Ok(wire::accept_json(wire::request(
                Method::POST,
                &sdk.config().api("permission-access/session"),
                None,
                Body::Bytes(body.clone()),
            )?))
        }) {
            Sub::Send(r) => return Step::Send(r),
            Sub::Sleep(d) => return Step::Sleep(d),
            Sub::Done(Err(e)) => Err(e),
            Sub::Done(Ok(resp)) if !wire::is_success(&resp) => {
                Err(wire::error_from_response(&resp, now))
            }
            Sub::Done(Ok(resp)) => parse_session_response(&resp),
        };
        self.finished = true;
        Step::Done(result)
    }

    fn handle_response(&mut self, response: Response<Vec<u8>>) {
        self.leg.handle(Ok(response));
    }

    fn handle_transport_error(&mut self, error: TransportError) {
        self.leg.handle(Err(error));
    }
}
