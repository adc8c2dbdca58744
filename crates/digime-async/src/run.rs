//! The one run loop: any [`Flow`], its uploads, its streamed answers, and the
//! read-all coordinator on top.

use crate::Client;
use bytes::{Bytes, BytesMut};
use digime_protocol::error::{TransportError, TransportErrorKind};
use digime_protocol::flow::{self, Authed, Event, Flow, Step, UserOperation};
use digime_protocol::read::StreamResponse;
use digime_protocol::read_all::{ReadAllFiles, ReadAllStep, Task, TaskEnd};
use digime_protocol::upload::UploadPump;
use digime_protocol::wire::{Body, MAX_RESPONSE_BYTES, SlowBodyGuard};
use digime_protocol::{Contract, Error, FileData, FileHead, Output, ReadFile};
use digime_protocol::{ReadAllEvent, ReadAllSummary, UserAccessToken};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeek, AsyncSeekExt, AsyncWrite, AsyncWriteExt};

/// Size of the chunks of an upload: each is read from the caller's reader into a
/// buffer that becomes the chunk without a copy.
const UPLOAD_CHUNK: usize = 1024 * 1024;
/// Size of the pieces of a chunk handed to the connection (without a copy): each one
/// taken is progress for the idle timeout.
const SEND_SLICE: usize = 64 * 1024;

/// An upload body: anything async-readable that can be rewound for a retry.
pub trait Upload: AsyncRead + AsyncSeek + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncSeek + Send + Unpin + 'static> Upload for T {}

/// The caller's upload, shared by the attempts of one call. `generation` counts the
/// attempts: a stream of an earlier attempt that is still polled (a server answered
/// before reading the whole body) finds it changed and stops, instead of reading the
/// reader from under the current attempt. Locked once per chunk, never contended.
struct UploadSlot {
    generation: u64,
    reader: Box<dyn Upload>,
}

type SharedUpload = Arc<tokio::sync::Mutex<UploadSlot>>;

/// Where a flow's streamed output goes; it is flushed once the flow is done.
trait Sink<F>: Send {
    /// Looks at the flow before a write (flows are `Send` but not `Sync`, so the
    /// write itself cannot hold on to them).
    fn observe(&mut self, flow: &F) {
        let _ = flow;
    }
    fn write(&mut self, data: &[u8]) -> impl Future<Output = std::io::Result<()>> + Send;
    fn flush(&mut self) -> impl Future<Output = std::io::Result<()>> + Send;
}

/// The caller's writer.
struct Writer<'a, W>(&'a mut W);

impl<F, W: AsyncWrite + Unpin + Send> Sink<F> for Writer<'_, W> {
    async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.0.write_all(data).await
    }
    async fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().await
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
    async fn flush(&mut self) -> std::io::Result<()> {
        match self.writer.as_mut() {
            Some(w) => w.flush().await,
            None => Ok(()),
        }
    }
}

impl Client {
    /// Runs any flow. Output of a flow that streams to the caller ([`Output::Stream`])
    /// is dropped: use [`Client::run_to`] for those; a flow whose requests carry
    /// [`Body::Upload`] needs [`Client::run_with_upload`].
    pub async fn run<F: Flow + Send>(&self, flow: F) -> Result<F::Output, Error> {
        self.drive(flow, None, &mut Writer(&mut tokio::io::sink()))
            .await
    }

    /// Runs a flow whose requests that carry [`Body::Upload`] send `body` (with a
    /// `Content-Length`, rewound before every attempt).
    pub async fn run_with_upload<F: Flow + Send>(
        &self,
        flow: F,
        body: impl Upload,
    ) -> Result<F::Output, Error> {
        let slot = Arc::new(tokio::sync::Mutex::new(UploadSlot {
            generation: 0,
            reader: Box::new(body),
        }));
        let mut sink = Writer(&mut tokio::io::sink());
        self.drive(flow, Some(&slot), &mut sink).await
    }

    /// Runs a flow whose output goes to `sink` (a [`ReadFile`] with
    /// [`Output::Stream`]); `sink` is flushed (not shut down) at the end, and a failed
    /// flush fails the run.
    pub async fn run_to<F: Flow + Send, W: AsyncWrite + Unpin + Send>(
        &self,
        flow: F,
        sink: &mut W,
    ) -> Result<F::Output, Error> {
        self.drive(flow, None, &mut Writer(sink)).await
    }

