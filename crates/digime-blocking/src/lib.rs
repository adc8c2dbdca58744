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
        }
        let (tx, rx) = std::sync::mpsc::channel::<Ended<T>>();
        let (open, value) = (&open, &value);
        std::thread::scope(|scope| {
            let handle = |all: &mut ReadAllFiles<T>, ended: Ended<T>| match ended {
                Ended::List(r) => all.list_done(r, SystemTime::now()),
                Ended::File(id, r) => all.file_done(id, r),
                Ended::Refresh(r) => all.refresh_done(r),
            };
            loop {
                match all.poll(SystemTime::now()) {
                    ReadAllStep::Run(task) => {
                        let tx = tx.clone();
                        let client = self.clone();
                        scope.spawn(move || {
                            let ended = match task {
                                Task::List(t) => Ended::List(client.run(t.into_flow(), None)),
                                Task::Refresh(t) => Ended::Refresh(client.run(t.into_flow(), None)),
                                Task::File(t) => {
                                    let id = t.id;
                                    Ended::File(
                                        id,
                                        client.download(t.into_flow(output), open).map(value),
                                    )
                                }
                                _ => return,
                            };
                            let _ = tx.send(ended);
                        });
                    }
                    ReadAllStep::Sleep(d) => {
                        if let Ok(ended) = rx.recv_timeout(d) {
                            handle(&mut all, ended);
                        }
                    }
                    ReadAllStep::Wait => match rx.recv() {
                        Ok(ended) => handle(&mut all, ended),
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
        self.drive(flow, None, &mut |_, data| sink.write_all(data))
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
        let (parts, body) = request.into_parts();
        let stream = parts.extensions.get::<StreamResponse>().is_some();
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

fn io_transport_error(e: &std::io::Error) -> TransportError {
    let kind = match e.kind() {
        std::io::ErrorKind::TimedOut => TransportErrorKind::Timeout,
        std::io::ErrorKind::ConnectionRefused => TransportErrorKind::Connect,
        std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::ConnectionAborted
        | std::io::ErrorKind::BrokenPipe
        | std::io::ErrorKind::UnexpectedEof => TransportErrorKind::Reset,
        _ => match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<ureq::Error>())
        {
            Some(ureq::Error::Timeout(_)) => TransportErrorKind::Timeout,
            _ => TransportErrorKind::Reset,
        },
    };
    TransportError::new(kind, e.to_string())
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
