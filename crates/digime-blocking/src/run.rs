//! The one run loop: any [`Flow`], its uploads, its streamed answers, and the
//! read-all coordinator on top.

use crate::Client;
use digime_protocol::error::{TransportError, TransportErrorKind};
use digime_protocol::flow::{self, Authed, Event, Flow, Step, UserOperation};
use digime_protocol::read::StreamResponse;
use digime_protocol::read_all::{ReadAllFiles, ReadAllStep, Task, TaskEnd};
use digime_protocol::upload::{Upload, UploadPump};
use digime_protocol::wire::{Body, MAX_RESPONSE_BYTES, SlowBodyGuard};
use digime_protocol::{Contract, Error, FileData, FileHead, Output, ReadFile};
use digime_protocol::{ReadAllEvent, ReadAllSummary, UserAccessToken};
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::{Duration, Instant, SystemTime};

/// Size of the reads of a streamed response body, and of the caller's reader when
/// its bytes are transformed.
const CHUNK: usize = 256 * 1024;
/// Size of ureq's write buffer: a sized upload is read from the caller's reader
/// straight into it, so this is the size of each write to the socket.
const WRITE_BUFFER: usize = 1024 * 1024;

/// `Read + Seek`, object-safe.
pub trait ReadSeek: Read + Seek {}
impl<T: Read + Seek + ?Sized> ReadSeek for T {}

/// Where a flow's streamed output goes: it sees the flow before each write (for its
/// state, e.g. the head of a file) and is flushed once the flow is done.
trait Sink<F> {
    fn write(&mut self, flow: &F, data: &[u8]) -> std::io::Result<()>;
    fn flush(&mut self) -> std::io::Result<()>;
}

impl<F, W: Write + ?Sized> Sink<F> for &mut W {
    fn write(&mut self, _: &F, data: &[u8]) -> std::io::Result<()> {
        self.write_all(data)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Write::flush(*self)
    }
}

/// A writer opened when a download's headers have arrived.
struct Lazy<'a, W> {
    open: &'a (dyn Fn(&FileHead) -> std::io::Result<W> + Sync),
    writer: Option<W>,
}

