//! Blocking driver of the digi.me Rust SDK, on `ureq` 3.
//!
//! Scope: IO only. Every operation is a [`digime_protocol::Flow`] run in a short loop
//! (send the request, report the response, sleep when told); the protocol logic lives
//! in `digime-protocol`, so this crate and `digime-async` behave identically.
//!
//! ```no_run
//! use digime_blocking::Client;
//! use digime_protocol::{AuthorizeOptions, Config, Contract, FileDescriptor};
//!
//! # fn main() -> Result<(), digime_protocol::Error> {
//! let client = Client::new(Config::new("my-application-id")?);
//! let contract = Contract::from_pem("my-write-contract", &std::fs::read_to_string("key.pem").unwrap())?;
//! let auth = client.authorize_url(&contract, "https://app.example/callback", "state-123", AuthorizeOptions::default())?;
//! // ... store auth.code_verifier, redirect the user to auth.url, receive the callback ...
//! # let callback_url = "";
//! let callback = digime_protocol::parse_callback(callback_url)?.verify_state("state-123")?;
//! let token = client.exchange_code_for_token(&contract, &callback.code, &auth.code_verifier)?;
//! let file = std::fs::File::open("receipt.json").unwrap();
//! let pushed = client.push_to_library(&contract, &token, &FileDescriptor::new("application/json"), file)?;
//! if let Some(new_token) = pushed.refreshed_token { /* persist it */ }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use digime_protocol::auth::{AuthorizationCode, AuthorizeOptions, AuthorizeUrl};
use digime_protocol::error::{TransportError, TransportErrorKind};
use digime_protocol::flow::{Authed, Event, Flow, Step};
use digime_protocol::wire::{Body, MAX_RESPONSE_BYTES};
use digime_protocol::{
    CodeVerifier, Config, Contract, Error, FileDescriptor, Sdk, UserAccessToken,
};
use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

type TokenListener = Arc<dyn Fn(&UserAccessToken) + Send + Sync>;

/// Default time allowed to connect.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Default time allowed without progress on a read or a write.
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A blocking digi.me client. Cheap to clone; clones share the connection pool and
/// the server key-set cache.
#[derive(Clone)]
pub struct Client {
    sdk: Sdk,
    agent: ureq::Agent,
    on_token: Option<TokenListener>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("sdk", &self.sdk)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client with a default agent: no redirects followed, statuses returned as
    /// responses (the protocol core classifies them), 30 s to connect and at most
    /// 60 s without progress on a read or a write (a stalled server cannot hang a
    /// call; a slow but moving upload is never cut off).
    pub fn new(config: Config) -> Self {
        Self::with_agent(config, default_agent(IDLE_TIMEOUT))
    }