    /// Runs any operation made with a user's token (`sdk.call`): refreshed once on
    /// 401, the new token announced to the listener and returned in the result.
    pub async fn call<O: UserOperation + Send + Sync>(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        op: O,
    ) -> Result<Authed<O::Output>, Error> {
        self.run(self.sdk.call(contract, token, op)).await
    }

    /// The loop of the flow module's docs.
    async fn drive<F: Flow + Send, S: Sink<F>>(
        &self,
        mut flow: F,
        upload: Option<&SharedUpload>,
        sink: &mut S,
    ) -> Result<F::Output, Error> {
        let mut pending: Option<reqwest::Response> = None;
        let mut out = Vec::new();
        let result = loop {
            match flow.poll(SystemTime::now()) {
                Step::Send(request) => {
                    pending = None;
                    match self.send(request, upload).await {
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
                    let mut floor = SlowBodyGuard::new(self.idle_timeout);
                    loop {
                        let asked = Instant::now();
                        let chunk = self.chunk(&mut body).await.and_then(|chunk| {
                            let n = chunk.as_ref().map_or(0, Bytes::len);
                            floor.record(n, asked.elapsed()).map(|()| chunk)
                        });
                        let more = match chunk {
                            Ok(chunk) => flow::feed_body(&mut flow, chunk.as_deref(), &mut out),
                            Err(e) => {
                                flow.handle_transport_error(e);
                                break;
                            }
                        };
                        sink.observe(&flow);
                        let mut failed = false;
                        loop {
                            if let Err(e) = sink.write(&out).await {
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
                Step::Sleep(d) => tokio::time::sleep(d).await,
                Step::Event(Event::TokenRefreshed(token)) => self.announce(&token),
                Step::Event(_) => {}
                Step::Done(result) => break result,
            }
        };
        flow::with_flushed(result, sink.flush().await)
    }

    /// The next chunk of a response body, or a timeout after the idle time.
    async fn chunk(&self, body: &mut reqwest::Response) -> Result<Option<Bytes>, TransportError> {
        match tokio::time::timeout(self.idle_timeout, body.chunk()).await {
            Err(_) => Err(self.stalled()),
            Ok(r) => r.map_err(transport_error),
        }
    }

    fn stalled(&self) -> TransportError {
        let msg = format!("no progress for {:?}", self.idle_timeout);
        TransportError::new(TransportErrorKind::Timeout, msg)
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
                    return Err(TransportError::body_source("this operation needs a body"));
                };
                let err = |e: &dyn std::fmt::Display| TransportError::body_source(e.to_string());
                // The length, a fresh pump, the start: see `digime_protocol::upload`.
                let mut slot = upload.lock().await;
                slot.generation += 1;
                let generation = slot.generation;
                let len =
                    (slot.reader.seek(std::io::SeekFrom::End(0)).await).map_err(|e| err(&e))?;
                let pump = upload_kind.pump(len).map_err(|e| err(&e))?;
                let length = http::HeaderValue::from(pump.content_length());
                parts.headers.insert(http::header::CONTENT_LENGTH, length);
                (slot.reader.seek(std::io::SeekFrom::Start(0)).await).map_err(|e| err(&e))?;
                drop(slot);
                reqwest::Body::wrap_stream(upload_stream(UploadState {
                    upload: upload.clone(),
                    generation,
                    pump,
                    buf: BytesMut::new(),
                    pending: Bytes::new(),
                    failure: failure.clone(),
                    progress: progress.clone(),
                }))
            }
        };
        let request = reqwest::Request::try_from(http::Request::from_parts(parts, body))
            .map_err(transport_error)?;
        let execute = self.http.execute(request);
        tokio::pin!(execute);
        // Wait for the response while the upload (if any) makes progress.
        let result = loop {
            let last = *progress.lock().unwrap_or_else(|p| p.into_inner());
            tokio::select! {
                r = &mut execute => break r,
                // An idle timeout too long to count (`Duration::MAX`) never fires.
                _ = sleep_until(last.checked_add(self.idle_timeout)) => {
                    let last = *progress.lock().unwrap_or_else(|p| p.into_inner());
                    if last.elapsed() >= self.idle_timeout {
                        return Err(self.stalled());
                    }
                }
            }
        };
        if let Some(msg) = failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(TransportError::body_source(msg));
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
        // A buffered answer's body must come whole within the idle timeout of its head
        // (docs/protocol.md, "Timeouts"): a byte now and then cannot hold the call.
        let collect = async {
            let mut bytes = Vec::new();
            while let Some(chunk) = self.chunk(&mut response).await? {
                if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(TransportError::new(
                        TransportErrorKind::ResponseTooLarge,
                        format!("response larger than {MAX_RESPONSE_BYTES} bytes"),
                    ));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(bytes)
        };
        let bytes = match tokio::time::timeout(self.idle_timeout, collect).await {
            Ok(bytes) => bytes?,
            Err(_) => {
                let msg = format!(
                    "the answer did not come whole within {:?}",
                    self.idle_timeout
                );
                return Err(TransportError::new(TransportErrorKind::Timeout, msg));
            }
        };
        Ok((head(&response, bytes)?, None))
    }

    /// The coordinator loop of `digime_protocol::read_all`; tasks run concurrently
    /// inside this future.
    pub(crate) async fn run_all<T: Send, W, Fut>(
        &self,
        mut all: ReadAllFiles<T>,
        output: Output,
        open: &(impl Fn(&FileHead) -> Fut + Sync),
        value: impl Fn(FileData) -> T + Sync,
        mut on_event: impl FnMut(ReadAllEvent<T>),
    ) -> Result<ReadAllSummary, Error>
    where
        W: AsyncWrite + Unpin + Send,
        Fut: Future<Output = std::io::Result<W>> + Send,
    {
        let value = &value;
        let mut tasks: FuturesUnordered<Guarded<'_, T>> = FuturesUnordered::new();
        // `None`: a task that panicked (in the caller's `open`, say).
        let handle = |all: &mut ReadAllFiles<T>, end: Option<TaskEnd<T>>| match end {
            Some(end) => {
                all.task_done(end, SystemTime::now());
                Ok(())
            }
            None => Err(lost("a task panicked")),
        };
        loop {
            match all.poll(SystemTime::now()) {
                ReadAllStep::Run(Task::List(t)) => tasks.push(guarded(async move {
                    TaskEnd::List(self.run(t.into_flow()).await)
                })),
                ReadAllStep::Run(Task::Refresh(t)) => tasks.push(guarded(async move {
                    TaskEnd::Refresh(self.run(t.into_flow()).await)
                })),
                ReadAllStep::Run(Task::File(t)) => tasks.push(guarded(async move {
                    let (id, flow) = (t.id, t.into_flow(output));
                    let mut sink = Lazy {
                        open,
                        head: None,
                        writer: None,
                    };
                    let r = self.drive(flow, None, &mut sink).await;
                    TaskEnd::File(id, r.map(|a| value(a.value)))
                })),
                ReadAllStep::Run(_) => {
                    return Err(lost("a task unknown to this driver"));
                }
                ReadAllStep::Sleep(d) => {
                    if tasks.is_empty() {
                        tokio::time::sleep(d).await;
                    } else {
                        tokio::select! {
                            Some(ended) = tasks.next() => handle(&mut all, ended)?,
                            _ = tokio::time::sleep(d) => {}
                        }
                    }
                }
                ReadAllStep::Wait => match tasks.next().await {
                    Some(ended) => handle(&mut all, ended)?,
                    None => return Err(lost("waiting with no task running")),
                },
                ReadAllStep::Event(event) => on_event(event),
                ReadAllStep::Done(result) => return result,
            }
        }
    }
}

/// A read-all task, whose panic is caught and reported as `None`.
type Guarded<'a, T> = std::pin::Pin<Box<dyn Future<Output = Option<TaskEnd<T>>> + Send + 'a>>;

fn guarded<'a, T: 'a>(task: impl Future<Output = TaskEnd<T>> + Send + 'a) -> Guarded<'a, T> {
    Box::pin(
        std::panic::AssertUnwindSafe(task)
            .catch_unwind()
            .map(Result::ok),
    )
}

/// Sleeps until `deadline`, or forever when there is none.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn lost(what: &str) -> Error {
    Error::Misuse(format!("read_all_files: {what}"))
}

/// One attempt's stream over the shared upload.
struct UploadState {
    upload: SharedUpload,
    generation: u64,
    pump: UploadPump,
    buf: BytesMut,
    /// Body bytes read or encoded and not yet handed to the connection.
    pending: Bytes,
    /// A failure of the caller's reader or of the encoder, reported as such rather
    /// than as a network failure.
    failure: Arc<Mutex<Option<String>>>,
    /// When the connection last took a chunk.
    progress: Arc<Mutex<Instant>>,
}

impl UploadState {
    fn fail(&self, e: &dyn std::fmt::Display) -> std::io::Error {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        std::io::Error::other(e.to_string())
    }

    /// Reads the next bytes the pump wants, up to `UPLOAD_CHUNK`, from the caller's
    /// reader (empty once it owes nothing, or when it ended).
    async fn read(&mut self) -> std::io::Result<Bytes> {
        let want = self.pump.want(UPLOAD_CHUNK);
        self.buf.reserve(want);
        let mut slot = self.upload.lock().await;
        if slot.generation != self.generation {
            return Err(std::io::Error::other("superseded by a later attempt"));
        }
        while self.buf.len() < want {
            let room = (want - self.buf.len()) as u64;
            match (&mut slot.reader).take(room).read_buf(&mut self.buf).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.fail(&e)),
            }
        }
        Ok(self.buf.split().freeze())
    }

    /// The next chunk of the body, or `None` at its end. Chunks are at most
    /// `SEND_SLICE` long, and the time is noted as each is taken, so that progress is
    /// seen while a large read goes out.
    async fn next(&mut self) -> Option<std::io::Result<Bytes>> {
        loop {
            *self.progress.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
            if !self.pending.is_empty() {
                let n = self.pending.len().min(SEND_SLICE);
                return Some(Ok(self.pending.split_to(n)));
            }
            if self.pump.is_done() {
                return None;
            }
            // hyper stops polling at the `Content-Length`: the read that finds the
            // reader's end is made before the last bytes go out, so that a reader
            // longer than its length fails the push instead of being cut short.
            let mut body = Vec::new();
            loop {
                let chunk = match self.read().await {
                    Ok(chunk) => chunk,
                    Err(e) => return Some(Err(e)),
                };
                let fed = if self.pump.is_identity() {
                    self.pump.plain(chunk.len()).map(|()| {
                        if !chunk.is_empty() {
                            self.pending = chunk;
                        }
                    })
                } else {
                    self.pump.feed(&chunk, &mut body)
                };
                if let Err(e) = fed {
                    return Some(Err(self.fail(&e)));
                }
                if !self.pump.end_check_due() {
                    break;
                }
            }
            if !body.is_empty() {
                self.pending = Bytes::from(body);
            }
        }
    }
}

/// The chunks of one attempt, through the core's encoder when the upload is
/// transformed (a postbox push).
fn upload_stream(
    state: UploadState,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures_util::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        match state.next().await? {
            Ok(chunk) => Some((Ok(chunk), Some(state))),
            Err(e) => Some((Err(e), None)),
        }
    })
}