impl<W: Write> Sink<ReadFile> for Lazy<'_, W> {
    fn write(&mut self, flow: &ReadFile, data: &[u8]) -> std::io::Result<()> {
        if self.writer.is_none()
            && let Some(head) = flow.head()
        {
            self.writer = Some((self.open)(head)?);
        }
        match self.writer.as_mut() {
            Some(w) if !data.is_empty() => w.write_all(data),
            _ => Ok(()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.as_mut().map_or(Ok(()), Write::flush)
    }
}

impl Client {
    /// Runs any flow. `upload` is the body of its requests that carry
    /// [`Body::Upload`] (sent with a `Content-Length`, rewound before every attempt);
    /// output of a flow that streams to the caller ([`Output::Stream`]) is dropped:
    /// use [`Client::run_to`] for those.
    pub fn run<F: Flow>(
        &self,
        flow: F,
        upload: Option<&mut dyn ReadSeek>,
    ) -> Result<F::Output, Error> {
        self.drive(flow, upload, &mut &mut std::io::sink())
    }

    /// [`Client::run`] with an upload body.
    pub fn run_with_upload<F: Flow>(
        &self,
        flow: F,
        mut body: impl Read + Seek,
    ) -> Result<F::Output, Error> {
        self.run(flow, Some(&mut body))
    }

    /// Runs a flow whose output goes to `sink` (a [`ReadFile`] with
    /// [`Output::Stream`]); `sink` is flushed at the end, and a failed flush fails the
    /// run.
    pub fn run_to<F: Flow>(&self, flow: F, mut sink: &mut dyn Write) -> Result<F::Output, Error> {
        self.drive(flow, None, &mut sink)
    }

    /// Runs any operation made with a user's token (`sdk.call`): refreshed once on
    /// 401, the new token announced to the listener and returned in the result.
    pub fn call<O: UserOperation>(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        op: O,
    ) -> Result<Authed<O::Output>, Error> {
        self.run(self.sdk.call(contract, token, op), None)
    }

    /// The loop of the flow module's docs.
    fn drive<F: Flow>(
        &self,
        mut flow: F,
        mut upload: Option<&mut dyn ReadSeek>,
        sink: &mut dyn Sink<F>,
    ) -> Result<F::Output, Error> {
        let mut pending: Option<ureq::BodyReader<'static>> = None;
        let mut out = Vec::new();
        let mut buf = Vec::new();
        let result = loop {
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
                        flow.handle_transport_error(flow::no_body_kept());
                        continue;
                    };
                    buf.resize(CHUNK, 0);
                    let mut floor = SlowBodyGuard::new(self.idle);
                    loop {
                        let asked = Instant::now();
                        let read = body.read(&mut buf);
                        if let Ok(n) = read
                            && let Err(e) = floor.record(n, asked.elapsed())
                        {
                            flow.handle_transport_error(e);
                            break;
                        }
                        let chunk = match read {
                            Ok(0) => None,
                            Ok(n) => Some(&buf[..n]),
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                            Err(e) => {
                                flow.handle_transport_error(io_transport_error(&e));
                                break;
                            }
                        };
                        let more = flow::feed_body(&mut flow, chunk, &mut out);
                        let mut failed = false;
                        loop {
                            if let Err(e) = sink.write(&flow, &out) {
                                flow.handle_transport_error(TransportError::sink(&e));
                                failed = true;
                                break;
                            }
                            // A highly compressed body comes out a step at a time.
                            if !flow::drain_body(&mut flow, &mut out) && out.is_empty() {
                                break;
                            }
                        }
                        if failed || !more {
                            break;
                        }
                    }
                }
                Step::Sleep(d) => std::thread::sleep(d),
                Step::Event(Event::TokenRefreshed(token)) => self.announce(&token),
                Step::Event(_) => {}
                Step::Done(result) => break result,
            }
        };
        flow::with_flushed(result, sink.flush())
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
            Body::Empty => self
                .agent
                .run(self.bounded(http::Request::from_parts(parts, ()), stream)),
            Body::Bytes(bytes) => self
                .agent
                .run(self.bounded(http::Request::from_parts(parts, bytes), stream)),
            Body::Upload(upload_kind) => {
                let Some(reader) = upload else {
                    return Err(TransportError::body_source("this operation needs a body"));
                };
                let mut body = UploadBody::start(&upload_kind, reader, &mut parts.headers)?;
                let r = self.agent.run(self.bounded(
                    http::Request::from_parts(parts, ureq::SendBody::from_reader(&mut body)),
                    stream,
                ));
                if let Some(msg) = body.failure.take() {
                    return Err(TransportError::body_source(msg));
                }
                r
            }
        };
        let mut response = result.map_err(transport_error)?;
        if stream && response.status().is_success() {
            let (parts, body) = response.into_parts();
            let head = http::Response::from_parts(parts, Vec::new());
            return Ok((head, Some(body.into_reader())));
        }
        let bytes = (response.body_mut().with_config())
            .limit(MAX_RESPONSE_BYTES as u64)
            .read_to_vec()
            .map_err(transport_error)?;
        let (parts, _) = response.into_parts();
        Ok((http::Response::from_parts(parts, bytes), None))
    }

    /// A buffered answer's body must come whole within the idle timeout of its head
    /// (docs/protocol.md, "Timeouts"); a streamed one is held to the floor instead.
    fn bounded<S: ureq::AsSendBody>(
        &self,
        request: http::Request<S>,
        stream: bool,
    ) -> http::Request<S> {
        if stream {
            return request;
        }
        (self.agent.configure_request(request))
            .timeout_recv_body(Some(self.idle))
            .build()
    }

    /// The coordinator loop of `digime_protocol::read_all`, each task on a scoped
    /// thread of its own.
    pub(crate) fn run_all<T: Send, W: Write>(
        &self,
        mut all: ReadAllFiles<T>,
        output: Output,
        open: impl Fn(&FileHead) -> std::io::Result<W> + Sync,
        value: impl Fn(FileData) -> T + Sync,
        mut on_event: impl FnMut(ReadAllEvent<T>),
    ) -> Result<ReadAllSummary, Error> {
        // `None`: a task that panicked, or that this driver does not know.
        let (tx, rx) = std::sync::mpsc::channel::<Option<TaskEnd<T>>>();
        let (open, value): (&(dyn Fn(&FileHead) -> _ + Sync), _) = (&open, &value);
        let handle = |all: &mut ReadAllFiles<T>, ended: Option<TaskEnd<T>>| match ended {
            Some(end) => {
                all.task_done(end, SystemTime::now());
                Ok(())
            }
            None => Err(lost("a task panicked or is unknown to this driver")),
        };
        // Tasks started and not yet reported: waiting with none would wait forever (the
        // coordinator keeps a sender, so the channel never closes).
        let mut running = 0usize;
        std::thread::scope(|scope| {
            loop {
                match all.poll(SystemTime::now()) {
                    ReadAllStep::Run(task) => {
                        running += 1;
                        let tx = tx.clone();
                        scope.spawn(move || {
                            // Whatever happens on this thread (a panic in the caller's
                            // `open`, an unknown task), the coordinator hears of it:
                            // it must never wait for a report that cannot come.
                            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                                || match task {
                                    Task::List(t) => {
                                        Some(TaskEnd::List(self.run(t.into_flow(), None)))
                                    }
                                    Task::Refresh(t) => {
                                        Some(TaskEnd::Refresh(self.run(t.into_flow(), None)))
                                    }
                                    Task::File(t) => {
                                        let (id, flow) = (t.id, t.into_flow(output));
                                        let mut sink = Lazy { open, writer: None };
                                        let r = self.drive(flow, None, &mut sink);
                                        Some(TaskEnd::File(id, r.map(|a| value(a.value))))
                                    }
                                    _ => None,
                                },
                            ));
                            let _ = tx.send(ran.ok().flatten());
                        });
                    }
                    ReadAllStep::Sleep(d) => {
                        if let Ok(ended) = rx.recv_timeout(d) {
                            running -= 1;
                            handle(&mut all, ended)?;
                        }
                    }
                    ReadAllStep::Wait if running == 0 => {
                        return Err(lost("waiting with no task running"));
                    }
                    ReadAllStep::Wait => match rx.recv() {
                        Ok(ended) => {
                            running -= 1;
                            handle(&mut all, ended)?;
                        }
                        Err(_) => return Err(lost("a task ended without reporting")),
                    },
                    ReadAllStep::Event(event) => on_event(event),
                    ReadAllStep::Done(result) => return result,
                }
            }
        })
    }
}

