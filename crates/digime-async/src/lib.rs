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
use digime_protocol::read::{Account, StreamResponse};
use digime_protocol::read_all::{ReadAllFiles, ReadAllStep, Task};
use digime_protocol::upload::UploadEncoder;
use digime_protocol::wire::{Body, MAX_RESPONSE_BYTES};
use digime_protocol::{
    CodeVerifier, Config, Contract, Error, FileDescriptor, Sdk, UserAccessToken,
};
use digime_protocol::{
    FileData, FileHead, FileList, Output, PullOptions, ReadAllEvent, ReadAllOptions,
    ReadAllSummary, ReadFile, Session, SessionKey,
};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeek, AsyncSeekExt, AsyncWrite, AsyncWriteExt};

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

/// The caller's upload, shared by the attempts of one call. `generation` counts the
/// attempts: a stream of an earlier attempt that is still polled (a server answered
/// before reading the whole body) finds it changed and stops, instead of reading the
/// reader from under the current attempt.
struct UploadSlot {
    generation: u64,
    reader: Box<dyn Upload>,
}

type SharedUpload = Arc<tokio::sync::Mutex<UploadSlot>>;

fn shared_upload(body: impl Upload) -> SharedUpload {
    Arc::new(tokio::sync::Mutex::new(UploadSlot {
        generation: 0,
        reader: Box::new(body),
    }))
}

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
        let shared = shared_upload(body);
        self.run(flow, Some(shared)).await
    }

    /// Starts a read session: the user's sources sync; the session key reads the file
    /// list and the files.
    pub async fn read_session(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        options: &PullOptions,
    ) -> Result<Authed<Session>, Error> {
        self.run(self.sdk.read_session(contract, token, options), None)
            .await
    }

    /// The session's file list and sync status.
    pub async fn read_file_list(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        session: &SessionKey,
    ) -> Result<Authed<FileList>, Error> {
        self.run(self.sdk.read_file_list(contract, token, session), None)
            .await
    }

    /// Downloads, decrypts and decompresses a file into memory.
    pub async fn read_file(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        session: &SessionKey,
        file_name: &str,
    ) -> Result<Authed<FileData>, Error> {
        let flow = self
            .sdk
            .read_file(contract, token, session, file_name, Output::Buffer)?;
        self.run(flow, None).await
    }

    /// Downloads a file, decrypting and decompressing it into `sink` as it arrives (a
    /// 1 GiB file passes in constant memory). The bytes are only valid once this
    /// returns `Ok`: the envelope has no MAC, so truncation and corruption show at the
    /// end; on an error, discard what was written.
    pub async fn read_file_to<W: AsyncWrite + Unpin + Send>(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        session: &SessionKey,
        file_name: &str,
        sink: &mut W,
    ) -> Result<Authed<FileHead>, Error> {
        let flow = self
            .sdk
            .read_file(contract, token, session, file_name, Output::Stream)?;
        let a = self.drive(flow, None, &mut Writer(&mut *sink)).await?;
        // A buffered sink's last write fails here, not in `write_all`.
        sink.flush()
            .await
            .map_err(|e| Error::Transport(TransportError::sink(&e)))?;
        Ok(Authed {
            value: a.value.head,
            refreshed_token: a.refreshed_token,
        })
    }

    /// A file's metadata, without its body (`HEAD`).
    pub async fn read_file_metadata(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        session: &SessionKey,
        file_name: &str,
    ) -> Result<Authed<FileHead>, Error> {
        let flow = self
            .sdk
            .read_file_metadata(contract, token, session, file_name)?;
        self.run(flow, None).await
    }

    /// The user's source accounts.
    pub async fn read_accounts(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
    ) -> Result<Authed<Vec<Account>>, Error> {
        self.run(self.sdk.read_accounts(contract, token), None)
            .await
    }

    /// Reads every file of a session as its sync goes on, into memory, calling
    /// `on_event` for status changes, each file, each file error and refreshed tokens.
    /// Up to `options.max_concurrency` downloads run at once, within this future (no
    /// task is spawned). Stop it from anywhere with `options.stop`.
    pub async fn read_all_files(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        session: &SessionKey,
        options: ReadAllOptions,
        on_event: impl FnMut(ReadAllEvent<FileData>),
    ) -> Result<ReadAllSummary, Error> {
        let all = self.sdk.read_all_files(contract, token, session, options);
        let no_sink = |_: &FileHead| std::future::ready(Ok(tokio::io::sink()));
        self.drive_all(all, Output::Buffer, None, &no_sink, |f| f, on_event)
            .await
    }

    /// Like [`Client::read_all_files`], but each file is decrypted and decompressed
    /// into the writer that `open` yields for it (once the file's headers have
    /// arrived), in constant memory. A file reported as [`ReadAllEvent::FileError`]
    /// may have been partly written: discard it.
    pub async fn read_all_files_to<W, Fut>(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        session: &SessionKey,
        options: ReadAllOptions,
        open: impl Fn(&FileHead) -> Fut + Sync,
        on_event: impl FnMut(ReadAllEvent<FileHead>),
    ) -> Result<ReadAllSummary, Error>
    where
        W: AsyncWrite + Unpin + Send,
        Fut: Future<Output = std::io::Result<W>> + Send,
    {
        let all = self.sdk.read_all_files(contract, token, session, options);
        self.drive_all(all, Output::Stream, Some(()), &open, |f| f.head, on_event)
            .await
    }

    /// The coordinator loop of `digime_protocol::read_all`; tasks run concurrently
    /// inside this future.
    async fn drive_all<T: Send, W, Fut>(
        &self,
        mut all: ReadAllFiles<T>,
        output: Output,
        sink: Option<()>,
        open: &(impl Fn(&FileHead) -> Fut + Sync),
        value: impl Fn(FileData) -> T + Sync,
        mut on_event: impl FnMut(ReadAllEvent<T>),
    ) -> Result<ReadAllSummary, Error>
    where
        W: AsyncWrite + Unpin + Send,
        Fut: Future<Output = std::io::Result<W>> + Send,
    {
        enum Ended<T> {
            List(Result<Authed<FileList>, Error>),
            File(u64, Result<T, Error>),
            Refresh(Result<UserAccessToken, Error>),
        }
        type Running<'a, T> =
            FuturesUnordered<std::pin::Pin<Box<dyn Future<Output = Ended<T>> + Send + 'a>>>;
        let value = &value;
        let mut tasks: Running<'_, T> = FuturesUnordered::new();
        let handle = |all: &mut ReadAllFiles<T>, ended: Ended<T>| match ended {
            Ended::List(r) => all.list_done(r, SystemTime::now()),
            Ended::File(id, r) => all.file_done(id, r),
            Ended::Refresh(r) => all.refresh_done(r),
        };
        loop {
            match all.poll(SystemTime::now()) {
                ReadAllStep::Run(Task::List(t)) => tasks.push(Box::pin(async move {
                    Ended::List(self.run(t.into_flow(), None).await)
                })),
                ReadAllStep::Run(Task::Refresh(t)) => tasks.push(Box::pin(async move {
                    Ended::Refresh(self.run(t.into_flow(), None).await)
                })),
                ReadAllStep::Run(Task::File(t)) => tasks.push(Box::pin(async move {
                    let id = t.id;
                    let flow = t.into_flow(output);
                    let result = match sink {
                        Some(()) => {
                            let mut lazy = Lazy {
                                open,
                                head: None,
                                writer: None,
                            };
                            let r = self.drive(flow, None, &mut lazy).await;
                            lazy.close(r).await
                        }
                        None => self.drive(flow, None, &mut Discard).await,
                    };
                    Ended::File(id, result.map(|a| value(a.value)))
                })),
                ReadAllStep::Run(_) => {
                    return Err(Error::InvalidInput(
                        "read_all_files: a task unknown to this driver".into(),
                    ));
                }
                ReadAllStep::Sleep(d) => {
                    if tasks.is_empty() {
                        tokio::time::sleep(d).await;
                    } else {
                        tokio::select! {
                            Some(ended) = tasks.next() => handle(&mut all, ended),
                            _ = tokio::time::sleep(d) => {}
                        }
                    }
                }
                ReadAllStep::Wait => match tasks.next().await {
                    Some(ended) => handle(&mut all, ended),
                    None => {
                        return Err(Error::InvalidInput(
                            "read_all_files: waiting with no task running".into(),
                        ));
                    }
                },
                ReadAllStep::Event(event) => {
                    if let ReadAllEvent::TokenRefreshed(t) = &event {
                        self.announce(t);
                    }
                    on_event(event);
                }
                ReadAllStep::Done(result) => return result,
            }
        }
    }

    fn announce(&self, token: &UserAccessToken) {
        if let Some(listener) = &self.on_token {
            listener(token);
        }
    }

    /// Runs any flow; `upload` is the body of requests that carry [`Body::Upload`].
    async fn run<F: Flow + Send>(
        &self,
        flow: F,
        upload: Option<SharedUpload>,
    ) -> Result<F::Output, Error> {
        self.drive(flow, upload, &mut Discard).await
    }

    /// The loop of the flow module's docs, with streamed bodies written to `sink`.
    async fn drive<F: Flow + Send, S: Sink<F>>(
        &self,
        mut flow: F,
        upload: Option<SharedUpload>,
        sink: &mut S,
    ) -> Result<F::Output, Error> {
        let mut pending: Option<reqwest::Response> = None;
        let mut out = Vec::new();
        loop {
            match flow.poll(SystemTime::now()) {
                Step::Send(request) => {
                    pending = None;
                    match self.send(request, upload.as_ref()).await {
                        Ok((response, body)) => {
                            pending = body;
                            flow.handle_response(response);
                        }
                        Err(error) => flow.handle_transport_error(error),
                    }
                }
                Step::Receive => {
                    let Some(mut body) = pending.take() else {
                        flow.handle_transport_error(TransportError::new(
                            TransportErrorKind::Other,
                            "no response body to receive",
                        ));
                        continue;
                    };
                    loop {
                        let chunk =
                            match tokio::time::timeout(self.idle_timeout, body.chunk()).await {
                                Err(_) => Err(self.stalled()),
                                Ok(r) => r.map_err(transport_error),
                            };
                        out.clear();
                        match chunk {
                            Ok(Some(bytes)) => {
                                let more = flow.handle_body(&bytes, &mut out);
                                sink.observe(&flow);
                                if let Err(e) = sink.write(&out).await {
                                    flow.handle_transport_error(TransportError::sink(&e));
                                    break;
                                }
                                if !more {
                                    break;
                                }
                            }
                            Ok(None) => {
                                flow.handle_body_end(&mut out);
                                sink.observe(&flow);
                                if let Err(e) = sink.write(&out).await {
                                    flow.handle_transport_error(TransportError::sink(&e));
                                }
                                break;
                            }
                            Err(e) => {
                                flow.handle_transport_error(e);
                                break;
                            }
                        }
                    }
                }
                Step::Sleep(d) => tokio::time::sleep(d).await,
                Step::Event(Event::TokenRefreshed(token)) => self.announce(&token),
                Step::Event(_) => {}
                Step::Done(result) => return result,
            }
        }
    }

    async fn send(
        &self,
        request: http::Request<Body>,
        upload: Option<&SharedUpload>,
    ) -> Result<(http::Response<Vec<u8>>, Option<reqwest::Response>), TransportError> {
        let failure: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let stream = request.extensions().get::<StreamResponse>().is_some();
        let progress = Arc::new(Mutex::new(Instant::now()));
        let (mut parts, body) = request.into_parts();
        let body = match body {
            Body::Empty => reqwest::Body::from(Vec::new()),
            Body::Bytes(b) => reqwest::Body::from(b),
            Body::Upload(upload_kind) => {
                let Some(upload) = upload else {
                    return Err(TransportError::new(
                        TransportErrorKind::BodySource,
                        "this operation needs a body",
                    ));
                };
                let body_source =
                    |e: String| TransportError::new(TransportErrorKind::BodySource, e);
                let mut slot = upload.lock().await;
                slot.generation += 1;
                let generation = slot.generation;
                let reader = &mut slot.reader;
                // A postbox push: the body is the reader encoded by the core, of a
                // length the core computes from the reader's.
                let encoder = match upload_kind.is_plain() {
                    false => {
                        let len = reader
                            .seek(std::io::SeekFrom::End(0))
                            .await
                            .map_err(|e| body_source(e.to_string()))?;
                        parts.headers.insert(
                            http::header::CONTENT_LENGTH,
                            http::HeaderValue::from(upload_kind.body_len(len)),
                        );
                        Some(
                            upload_kind
                                .encoder()
                                .map_err(|e| body_source(e.to_string()))?,
                        )
                    }
                    true => None,
                };
                reader
                    .seek(std::io::SeekFrom::Start(0))
                    .await
                    .map_err(|e| body_source(e.to_string()))?;
                drop(slot);
                reqwest::Body::wrap_stream(upload_stream(
                    upload.clone(),
                    generation,
                    encoder,
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
        let head = |response: &reqwest::Response, bytes: Vec<u8>| {
            let mut out = http::Response::builder().status(response.status());
            if let Some(h) = out.headers_mut() {
                *h = response.headers().clone();
            }
            out.body(bytes)
                .map_err(|e| TransportError::new(TransportErrorKind::Other, e.to_string()))
        };
        if stream && response.status().is_success() {
            return Ok((head(&response, Vec::new())?, Some(response)));
        }
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
        Ok((head(&response, bytes)?, None))
    }
}

/// The postbox era of the older official SDKs (`digime_protocol::legacy`), through
/// [`Client::legacy`]; the same operations as `digime_blocking::legacy`, async.
///
/// ```no_run
/// use digime_async::Client;
/// use digime_protocol::legacy::{self, PostboxAuth};
/// use digime_protocol::{Config, Contract, FileDescriptor};
///
/// # async fn demo(token: digime_protocol::UserAccessToken) -> Result<(), digime_protocol::Error> {
/// let client = Client::new(Config::new("my-application-id")?);
/// let contract = Contract::from_pem("my-write-contract", &std::fs::read_to_string("key.pem").unwrap())?;
/// # let callback_url = "";
/// let callback = legacy::parse_saas_postbox_callback(callback_url)?.verify_state("state-123")?;
/// let file = tokio::fs::File::open("receipt.json").await.unwrap();
/// let pushed = client
///     .legacy()
///     .push_to_postbox(
///         &callback.postbox,
///         PostboxAuth::TokenJwt { contract, token },
///         "receipt.json",
///         &FileDescriptor::new("application/json"),
///         file,
///     )
///     .await?;
/// if let Some(new_token) = pushed.refreshed_token { /* persist it */ }
/// # Ok(()) }
/// ```
pub mod legacy {
    use super::{Client, Upload, shared_upload};
    use digime_protocol::auth::{AuthorizationCode, Scope};
    use digime_protocol::flow::Authed;
    use digime_protocol::legacy::{
        LegacySession, OngoingPostboxUrl, Postbox, PostboxAuth, PostboxPush,
    };
    use digime_protocol::{
        CodeVerifier, Contract, ContractId, Error, FileDescriptor, SessionKey, UserAccessToken,
    };

    /// The postbox-era operations of a [`Client`]; see `digime_protocol::legacy` for
    /// which API base and which [`PostboxAuth`] each era needs.
    #[derive(Debug, Clone, Copy)]
    pub struct LegacyClient<'a> {
        client: &'a Client,
    }

    impl Client {
        /// The postbox-era operations (SDK v0.5–v8 integrations).
        pub fn legacy(&self) -> LegacyClient<'_> {
            LegacyClient { client: self }
        }
    }

    impl LegacyClient<'_> {
        /// Establishes a session (`POST permission-access/session`, SDK v0.5–v4).
        pub async fn establish_session(
            &self,
            contract_id: &ContractId,
            scope: Option<&Scope>,
        ) -> Result<LegacySession, Error> {
            let flow = self
                .client
                .sdk
                .legacy()
                .establish_session(contract_id, scope)?;
            self.client.run(flow, None).await
        }

        /// The one-off `digime://postbox/create` deep link (no IO, so not async).
        pub fn create_postbox_url_once(
            &self,
            session_key: &SessionKey,
            callback_url: &str,
        ) -> Result<String, Error> {
            self.client
                .sdk
                .legacy()
                .create_postbox_url_once(session_key, callback_url)
        }

        /// Pre-authorizes an ongoing postbox (SDK v4): its deep link and the PKCE
        /// verifier to keep.
        pub async fn create_postbox_url_ongoing(
            &self,
            contract: &Contract,
            session_key: &SessionKey,
            redirect_uri: &str,
            state: Option<&str>,
        ) -> Result<OngoingPostboxUrl, Error> {
            let flow = self.client.sdk.legacy().create_postbox_url_ongoing(
                contract,
                session_key,
                redirect_uri,
                state,
            )?;
            self.client.run(flow, None).await
        }

        /// Exchanges an ongoing postbox's code for the user's token (SDK v4 flat format).
        pub async fn exchange_code_for_token_ongoing(
            &self,
            contract: &Contract,
            redirect_uri: &str,
            code: &AuthorizationCode,
            verifier: &CodeVerifier,
        ) -> Result<UserAccessToken, Error> {
            let flow = self.client.sdk.legacy().exchange_code_for_token_ongoing(
                contract,
                redirect_uri,
                code,
                verifier,
            )?;
            self.client.run(flow, None).await
        }

        /// Refreshes an ongoing postbox's token (SDK v4 flat format).
        pub async fn refresh_token_ongoing(
            &self,
            contract: &Contract,
            redirect_uri: &str,
            token: &UserAccessToken,
        ) -> Result<UserAccessToken, Error> {
            let flow =
                self.client
                    .sdk
                    .legacy()
                    .refresh_token_ongoing(contract, redirect_uri, token);
            self.client.run(flow, None).await
        }

        /// Pushes `body` into a postbox, encrypted and streamed in 64 KiB chunks (the
        /// request has a `Content-Length`). On `pending` with a token, the token is
        /// refreshed (the client's listener hears of it) and the body is rewound and
        /// pushed again under a new key.
        pub async fn push_to_postbox(
            &self,
            postbox: &Postbox,
            auth: PostboxAuth,
            file_name: &str,
            descriptor: &FileDescriptor,
            body: impl Upload,
        ) -> Result<Authed<PostboxPush>, Error> {
            let flow = self
                .client
                .sdk
                .legacy()
                .push_to_postbox(postbox, auth, file_name, descriptor)?;
            let shared = shared_upload(body);
            self.client.run(flow, Some(shared)).await
        }
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

/// Where a flow's streamed output goes.
trait Sink<F>: Send {
    /// Looks at the flow before a write (flows are `Send` but not `Sync`, so the
    /// write itself cannot hold on to them).
    fn observe(&mut self, flow: &F) {
        let _ = flow;
    }
    fn write(&mut self, data: &[u8]) -> impl Future<Output = std::io::Result<()>> + Send;
}

/// Drops output (flows that do not stream to the caller).
struct Discard;

impl<F> Sink<F> for Discard {
    async fn write(&mut self, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
}

/// The caller's writer.
struct Writer<'a, W>(&'a mut W);

impl<F, W: AsyncWrite + Unpin + Send> Sink<F> for Writer<'_, W> {
    async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.0.write_all(data).await
    }
}