fn transport_error(e: reqwest::Error) -> TransportError {
    // An I/O failure underneath is classified by the core's table, as in the blocking
    // driver; hyper's own "connection closed before the message completed" carries no
    // I/O error and is a reset.
    let e = e.without_url(); // its path can hold a session key
    let mut message = e.to_string();
    let mut io_kind = None;
    let mut head_too_large = false;
    let mut source = std::error::Error::source(&e);
    while let Some(err) = source {
        message = format!("{message}: {err}");
        head_too_large |= err
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_parse_too_large);
        if let Some(mut io) = err.downcast_ref::<std::io::Error>() {
            // The innermost I/O error says what happened (rustls wraps its own).
            while let Some(inner) = io
                .get_ref()
                .and_then(|i| i.downcast_ref::<std::io::Error>())
            {
                io = inner;
            }
            io_kind.get_or_insert(io.kind());
        }
        source = err.source();
    }
    let kind = if head_too_large {
        // Endless or huge headers: the blocking driver says the same.
        TransportErrorKind::ResponseTooLarge
    } else if e.is_connect() && io_kind == Some(std::io::ErrorKind::InvalidData) {
        // A TLS handshake with a peer that does not speak TLS, or a bad certificate:
        // not a connection failure worth retrying (the blocking driver agrees).
        TransportErrorKind::Other
    } else if e.is_connect() {
        // Refused, unreachable or timed out while connecting: nothing was sent, so it is
        // retried for every method (docs/protocol.md, "Retries"); the blocking driver
        // classes a connect timeout the same way.
        TransportErrorKind::Connect
    } else if e.is_timeout() {
        TransportErrorKind::Timeout
    } else if let Some(kind) = io_kind {
        TransportErrorKind::from_io(kind)
    } else if e.is_body() || e.is_request() {
        TransportErrorKind::Reset
    } else {
        TransportErrorKind::Other
    };
    TransportError::new(kind, message)
}