fn lost(what: &str) -> Error {
    Error::Misuse(format!("read_all_files: {what}"))
}

/// The caller's reader as a request body: seeked to its end for the length, then to its
/// start, then read as the core's [`UploadPump`] says (as it is, or through the
/// upload's encoder).
struct UploadBody<'a, 'b> {
    reader: &'a mut (dyn ReadSeek + 'b),
    pump: UploadPump,
    chunk: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
    /// A failure of the caller's reader or of the encoder, reported as such rather
    /// than as a network failure.
    failure: Option<String>,
}

impl<'a, 'b> UploadBody<'a, 'b> {
    fn start(
        upload: &Upload,
        reader: &'a mut (dyn ReadSeek + 'b),
        headers: &mut http::HeaderMap,
    ) -> Result<Self, TransportError> {
        let err = |e: &dyn std::fmt::Display| TransportError::body_source(e.to_string());
        let len = reader.seek(SeekFrom::End(0)).map_err(|e| err(&e))?;
        let pump = upload.pump(len).map_err(|e| err(&e))?;
        let length = http::HeaderValue::from(pump.content_length());
        headers.insert(http::header::CONTENT_LENGTH, length);
        reader.seek(SeekFrom::Start(0)).map_err(|e| err(&e))?;
        Ok(UploadBody {
            reader,
            chunk: if pump.is_identity() {
                Vec::new()
            } else {
                vec![0; CHUNK]
            },
            pump,
            out: Vec::new(),
            pos: 0,
            failure: None,
        })
    }

    fn fail(&mut self, e: &dyn std::fmt::Display) -> std::io::Error {
        self.failure = Some(e.to_string());
        std::io::Error::other(e.to_string())
    }

    /// Reads at most `buf.len()` bytes of the caller's reader, reading again after an
    /// interrupted read (ureq would take it for a failure).
    fn source(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.reader.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.fail(&e)),
                Ok(n) => return Ok(n),
            }
        }
    }
}