/// A writer opened when a download's headers have arrived.
struct Lazy<'a, O, W> {
    open: &'a O,
    head: Option<FileHead>,
    writer: Option<W>,
}

impl<O, W, Fut> Sink<ReadFile> for Lazy<'_, O, W>
where
    O: Fn(&FileHead) -> Fut + Sync,
    Fut: Future<Output = std::io::Result<W>> + Send,
    W: AsyncWrite + Unpin + Send,
{
    fn observe(&mut self, flow: &ReadFile) {
        if self.writer.is_none() && self.head.is_none() {
            self.head = flow.head().cloned();
        }
    }

    async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        if self.writer.is_none()
            && let Some(head) = self.head.take()
        {
            self.writer = Some((self.open)(&head).await?);
        }
        match self.writer.as_mut() {
            Some(w) if !data.is_empty() => w.write_all(data).await,
            _ => Ok(()),
        }
    }
}

impl<O, W: AsyncWrite + Unpin + Send> Lazy<'_, O, W> {
    /// Flushes and shuts the writer down; a failure there fails the download.
    async fn close(
        &mut self,
        result: Result<Authed<FileData>, Error>,
    ) -> Result<Authed<FileData>, Error> {
        let Some(w) = self.writer.as_mut() else {
            return result;
        };
        let closed = w.shutdown().await;
        match (result, closed) {
            (Ok(_), Err(e)) => Err(Error::Transport(TransportError::sink(&e))),
            (r, _) => r,
        }
    }
}

