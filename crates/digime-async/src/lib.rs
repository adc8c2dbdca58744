//! Async driver of the digi.me Rust SDK, on `reqwest` and `tokio`.
//!
//! Scope: IO only. Every operation is a [`digime_protocol::Flow`] run in a short loop
//! (send the request, report the response, sleep when told); the protocol logic lives
//! in `digime-protocol`, so this crate and `digime-blocking` behave identically.
//!
//! ```no_run
//! use digime_async::Client;
//! use digime_protocol::{AuthorizeOptions, Config, Contract, FileDescriptor};
//!
//! # async fn demo() -> Result<(), digime_protocol::Error> {
//! let client = Client::new(Config::new("my-application-id")?);
//! let contract = Contract::from_pem("my-write-contract", &std::fs::read_to_string("key.pem").unwrap())?;
//! let auth = client
//!     .authorize_url(&contract, "https://app.example/callback", "state-123", AuthorizeOptions::default())
//!     .await?;
//! // ... store auth.code_verifier, redirect the user to auth.url, receive the callback ...
//! # let callback_url = "";
//! let callback = digime_protocol::parse_callback(callback_url)?.verify_state("state-123")?;
//! let token = client.exchange_code_for_token(&contract, &callback.code, &auth.code_verifier).await?;
//! let file = tokio::fs::File::open("receipt.json").await.unwrap();
//! let pushed = client
//!     .push_to_library(&contract, &token, &FileDescriptor::new("application/json"), file)
//!     .await?;
//! if let Some(new_token) = pushed.refreshed_token { /* persist it */ }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use bytes::Bytes;
use digime_protocol::auth::{AuthorizationCode, AuthorizeOptions, AuthorizeUrl};
use digime_protocol::error::{TransportError, TransportErrorKind};
use digime_protocol::flow::{Authed, Event, Flow, Step};
use digime_protocol::wire::{Body, MAX_RESPONSE_BYTES};
use digime_protocol::{
    CodeVerifier, Config, Contract, Error, FileDescriptor, Sdk, UserAccessToken,
};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeek, AsyncSeekExt};

type TokenListener = Arc<dyn Fn(&UserAccessToken) + Send + Sync>;

/// Default time allowed to connect.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Default time allowed without progress (see [`Client::with_idle_timeout`]).
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Chunk size of streamed uploads.
const UPLOAD_CHUNK: usize = 64 * 1024;

/// An async digi.me client. Cheap to clone; clones share the connection pool and the
/// server key-set cache.
#[derive(Clone)]
pub struct Client {
    sdk: Sdk,
    http: reqwest::Client,
    on_token: Option<TokenListener>,
    idle_timeout: std::time::Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("sdk", &self.sdk)
            .finish_non_exhaustive()
    }
}

/// An upload body: anything async-readable that can be rewound for a retry.
pub trait Upload: AsyncRead + AsyncSeek + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncSeek + Send + Unpin + 'static> Upload for T {}

type SharedUpload = Arc<tokio::sync::Mutex<Box<dyn Upload>>>;