impl UploadBody<'_, '_> {
    /// Reads the next bytes the pump wants and appends what they make to `out`.
    fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = std::mem::take(&mut self.chunk);
        let want = self.pump.want(chunk.len());
        let read = if want == 0 {
            Ok(0)
        } else {
            self.source(&mut chunk[..want])
        };
        let fed = read.map(|n| self.pump.feed(&chunk[..n], &mut self.out));
        self.chunk = chunk;
        fed?.map_err(|e| self.fail(&e))
    }
}

impl Read for UploadBody<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // ureq stops reading at the `Content-Length`: the read that finds the reader's
        // end is made before the last bytes go out, so that a reader longer than its
        // length fails the push instead of being cut short.
        if self.pump.is_identity() {
            // Straight from the caller's reader into the HTTP library's buffer.
            let want = self.pump.want(buf.len());
            let n = if want == 0 {
                0
            } else {
                self.source(&mut buf[..want])?
            };
            self.pump.plain(n).map_err(|e| self.fail(&e))?;
            if self.pump.end_check_due() {
                let mut one = [0u8; 1];
                let m = self.source(&mut one)?;
                self.pump.plain(m).map_err(|e| self.fail(&e))?;
            }
            return Ok(n);
        }
        loop {
            if self.pos < self.out.len() {
                let n = buf.len().min(self.out.len() - self.pos);
                buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.pump.is_done() {
                return Ok(0);
            }
            self.out.clear();
            self.pos = 0;
            self.fill()?;
            while self.pump.end_check_due() {
                self.fill()?;
            }
        }
    }
}

/// The default agent: see [`Client::new`].
pub(crate) fn default_agent(idle: Duration) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        // The platform's trust store, as the async driver's reqwest does.
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .unversioned_rustls_crypto_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .no_delay(true)
        .tls_config(tls)
        .output_buffer_size(WRITE_BUFFER)
        .timeout_connect(Some(crate::CONNECT_TIMEOUT))
        .timeout_per_read(Some(idle))
        // The head of an answer within the idle timeout of the request's last byte: a
        // head sent a byte at a time cannot hold a call (docs/protocol.md, "Timeouts").
        .timeout_recv_response(Some(idle))
        .timeout_per_write(Some(idle))
        .build()
        .new_agent()
}

fn io_transport_error(e: &std::io::Error) -> TransportError {
    let kind = match e.get_ref().and_then(|i| i.downcast_ref::<ureq::Error>()) {
        Some(ureq::Error::Timeout(t)) => timeout_kind(*t),
        _ => TransportErrorKind::from_io(e.kind()),
    };
    TransportError::new(kind, e.to_string())
}

/// A timeout before the connection was made sent nothing: `Connect`, which is retried
/// for every method (docs/protocol.md, "Retries"); any later one is `Timeout`.
fn timeout_kind(t: ureq::Timeout) -> TransportErrorKind {
    match t {
        ureq::Timeout::Resolve | ureq::Timeout::Connect => TransportErrorKind::Connect,
        _ => TransportErrorKind::Timeout,
    }
}

fn transport_error(e: ureq::Error) -> TransportError {
    let kind = match &e {
        ureq::Error::Timeout(t) => timeout_kind(*t),
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => TransportErrorKind::Connect,
        ureq::Error::BodyExceedsLimit(_) | ureq::Error::LargeResponseHeader(..) => {
            TransportErrorKind::ResponseTooLarge
        }
        // Endless header lines (ureq-proto's `HttpParseTooManyHeaders`, matched by its
        // text: naming ureq's private protocol crate would tie us to its version).
        ureq::Error::Protocol(p) if p.to_string().contains("too many headers") => {
            TransportErrorKind::ResponseTooLarge
        }
        ureq::Error::Io(io) => TransportErrorKind::from_io(io.kind()),
        _ => TransportErrorKind::Other,
    };
    TransportError::new(kind, e.to_string())
}