/// Streams the shared upload in chunks, through the core's encoder when there is one
/// (a postbox push), recording a read failure of the caller's body and the time of the
/// last chunk handed to the connection.
fn upload_stream(
    upload: SharedUpload,
    generation: u64,
    encoder: Option<UploadEncoder>,
    failure: Arc<Mutex<Option<String>>>,
    progress: Arc<Mutex<Instant>>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    struct State {
        upload: SharedUpload,
        generation: u64,
        buf: Vec<u8>,
        encoder: Option<UploadEncoder>,
        encoded: bool,
        failure: Arc<Mutex<Option<String>>>,
        progress: Arc<Mutex<Instant>>,
    }
    let encoded = encoder.is_some();
    let state = State {
        upload,
        generation,
        buf: vec![0u8; UPLOAD_CHUNK],
        encoder,
        encoded,
        failure,
        progress,
    };
    futures_util::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        loop {
            *state.progress.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
            let read = {
                let mut slot = state.upload.lock().await;
                if slot.generation != state.generation {
                    // A later attempt owns the reader now.
                    return Some((
                        Err(std::io::Error::other("superseded by a later attempt")),
                        None,
                    ));
                }
                slot.reader.read(&mut state.buf).await
            };
            let n = match read {
                Ok(n) => n,
                Err(e) => {
                    *state.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                    return Some((Err(e), None));
                }
            };
            if !state.encoded {
                if n == 0 {
                    return None;
                }
                return Some((Ok(Bytes::copy_from_slice(&state.buf[..n])), Some(state)));
            }
            let mut out = Vec::with_capacity(n + 1024);
            let result = match (n, state.encoder.take()) {
                (_, None) => return None,
                (0, Some(encoder)) => encoder.finish(&mut out),
                (n, Some(mut encoder)) => {
                    let r = encoder.encode(&state.buf[..n], &mut out);
                    state.encoder = Some(encoder);
                    r
                }
            };
            if let Err(e) = result {
                *state.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                return Some((Err(std::io::Error::other(e.to_string())), None));
            }
            if !out.is_empty() {
                return Some((Ok(Bytes::from(out)), Some(state)));
            }
        }
    })
}