impl Client {
    /// A client with a default `reqwest` client that follows no redirects and allows
    /// 30 s to connect. Every call also gives up after [`IDLE_TIMEOUT`] without
    /// progress (no upload chunk taken, no response, no response chunk), so a stalled
    /// server cannot hang it while a slow but moving upload is never cut off.
    pub fn new(config: Config) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self::with_http_client(config, http)
    }

    /// A client on your own `reqwest::Client` (timeouts, proxies, TLS). Configure it
    /// not to follow redirects.
    pub fn with_http_client(config: Config, http: reqwest::Client) -> Self {
        Client {
            sdk: Sdk::new(config),
            http,
            on_token: None,
            idle_timeout: IDLE_TIMEOUT,
        }
    }

    /// How long a call may go without progress before it fails with a timeout.
    pub fn with_idle_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.idle_timeout = timeout;
        self
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
    pub async fn authorize_url(
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
        .await
    }

    /// Exchanges the callback's code and the stored verifier for a token.
    pub async fn exchange_code_for_token(
        &self,
        contract: &Contract,
        code: &AuthorizationCode,
        verifier: &CodeVerifier,
    ) -> Result<UserAccessToken, Error> {
        self.run(
            self.sdk.exchange_code_for_token(contract, code, verifier)?,
            None,
        )
        .await
    }

    /// Refreshes a token; [`Error::needs_reauthorization`] tells when the user must
    /// authorize again.
    pub async fn refresh_token(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
    ) -> Result<UserAccessToken, Error> {
        self.run(self.sdk.refresh_token(contract, token), None)
            .await
    }

    /// Pushes `body` into the user's library, streamed in 64 KiB chunks. The body is
    /// rewound if the push must be repeated after a token refresh.
    pub async fn push_to_library(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        descriptor: &FileDescriptor,
        body: impl Upload,
    ) -> Result<Authed<()>, Error> {
        let flow = self.sdk.push_to_library(contract, token, descriptor)?;
        let shared: SharedUpload = Arc::new(tokio::sync::Mutex::new(Box::new(body)));
        self.run(flow, Some(shared)).await
    }

    /// Runs any flow; `upload` is the body of requests that carry [`Body::Upload`].
    async fn run<F: Flow>(
        &self,
        mut flow: F,
        upload: Option<SharedUpload>,
    ) -> Result<F::Output, Error> {
        loop {
            match flow.poll(SystemTime::now()) {
                Step::Send(request) => match self.send(request, upload.as_ref()).await {
                    Ok(response) => flow.handle_response(response),
                    Err(error) => flow.handle_transport_error(error),
                },
                Step::Sleep(d) => tokio::time::sleep(d).await,
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

    async fn send(
        &self,
        request: http::Request<Body>,
        upload: Option<&SharedUpload>,
    ) -> Result<http::Response<Vec<u8>>, TransportError> {
        let failure: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let progress = Arc::new(Mutex::new(Instant::now()));
        let (parts, body) = request.into_parts();
        let body = match body {
            Body::Empty => reqwest::Body::from(Vec::new()),
            Body::Bytes(b) => reqwest::Body::from(b),
            Body::Upload => {
                let Some(upload) = upload else {
                    return Err(TransportError::new(
                        TransportErrorKind::BodySource,
                        "this operation needs a body",
                    ));
                };
                upload
                    .lock()
                    .await
                    .seek(std::io::SeekFrom::Start(0))
                    .await
                    .map_err(|e| {
                        TransportError::new(TransportErrorKind::BodySource, e.to_string())
                    })?;
                reqwest::Body::wrap_stream(upload_stream(
                    upload.clone(),
                    failure.clone(),
                    progress.clone(),
                ))
            }
        };
        let request = reqwest::Request::try_from(http::Request::from_parts(parts, body))
            .map_err(|e| TransportError::new(TransportErrorKind::Other, e.to_string()))?;
        let execute = self.http.execute(request);
        tokio::pin!(execute);
        // Wait for the response while the upload (if any) makes progress.
        let result = loop {
            let last = *progress.lock().unwrap_or_else(|p| p.into_inner());
            tokio::select! {
                r = &mut execute => break r,
                _ = tokio::time::sleep_until((last + self.idle_timeout).into()) => {
                    let last = *progress.lock().unwrap_or_else(|p| p.into_inner());
                    if last.elapsed() >= self.idle_timeout {
                        return Err(self.stalled());
                    }
                }
            }
        };
        if let Some(msg) = failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(TransportError::new(TransportErrorKind::BodySource, msg));
        }
        let mut response = result.map_err(transport_error)?;
        let mut bytes = Vec::new();
        loop {
            let chunk = tokio::time::timeout(self.idle_timeout, response.chunk())
                .await
                .map_err(|_| self.stalled())?
                .map_err(transport_error)?;
            let Some(chunk) = chunk else { break };
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(TransportError::new(
                    TransportErrorKind::ResponseTooLarge,
                    format!("response larger than {MAX_RESPONSE_BYTES} bytes"),
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        let mut out = http::Response::builder().status(response.status());
        if let Some(h) = out.headers_mut() {
            *h = response.headers().clone();
        }
        out.body(bytes)
            .map_err(|e| TransportError::new(TransportErrorKind::Other, e.to_string()))
    }
}

impl Client {
    fn stalled(&self) -> TransportError {
        TransportError::new(
            TransportErrorKind::Timeout,
            format!("no progress for {:?}", self.idle_timeout),
        )
    }
}

/// Streams the shared upload in chunks, recording a read failure of the caller's body
/// and the time of the last chunk handed to the connection.
fn upload_stream(
    upload: SharedUpload,
    failure: Arc<Mutex<Option<String>>>,
    progress: Arc<Mutex<Instant>>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures_util::stream::unfold(Some((upload, failure, progress)), |state| async move {
        let (upload, failure, progress) = state?;
        *progress.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        let mut buf = vec![0u8; UPLOAD_CHUNK];
        let read = upload.lock().await.read(&mut buf).await;
        match read {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some((upload, failure, progress))))
            }
            Err(e) => {
                *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                Some((Err(e), None))
            }
        }
    })
}

fn transport_error(e: reqwest::Error) -> TransportError {
    let kind = if e.is_timeout() {
        TransportErrorKind::Timeout
    } else if e.is_connect() {
        TransportErrorKind::Connect
    } else if e.is_body() || e.is_request() {
        TransportErrorKind::Reset
    } else {
        TransportErrorKind::Other
    };
    TransportError::new(kind, e.to_string())
}
