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
use digime_protocol::read::Account;
use digime_protocol::read::StreamResponse;
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
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

type TokenListener = Arc<dyn Fn(&UserAccessToken) + Send + Sync>;

/// Size of the reads of a streamed response body.
const READ_CHUNK: usize = 64 * 1024;

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

    /// Starts a read session: the user's sources sync; the session key reads the file
    /// list and the files.
    pub fn read_session(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        options: &PullOptions,
    ) -> Result<Authed<Session>, Error> {
        self.run(self.sdk.read_session(contract, token, options), None)
    }

    /// The session's file list and sync status.
    pub fn read_file_list(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        session: &SessionKey,
    ) -> Result<Authed<FileList>, Error> {
        self.run(self.sdk.read_file_list(contract, token, session), None)
    }

    /// Downloads, decrypts and decompresses a file into memory.
    pub fn read_file(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        session: &SessionKey,
        file_name: &str,
    ) -> Result<Authed<FileData>, Error> {
        let flow = self
            .sdk
            .read_file(contract, token, session, file_name, Output::Buffer)?;
        self.run(flow, None)
    }

    /// Downloads a file, decrypting and decompressing it into `sink` as it arrives (a
    /// 1 GiB file passes in constant memory). The bytes are only valid once this
    /// returns `Ok`: the envelope has no MAC, so truncation and corruption show at the
    /// end; on an error, discard what was written.
    pub fn read_file_to(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        session: &SessionKey,
        file_name: &str,
        sink: &mut dyn Write,
    ) -> Result<Authed<FileHead>, Error> {
        let flow = self
            .sdk
            .read_file(contract, token, session, file_name, Output::Stream)?;
        self.run_to(flow, sink).map(|a| Authed {
            value: a.value.head,
            refreshed_token: a.refreshed_token,
        })
    }

    /// A file's metadata, without its body (`HEAD`).
    pub fn read_file_metadata(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        session: &SessionKey,
        file_name: &str,
    ) -> Result<Authed<FileHead>, Error> {
        let flow = self
            .sdk
            .read_file_metadata(contract, token, session, file_name)?;
        self.run(flow, None)
    }

    /// The user's source accounts.
    pub fn read_accounts(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
    ) -> Result<Authed<Vec<Account>>, Error> {
        self.run(self.sdk.read_accounts(contract, token), None)
    }

    /// Reads every file of a session as its sync goes on, into memory, calling
    /// `on_event` (on this thread) for status changes, each file, each file error and
    /// refreshed tokens. Downloads run on up to `options.max_concurrency` threads.
    /// Stop it from anywhere with `options.stop`.
    pub fn read_all_files(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        session: &SessionKey,
        options: ReadAllOptions,
        on_event: impl FnMut(ReadAllEvent<FileData>),
    ) -> Result<ReadAllSummary, Error> {
        let all = self.sdk.read_all_files(contract, token, session, options);
        self.drive_all(
            all,
            Output::Buffer,
            |_| None::<std::io::Result<std::io::Sink>>,
            |f| f,
            on_event,
        )
    }

    /// Like [`Client::read_all_files`], but each file is decrypted and decompressed
    /// into the writer `open` returns for it (called on a download thread once the
    /// file's headers have arrived), in constant memory. A file reported as
    /// [`ReadAllEvent::FileError`] may have been partly written: discard it.
    pub fn read_all_files_to<W: Write>(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        session: &SessionKey,
        options: ReadAllOptions,
        open: impl Fn(&FileHead) -> std::io::Result<W> + Sync,
        on_event: impl FnMut(ReadAllEvent<FileHead>),
    ) -> Result<ReadAllSummary, Error> {
        let all = self.sdk.read_all_files(contract, token, session, options);
        self.drive_all(all, Output::Stream, |h| Some(open(h)), |f| f.head, on_event)
    }

    /// The coordinator loop of `digime_protocol::read_all`, with each task on a
    /// thread of its own.
    fn drive_all<T: Send, W: Write>(
        &self,
        mut all: ReadAllFiles<T>,
        output: Output,
        open: impl Fn(&FileHead) -> Option<std::io::Result<W>> + Sync,
        value: impl Fn(FileData) -> T + Sync,
        mut on_event: impl FnMut(ReadAllEvent<T>),
    ) -> Result<ReadAllSummary, Error> {
        enum Ended<T> {
            List(Result<Authed<FileList>, Error>),
            File(u64, Result<T, Error>),
            Refresh(Result<UserAccessToken, Error>),
            /// A task that panicked or that this driver does not know.
            Lost,
        }
        let (tx, rx) = std::sync::mpsc::channel::<Ended<T>>();
        let (open, value) = (&open, &value);
        std::thread::scope(|scope| {
            let handle = |all: &mut ReadAllFiles<T>, ended: Ended<T>| {
                match ended {
                    Ended::List(r) => all.list_done(r, SystemTime::now()),
                    Ended::File(id, r) => all.file_done(id, r),
                    Ended::Refresh(r) => all.refresh_done(r),
                    Ended::Lost => {
                        return Err(Error::InvalidInput(
                            "read_all_files: a task panicked or is unknown to this driver".into(),
                        ));
                    }
                }
                Ok(())
            };
            loop {
                match all.poll(SystemTime::now()) {
                    ReadAllStep::Run(task) => {
                        let tx = tx.clone();
                        let client = self.clone();
                        scope.spawn(move || {
                            // Whatever happens on this thread (a panic in the caller's
                            // `open`, an unknown task), the coordinator hears of it:
                            // it must never wait for a report that cannot come.
                            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                                || match task {
                                    Task::List(t) => {
                                        Some(Ended::List(client.run(t.into_flow(), None)))
                                    }
                                    Task::Refresh(t) => {
                                        Some(Ended::Refresh(client.run(t.into_flow(), None)))
                                    }
                                    Task::File(t) => {
                                        let id = t.id;
                                        Some(Ended::File(
                                            id,
                                            client.download(t.into_flow(output), open).map(value),
                                        ))
                                    }
                                    _ => None,
                                },
                            ));
                            let _ = tx.send(ran.ok().flatten().unwrap_or(Ended::Lost));
                        });
                    }
                    ReadAllStep::Sleep(d) => {
                        if let Ok(ended) = rx.recv_timeout(d) {
                            handle(&mut all, ended)?;
                        }
                    }
                    ReadAllStep::Wait => match rx.recv() {
                        Ok(ended) => handle(&mut all, ended)?,
                        Err(_) => {
                            return Err(Error::InvalidInput(
                                "read_all_files: a task ended without reporting".into(),
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
        })
    }

    /// Runs a download, opening the sink (if any) when the headers arrive.
    fn download<W: Write>(
        &self,
        flow: ReadFile,
        open: &dyn Fn(&FileHead) -> Option<std::io::Result<W>>,
    ) -> Result<FileData, Error> {
        let mut sink: Option<W> = None;
        let result = self.drive(flow, None, &mut |flow: &ReadFile, data: &[u8]| {
            if sink.is_none()
                && let Some(head) = flow.head()
            {
                sink = open(head).transpose()?;
            }
            match sink.as_mut() {
                Some(w) if !data.is_empty() => w.write_all(data),
                _ => Ok(()),
            }
        });
        let flushed = sink.as_mut().map_or(Ok(()), Write::flush);
        match (result, flushed) {
            (Ok(_), Err(e)) => Err(Error::Transport(TransportError::sink(&e))),
            (r, _) => r.map(|a| a.value),
        }
    }

    /// Runs any flow. `upload` is the body of requests that carry [`Body::Upload`];
    /// output of a flow that streams to the caller ([`Output::Stream`]) is dropped:
    /// use [`Client::run_to`] for those.
    pub fn run<F: Flow>(
        &self,
        flow: F,
        upload: Option<&mut dyn ReadSeek>,
    ) -> Result<F::Output, Error> {
        self.drive(flow, upload, &mut |_, _| Ok(()))
    }

    /// Runs a flow whose output goes to `sink` (a [`ReadFile`] with [`Output::Stream`]).
    pub fn run_to<F: Flow>(&self, flow: F, sink: &mut dyn Write) -> Result<F::Output, Error> {
        let done = self.drive(flow, None, &mut |_, data| sink.write_all(data))?;
        // A buffered sink's last write fails here, not in `write_all`.
        sink.flush()
            .map_err(|e| Error::Transport(TransportError::sink(&e)))?;
        Ok(done)
    }

    /// The loop of the flow module's docs. `sink` gets the flow (for its state, e.g.
    /// the head of a file) and each piece of output.
    fn drive<F: Flow>(
        &self,
        mut flow: F,
        mut upload: Option<&mut dyn ReadSeek>,
        sink: &mut dyn FnMut(&F, &[u8]) -> std::io::Result<()>,
    ) -> Result<F::Output, Error> {
        let mut pending: Option<ureq::BodyReader<'static>> = None;
        let mut out = Vec::new();
        loop {
            match flow.poll(SystemTime::now()) {
                Step::Send(request) => {
                    pending = None;
                    match self.send(request, upload.as_deref_mut()) {
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
                    let mut buf = vec![0u8; READ_CHUNK];
                    loop {
                        match body.read(&mut buf) {
                            Ok(0) => {
                                out.clear();
                                flow.handle_body_end(&mut out);
                                if let Err(e) = sink(&flow, &out) {
                                    flow.handle_transport_error(TransportError::sink(&e));
                                }
                                break;
                            }
                            Ok(n) => {
                                out.clear();
                                let more = flow.handle_body(&buf[..n], &mut out);
                                if let Err(e) = sink(&flow, &out) {
                                    flow.handle_transport_error(TransportError::sink(&e));
                                    break;
                                }
                                if !more {
                                    break;
                                }
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(e) => {
                                flow.handle_transport_error(io_transport_error(&e));
                                break;
                            }
                        }
                    }
                }
                Step::Sleep(d) => std::thread::sleep(d),
                Step::Event(Event::TokenRefreshed(token)) => self.announce(&token),
                Step::Event(_) => {}
                Step::Done(result) => return result,
            }
        }
    }

    fn announce(&self, token: &UserAccessToken) {
        if let Some(listener) = &self.on_token {
            listener(token);
        }
    }

    /// Sends a request. A 2xx answer to a request marked [`StreamResponse`] comes back
    /// with an empty body and its body reader, unread.
    fn send<'b>(
        &self,
        request: http::Request<Body>,
        upload: Option<&mut (dyn ReadSeek + 'b)>,
    ) -> Result<(http::Response<Vec<u8>>, Option<ureq::BodyReader<'static>>), TransportError> {
        let (mut parts, body) = request.into_parts();
        let stream = parts.extensions.get::<StreamResponse>().is_some();
        let result = match body {
            Body::Empty => self.agent.run(http::Request::from_parts(parts, ())),
            Body::Bytes(bytes) => self.agent.run(http::Request::from_parts(parts, bytes)),
            Body::Upload(upload_kind) => {
                let Some(reader) = upload else {
                    return Err(TransportError::new(
                        TransportErrorKind::BodySource,
                        "this operation needs a body",
                    ));
                };
                let body_source =
                    |e: String| TransportError::new(TransportErrorKind::BodySource, e);
                // A postbox push: the body is the reader encoded by the core, of a
                // length the core computes from the reader's.
                let encoder = match upload_kind.is_plain() {
                    false => {
                        let len = reader
                            .seek(SeekFrom::End(0))
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
                    .seek(SeekFrom::Start(0))
                    .map_err(|e| body_source(e.to_string()))?;
                let failure = Arc::new(Mutex::new(None));
                let mut tracked = Tracked {
                    inner: reader,
                    failure: failure.clone(),
                };
                let r = match encoder {
                    None => self.agent.run(http::Request::from_parts(
                        parts,
                        ureq::SendBody::from_reader(&mut tracked),
                    )),
                    Some(encoder) => {
                        let mut encoded = Encoded {
                            inner: &mut tracked,
                            encoder: Some(encoder),
                            chunk: vec![0u8; READ_CHUNK],
                            out: Vec::new(),
                            pos: 0,
                            failure: failure.clone(),
                        };
                        self.agent.run(http::Request::from_parts(
                            parts,
                            ureq::SendBody::from_reader(&mut encoded),
                        ))
                    }
                };
                if let Some(msg) = failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    return Err(TransportError::new(TransportErrorKind::BodySource, msg));
                }
                r
            }
        };
        let response = result.map_err(transport_error)?;
        if stream && response.status().is_success() {
            let (parts, body) = response.into_parts();
            return Ok((
                http::Response::from_parts(parts, Vec::new()),
                Some(body.into_reader()),
            ));
        }
        let mut response = response;
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES as u64)
            .read_to_vec()
            .map_err(transport_error)?;
        let (parts, _) = response.into_parts();
        Ok((http::Response::from_parts(parts, bytes), None))
    }
}

/// The postbox era of the older official SDKs (`digime_protocol::legacy`), through
/// [`Client::legacy`].
///
/// ```no_run
/// use digime_blocking::Client;
/// use digime_protocol::legacy::{self, PostboxAuth};
/// use digime_protocol::{Config, ContractId, FileDescriptor};
///
/// # fn main() -> Result<(), digime_protocol::Error> {
/// let client = Client::new(Config::new("my-application-id")?.with_base_url(legacy::BASE_URL_V1_4)?);
/// let session = client.legacy().establish_session(&ContractId::new("my-contract")?, None)?;
/// let link = client.legacy().create_postbox_url_once(&session.session_key, "https://app.example/push")?;
/// // ... open `link` on the user's phone; the digi.me app calls the callback back ...
/// # let callback_url = "";
/// let callback = legacy::parse_postbox_callback(callback_url)?;
/// let auth = PostboxAuth::Headers { session_key: session.session_key };
/// let file = std::fs::File::open("receipt.json").unwrap();
/// let pushed = client.legacy().push_to_postbox(
///     &callback.postbox, auth, "receipt.json", &FileDescriptor::new("application/json"), file)?;
/// println!("{:?}", pushed.value.status);
/// # Ok(()) }
/// ```
pub mod legacy {
    use super::Client;
    use digime_protocol::auth::{AuthorizationCode, Scope};
    use digime_protocol::flow::Authed;
    use digime_protocol::legacy::{
        LegacySession, OngoingPostboxUrl, Postbox, PostboxAuth, PostboxPush,
    };
    use digime_protocol::{
        CodeVerifier, Contract, ContractId, Error, FileDescriptor, SessionKey, UserAccessToken,
    };
    use std::io::{Read, Seek};

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
        pub fn establish_session(
            &self,
            contract_id: &ContractId,
            scope: Option<&Scope>,
        ) -> Result<LegacySession, Error> {
            let flow = self
                .client
                .sdk
                .legacy()
                .establish_session(contract_id, scope)?;
            self.client.run(flow, None)
        }

        /// The one-off `digime://postbox/create` deep link (no IO).
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
        pub fn create_postbox_url_ongoing(
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
            self.client.run(flow, None)
        }

        /// Exchanges an ongoing postbox's code for the user's token (SDK v4 flat format).
        pub fn exchange_code_for_token_ongoing(
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
            self.client.run(flow, None)
        }

        /// Refreshes an ongoing postbox's token (SDK v4 flat format).
        pub fn refresh_token_ongoing(
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
            self.client.run(flow, None)
        }

        /// Pushes `body` into a postbox, encrypted and streamed (a 1 GiB file is never
        /// held in memory; the request has a `Content-Length`). On `pending` with a
        /// token, the token is refreshed (the client's listener hears of it) and the
        /// body is rewound and pushed again under a new key.
        pub fn push_to_postbox<R: Read + Seek>(
            &self,
            postbox: &Postbox,
            auth: PostboxAuth,
            file_name: &str,
            descriptor: &FileDescriptor,
            mut body: R,
        ) -> Result<Authed<PostboxPush>, Error> {
            let flow = self
                .client
                .sdk
                .legacy()
                .push_to_postbox(postbox, auth, file_name, descriptor)?;
            self.client.run(flow, Some(&mut body))
        }
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
            // An interrupted read is simply read again by the HTTP library.
            if e.kind() != std::io::ErrorKind::Interrupted {
                *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            }
        })
    }
}

/// The caller's reader passed through the core's [`UploadEncoder`] (a postbox push).
struct Encoded<'a, R> {
    inner: &'a mut R,
    encoder: Option<UploadEncoder>,
    chunk: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
    failure: Arc<Mutex<Option<String>>>,
}

impl<R: Read> Read for Encoded<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.pos < self.out.len() {
                let n = buf.len().min(self.out.len() - self.pos);
                buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            let Some(encoder) = self.encoder.as_mut() else {
                return Ok(0);
            };
            self.out.clear();
            self.pos = 0;
            let n = self.inner.read(&mut self.chunk)?;
            let encoded = if n == 0 {
                self.encoder
                    .take()
                    .map_or(Ok(()), |e| e.finish(&mut self.out))
            } else {
                encoder.encode(&self.chunk[..n], &mut self.out)
            };
            if let Err(e) = encoded {
                *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                return Err(std::io::Error::other(e.to_string()));
            }
        }
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

fn io_transport_error(e: &std::io::Error) -> TransportError {
    let kind = match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ureq::Error>())
    {
        Some(ureq::Error::Timeout(_)) => TransportErrorKind::Timeout,
        _ => TransportErrorKind::from_io(e.kind()),
    };
    TransportError::new(kind, e.to_string())
}

fn transport_error(e: ureq::Error) -> TransportError {
    let kind = match &e {
        ureq::Error::Timeout(_) => TransportErrorKind::Timeout,
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => TransportErrorKind::Connect,
        ureq::Error::BodyExceedsLimit(_) => TransportErrorKind::ResponseTooLarge,
        ureq::Error::Io(io) => TransportErrorKind::from_io(io.kind()),
        _ => TransportErrorKind::Other,
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

    #[test]
    fn a_pending_push_refreshes_and_streams_the_file_again_with_a_content_length() {
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
            .unwrap();
        assert_eq!(pushed.value.status, PostboxStatus::Delivered);
        assert_eq!(
            pushed.refreshed_token.unwrap().refresh_token.value.expose(),
            "r2"
        );
        check(&s, &server.join().unwrap(), &heard);
    }
}