fn transport_error(e: reqwest::Error) -> TransportError {
    // An I/O failure underneath is classified by the core's table, as in the blocking
    // driver; hyper's own "connection closed before the message completed" carries no
    // I/O error and is a reset.
    let mut source = std::error::Error::source(&e);
    let mut io_kind = None;
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
            break;
        }
        source = err.source();
    }
    let kind = if e.is_timeout() {
        TransportErrorKind::Timeout
    } else if e.is_connect() {
        TransportErrorKind::Connect
    } else if let Some(kind) = io_kind {
        TransportErrorKind::from_io(kind)
    } else if e.is_body() || e.is_request() {
        TransportErrorKind::Reset
    } else {
        TransportErrorKind::Other
    };
    TransportError::new(kind, e.to_string())
}

#[cfg(test)]
mod legacy_tests {
    use super::Client;
    use digime_crypto::{PrivateKey, cbc, jws};
    use digime_protocol::legacy::{Postbox, PostboxAuth, PostboxStatus};
    use digime_protocol::{Config, Contract, FileDescriptor, KeySet, UserAccessToken};
    use std::io::{BufRead, BufReader, Read as _, Write as _};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    /// One request as the test server received it.
    struct Captured {
        head: String,
        body: Vec<u8>,
    }

    impl Captured {
        fn header(&self, name: &str) -> Option<String> {
            self.head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        }