    /// Uses a default agent (as [`Client::new`]) that allows `timeout` without
    /// progress on a read or a write. Replaces an agent given to [`Client::with_agent`].
    pub fn with_idle_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.agent = default_agent(timeout);
        self
    }

    /// A client on your own `ureq` agent (timeouts, proxies, TLS). It must be built
    /// with `http_status_as_error(false)`.
    pub fn with_agent(config: Config, agent: ureq::Agent) -> Self {
        Client {
            sdk: Sdk::new(config),
            agent,
            on_token: None,
        }
    }

    /// Calls `listener` with every refreshed token, as soon as it is issued.
    pub fn on_token_refreshed(
        mut self,
        listener: impl Fn(&UserAccessToken) + Send + Sync + 'static,
    ) -> Self {
        self.on_token = Some(Arc::new(listener));
        self
    }

    /// The sans-IO core.
    pub fn sdk(&self) -> &Sdk {
        &self.sdk
    }

    /// Builds the authorization URL (POST `oauth/authorize`, verified server token).
    pub fn authorize_url(
        &self,
        contract: &Contract,
        callback: &str,
        state: &str,
        options: AuthorizeOptions,
    ) -> Result<AuthorizeUrl, Error> {
        self.run(
            self.sdk.authorize_url(contract, callback, state, options)?,
            None,
        )
    }

    /// Exchanges the callback's code and the stored verifier for a token.
    pub fn exchange_code_for_token(
        &self,
        contract: &Contract,
        code: &AuthorizationCode,
        verifier: &CodeVerifier,
    ) -> Result<UserAccessToken, Error> {
        self.run(
            self.sdk.exchange_code_for_token(contract, code, verifier)?,
            None,
        )
    }

    /// Refreshes a token; [`Error::needs_reauthorization`] tells when the user must
    /// authorize again.
    pub fn refresh_token(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
    ) -> Result<UserAccessToken, Error> {
        self.run(self.sdk.refresh_token(contract, token), None)
    }

    /// Pushes `body` into the user's library, streamed (a 1 GiB file is never held in
    /// memory). The body is rewound if the push must be repeated after a token refresh.
    pub fn push_to_library<R: Read + Seek>(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        descriptor: &FileDescriptor,
        mut body: R,
    ) -> Result<Authed<()>, Error> {
        let flow = self.sdk.push_to_library(contract, token, descriptor)?;
        self.run(flow, Some(&mut body))
    }

    /// Runs any flow. `upload` is the body of requests that carry [`Body::Upload`].
    pub fn run<F: Flow>(
        &self,
        mut flow: F,
        mut upload: Option<&mut dyn ReadSeek>,
    ) -> Result<F::Output, Error> {
        loop {
            match flow.poll(SystemTime::now()) {
                Step::Send(request) => match self.send(request, upload.as_deref_mut()) {
                    Ok(response) => flow.handle_response(response),
                    Err(error) => flow.handle_transport_error(error),
                },
                Step::Sleep(d) => std::thread::sleep(d),
                Step::Event(Event::TokenRefreshed(token)) => {
                    if let Some(listener) = &self.on_token {
                        listener(&token);
                    }
                }
                Step::Event(_) => {}
                Step::Done(result) => return result,
            }
        }
    }

    fn send<'b>(
        &self,
        request: http::Request<Body>,
        upload: Option<&mut (dyn ReadSeek + 'b)>,
    ) -> Result<http::Response<Vec<u8>>, TransportError> {
        let (parts, body) = request.into_parts();
        let result = match body {
            Body::Empty => self.agent.run(http::Request::from_parts(parts, ())),
            Body::Bytes(bytes) => self.agent.run(http::Request::from_parts(parts, bytes)),
            Body::Upload => {
                let Some(reader) = upload else {
                    return Err(TransportError::new(
                        TransportErrorKind::BodySource,
                        "this operation needs a body",
                    ));
                };
                reader.seek(SeekFrom::Start(0)).map_err(|e| {
                    TransportError::new(TransportErrorKind::BodySource, e.to_string())
                })?;
                let failure = Arc::new(Mutex::new(None));
                let mut tracked = Tracked {
                    inner: reader,
                    failure: failure.clone(),
                };
                let r = self.agent.run(http::Request::from_parts(
                    parts,
                    ureq::SendBody::from_reader(&mut tracked),
                ));
                if let Some(msg) = failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    return Err(TransportError::new(TransportErrorKind::BodySource, msg));
                }
                r
            }
        };
        let mut response = result.map_err(transport_error)?;
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES as u64)
            .read_to_vec()
            .map_err(transport_error)?;
        let (parts, _) = response.into_parts();
        Ok(http::Response::from_parts(parts, bytes))
    }
}

/// `Read + Seek`, object-safe.
pub trait ReadSeek: Read + Seek {}
impl<T: Read + Seek + ?Sized> ReadSeek for T {}

/// Remembers an error of the caller's reader, so that it is reported as such rather
/// than as a network failure.
struct Tracked<'a, 'b> {
    inner: &'a mut (dyn ReadSeek + 'b),
    failure: Arc<Mutex<Option<String>>>,
}

impl Read for Tracked<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        })
    }
}

fn default_agent(idle: std::time::Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_per_read(Some(idle))
        .timeout_per_write(Some(idle))
        .build()
        .new_agent()
}

fn transport_error(e: ureq::Error) -> TransportError {
    let kind = match &e {
        ureq::Error::Timeout(_) => TransportErrorKind::Timeout,
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => TransportErrorKind::Connect,
        ureq::Error::BodyExceedsLimit(_) => TransportErrorKind::ResponseTooLarge,
        ureq::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound => {
                TransportErrorKind::Connect
            }
            std::io::ErrorKind::TimedOut => TransportErrorKind::Timeout,
            std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::UnexpectedEof => TransportErrorKind::Reset,
            _ => TransportErrorKind::Other,
        },
        _ => TransportErrorKind::Other,
    };
    TransportError::new(kind, e.to_string())
}