        fn claims(&self) -> serde_json::Value {
            let auth = self.header("authorization").unwrap();
            let jwt = auth.strip_prefix("Bearer ").unwrap();
            let payload = jws::Compact::parse(jwt).unwrap().payload().unwrap();
            serde_json::from_slice(&payload).unwrap()
        }

        /// Decrypts the pushed file as a server would.
        fn open_push(&self, postbox_key: &PrivateKey) -> Vec<u8> {
            let c = self.claims();
            let std_b64 = |s: &str| {
                let url: String = s
                    .trim_end_matches('=')
                    .chars()
                    .map(|c| match c {
                        '+' => '-',
                        '/' => '_',
                        c => c,
                    })
                    .collect();
                digime_crypto::b64url_decode(&url).unwrap()
            };
            let key = postbox_key
                .decrypt_oaep_sha1(&std_b64(c["symmetrical_key"].as_str().unwrap()))
                .unwrap();
            let iv_hex = c["iv"].as_str().unwrap();
            let iv: Vec<u8> = (0..16)
                .map(|i| u8::from_str_radix(&iv_hex[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            let ct = self.header("content-type").unwrap();
            let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
            let close = format!("\r\n--{boundary}--\r\n");
            assert!(
                self.body
                    .starts_with(format!("--{boundary}\r\n").as_bytes())
            );
            assert!(self.body.ends_with(close.as_bytes()));
            let start = self.body.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            let c_file = &self.body[start..self.body.len() - close.len()];
            cbc::decrypt(
                &key[..].try_into().unwrap(),
                &iv[..].try_into().unwrap(),
                c_file,
            )
            .unwrap()
        }
    }

    /// A one-request-per-connection HTTP/1.1 server answering with `responses` in order.
    fn serve(responses: Vec<(u16, String)>) -> (String, std::thread::JoinHandle<Vec<Captured>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}/v1.7/", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let mut got = Vec::new();
            for (status, answer) in responses {
                let (mut stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    head.push_str(&line);
                }
                let mut c = Captured {
                    head,
                    body: Vec::new(),
                };
                if let Some(len) = c.header("content-length") {
                    c.body.resize(len.parse().unwrap(), 0);
                    reader.read_exact(&mut c.body).unwrap();
                } else if c.header("transfer-encoding").as_deref() == Some("chunked") {
                    loop {
                        let mut size = String::new();
                        reader.read_line(&mut size).unwrap();
                        let n = usize::from_str_radix(size.trim(), 16).unwrap();
                        let mut chunk = vec![0u8; n + 2];
                        reader.read_exact(&mut chunk).unwrap();
                        if n == 0 {
                            break;
                        }
                        c.body.extend_from_slice(&chunk[..n]);
                    }
                }
                write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                )
                .unwrap();
                got.push(c);
            }
            got
        });
        (base, handle)
    }

    struct Setup {
        keys: KeySet,
        contract: Contract,
        postbox_key: PrivateKey,
        postbox: Postbox,
        token: UserAccessToken,
        data: Vec<u8>,
        responses: Vec<(u16, String)>,
    }

    fn setup() -> Setup {
        let server = PrivateKey::generate().unwrap();
        let signed = jws::sign(
            br#"{"alg":"PS512","typ":"JWT","kid":"k"}"#,
            br#"{"access_token":{"value":"new","expires_on":4000000000},"refresh_token":{"value":"r2","expires_on":4000000000}}"#,
            &server,
        )
        .unwrap();
        let postbox_key = PrivateKey::generate().unwrap();
        Setup {
            keys: KeySet::from_keys([("k".to_string(), server.public_key())]),
            contract: Contract::new("c", PrivateKey::generate().unwrap()).unwrap(),
            postbox: Postbox::new("pbx-1", &postbox_key.public_key().to_pkcs1_pem()).unwrap(),
            postbox_key,
            token: serde_json::from_str(
                r#"{"accessToken":{"value":"old","expiry":1},"refreshToken":{"value":"r1","expiry":2}}"#,
            )
            .unwrap(),
            data: (0..200_000u32).map(|i| (i % 253) as u8).collect(),
            responses: vec![
                (200, r#"{"status":"pending","expires":200000}"#.into()),
                (201, format!(r#"{{"token":"{signed}"}}"#)),
                (200, r#"{"status":"delivered","expires":200000}"#.into()),
            ],
        }
    }

    fn config(base: &str) -> Config {
        Config::new("app").unwrap().with_base_url(base).unwrap()
    }

    fn check(s: &Setup, got: &[Captured], heard: &Mutex<Vec<String>>) {
        assert_eq!(got.len(), 3);
        let (first, refresh, second) = (&got[0], &got[1], &got[2]);
        assert!(
            first
                .head
                .starts_with("POST /v1.7/permission-access/postbox/pbx-1 ")
        );
        assert!(refresh.head.starts_with("POST /v1.7/oauth/token "));
        for push in [first, second] {
            // A fixed length, not chunked, and exactly the body.
            assert_eq!(
                push.header("content-length").unwrap(),
                push.body.len().to_string()
            );
            assert!(push.header("transfer-encoding").is_none());
            assert_eq!(push.open_push(&s.postbox_key), s.data);
        }
        assert_eq!(first.claims()["access_token"], "old");
        assert_eq!(second.claims()["access_token"], "new");
        assert_ne!(first.claims()["iv"], second.claims()["iv"]);
        assert_eq!(*heard.lock().unwrap(), vec!["new".to_string()]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pending_push_refreshes_and_streams_the_file_again_with_a_content_length() {
        let s = setup();
        let (base, server) = serve(s.responses.clone());
        let heard = Arc::new(Mutex::new(Vec::new()));
        let h = heard.clone();
        let client = Client::new(config(&base)).on_token_refreshed(move |t| {
            h.lock()
                .unwrap()
                .push(t.access_token.value.expose().to_owned())
        });
        client.sdk().use_static_server_keys(s.keys.clone());
        let auth = PostboxAuth::TokenJwt {
            contract: s.contract.clone(),
            token: s.token.clone(),
        };
        let pushed = client
            .legacy()
            .push_to_postbox(
                &s.postbox,
                auth,
                "big.bin",
                &FileDescriptor::new("application/octet-stream"),
                std::io::Cursor::new(s.data.clone()),
            )
            .await
            .unwrap();
        assert_eq!(pushed.value.status, PostboxStatus::Delivered);
        assert_eq!(
            pushed.refreshed_token.unwrap().refresh_token.value.expose(),
            "r2"
        );
        let got = tokio::task::spawn_blocking(move || server.join().unwrap())
            .await
            .unwrap();
        check(&s, &got, &heard);
    }
}
