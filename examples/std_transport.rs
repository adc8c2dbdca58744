//! The core on a transport of its own: `digime-protocol`'s flows driven over a minimal
//! HTTP/1.1 client written here on `std::net`, with no HTTP library and none of the
//! SDK's drivers. It runs the write guide and the read guide end to end against an
//! embedded sandbox: authorize → consent → exchange → push → authorize a read contract
//! for the same user → read session → read all files, and checks that the pushed file
//! comes back byte for byte.
//!
//! ```text
//! cargo run -p digime-examples --bin std_transport
//! ```
//!
//! This is the template for a new driver. Everything the SDK knows about the API
//! (signing, retries, refreshes, decryption, the read-all schedule) stays in the core;
//! a driver only does what [`Transport`] does here:
//!
//! * [`Transport::run`]: the run loop of `digime_protocol::flow`, for any flow: send
//!   each request, report each answer or transport error, sleep when told, deliver
//!   events, and feed a kept body (`Step::Receive`) through `feed_body` and
//!   `drain_body`;
//! * [`Transport::read_all`]: the coordinator loop of `digime_protocol::read_all`. Here
//!   its tasks run one after another on this thread, which the coordinator allows; a
//!   real driver runs them concurrently;
//! * [`http1`]: moving bytes. A buffered answer is capped at `MAX_RESPONSE_BYTES`, a
//!   streamed one is held to `SlowBodyGuard`'s floor, and every failure is a
//!   `TransportError` of the right kind, so that the core's retry rules apply.
//!
//! It speaks plain HTTP only (the sandbox's). For the real API, put TLS under the
//! socket, for example `rustls::StreamOwned`; nothing else changes.

use digime_protocol::error::{TransportError, TransportErrorKind};
use digime_protocol::flow::{self, Event, Flow, Step};
use digime_protocol::http::{Request, Response};
use digime_protocol::read_all::{ReadAllFiles, ReadAllStep, Task, TaskEnd};
use digime_protocol::wire::{Body, MAX_RESPONSE_BYTES, SlowBodyGuard};
use digime_protocol::{
    AuthorizeOptions, Error, FileData, FileDescriptor, Output, PullOptions, ReadAllEvent,
    ReadAllOptions, ReadAllSummary, Sdk, parse_callback,
};
use digime_sandbox::{ConsentMode, Sandbox, SandboxConfig};
use std::io::{self, Read, Write};
use std::time::{Duration, Instant, SystemTime};

const FILE: &[u8] = br#"{"receipt":7,"total":3.2,"via":"std::net"}"#;
const CALLBACK: &str = "http://localhost:8080/return";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sandbox = Sandbox::spawn(SandboxConfig {
        consent: ConsentMode::Auto,
        ..Default::default()
    })?;
    let info = sandbox.info();
    println!("Embedded sandbox at {}", info.api);
    let sdk = Sdk::new(info.client_config());
    let transport = Transport {
        idle: Duration::from_secs(30),
    };
    let state = digime_crypto::random::alphanumeric(24)?;

    // 1. Authorize the write contract, and consent in the "browser".
    let write = info.demo.write.contract()?;
    let flow = sdk.authorize_url(&write, CALLBACK, &state, AuthorizeOptions::default())?;
    let auth = transport.run(flow, None, &mut io::sink())?;
    let redirect = transport.redirect_of(&auth.url)?;
    let callback = parse_callback(&redirect)?.verify_state(&state)?;
    println!("1. Authorized the write contract");

    // 2. The code and the kept verifier for a token.
    let flow = sdk.exchange_code_for_token(&write, &callback.code, &auth.code_verifier)?;
    let token = transport.run(flow, None, &mut io::sink())?;
    println!("2. Exchanged the code for a token");

    // 3. Push a file. A call that refreshed hands back the new token: keep it.
    let mut descriptor = FileDescriptor::new("application/json");
    descriptor.reference = Some(vec!["receipt-7.json".into()]);
    let flow = sdk.push_to_library(&write, &token, &descriptor)?;
    let pushed = transport.run(flow, Some(FILE), &mut io::sink())?;
    let token = pushed.refreshed_token.unwrap_or(token);
    println!("3. Pushed {} bytes", FILE.len());

    // 4. The read contract, linked to the same user by the write token.
    let read = info.demo.read.contract()?;
    let options = AuthorizeOptions {
        user_access_token: Some(token.clone()),
        ..Default::default()
    };
    let auth = transport.run(
        sdk.authorize_url(&read, CALLBACK, &state, options)?,
        None,
        &mut io::sink(),
    )?;
    let redirect = transport.redirect_of(&auth.url)?;
    let callback = parse_callback(&redirect)?.verify_state(&state)?;
    let flow = sdk.exchange_code_for_token(&read, &callback.code, &auth.code_verifier)?;
    let read_token = transport.run(flow, None, &mut io::sink())?;
    println!("4. Authorized the read contract for the same user");

    // 5. A read session, and every file of it.
    let flow = sdk.read_session(&read, &read_token, &PullOptions::default());
    let opened = transport.run(flow, None, &mut io::sink())?;
    let read_token = opened.refreshed_token.unwrap_or(read_token);
    let options = ReadAllOptions {
        poll_interval: Duration::from_millis(200),
        ..Default::default()
    };
    let all = sdk.read_all_files(&read, &read_token, &opened.value.key, options);
    let (summary, files) = transport.read_all(all)?;
    println!(
        "5. Read {} files ({} failed), sync {}",
        summary.files_read, summary.files_failed, summary.status.state
    );

    let receipt = files
        .iter()
        .find(|f| f.data == FILE)
        .ok_or("the pushed file was not among the files read back")?;
    println!(
        "\nOK: {} came back over std::net identical to the {} bytes pushed.",
        receipt.head.name,
        FILE.len()
    );
    Ok(())
}

/// A driver: the two run loops, over [`http1`].
struct Transport {
    /// How long any read or write may wait.
    idle: Duration,
}

impl Transport {
    /// Runs any flow to its end. `upload` is the body of a request that carries
    /// `Body::Upload` (a push); a streamed download's plaintext goes to `sink`.
    fn run<F: Flow>(
        &self,
        mut flow: F,
        upload: Option<&[u8]>,
        sink: &mut dyn Write,
    ) -> Result<F::Output, Error> {
        let mut kept: Option<http1::BodyReader> = None;
        let mut buf = vec![0u8; 64 * 1024];
        let mut out = Vec::new();
        let result = loop {
            match flow.poll(SystemTime::now()) {
                Step::Send(request) => {
                    // A body still unread belongs to an answer the flow is done with.
                    kept = None;
                    match self.send(request, upload) {
                        Ok((response, body)) => {
                            kept = body;
                            flow.handle_response(response);
                        }
                        Err(e) => flow.handle_transport_error(e),
                    }
                }
                Step::Receive => {
                    let Some(mut body) = kept.take() else {
                        flow.handle_transport_error(flow::no_body_kept());
                        continue;
                    };
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
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(e) => {
                                flow.handle_transport_error(http1::io_error(&e));
                                break;
                            }
                        };
                        let more = flow::feed_body(&mut flow, chunk, &mut out);
                        // Write what came out, then whatever more is ready without
                        // more input (a highly compressed file comes out in steps).
                        let written = loop {
                            if let Err(e) = sink.write_all(&out) {
                                break Err(TransportError::sink(&e));
                            }
                            if !flow::drain_body(&mut flow, &mut out) && out.is_empty() {
                                break Ok(());
                            }
                        };
                        if let Err(e) = written {
                            flow.handle_transport_error(e);
                            break;
                        }
                        if !more {
                            break;
                        }
                    }
                }
                Step::Sleep(d) => std::thread::sleep(d),
                // A real app persists the new token here: the old one is spent.
                Step::Event(Event::TokenRefreshed(_)) => println!("   (token refreshed)"),
                Step::Event(_) => {}
                Step::Done(result) => break result,
            }
        };
        flow::with_flushed(result, sink.flush())
    }

    /// Runs a read-all coordinator: each task to its end, one at a time. Returns the
    /// summary and every file read.
    fn read_all(
        &self,
        mut all: ReadAllFiles<FileData>,
    ) -> Result<(ReadAllSummary, Vec<FileData>), Error> {
        let mut files = Vec::new();
        let quiet = &mut io::sink();
        loop {
            match all.poll(SystemTime::now()) {
                ReadAllStep::Run(task) => {
                    let end = match task {
                        Task::List(t) => TaskEnd::List(self.run(t.into_flow(), None, quiet)),
                        Task::Refresh(t) => TaskEnd::Refresh(self.run(t.into_flow(), None, quiet)),
                        Task::File(t) => {
                            let id = t.id;
                            let flow = t.into_flow(Output::Buffer);
                            TaskEnd::File(id, self.run(flow, None, quiet).map(|a| a.value))
                        }
                        _ => return Err(Error::Misuse("a task this driver does not know".into())),
                    };
                    all.task_done(end, SystemTime::now());
                }
                // No task runs in the background here, so there is nothing to wake
                // for early.
                ReadAllStep::Sleep(d) => std::thread::sleep(d),
                ReadAllStep::Wait => {
                    return Err(Error::Misuse("read-all waits with no task running".into()));
                }
                ReadAllStep::Event(ReadAllEvent::File(file)) => {
                    println!("   {} ({} bytes)", file.head.name, file.data.len());
                    files.push(file);
                }
                ReadAllStep::Event(ReadAllEvent::FileError { entry, error }) => {
                    println!("   {}: {error}", entry.name);
                }
                ReadAllStep::Event(_) => {}
                ReadAllStep::Done(result) => return result.map(|summary| (summary, files)),
            }
        }
    }

    /// Sends one request. A 2xx answer to a request marked `StreamResponse` comes back
    /// with an empty body and its body reader, unread; any other body is read whole,
    /// up to `MAX_RESPONSE_BYTES`.
    fn send(
        &self,
        request: Request<Body>,
        upload: Option<&[u8]>,
    ) -> Result<(Response<Vec<u8>>, Option<http1::BodyReader>), TransportError> {
        let (parts, body) = request.into_parts();
        let stream = parts
            .extensions
            .get::<digime_protocol::read::StreamResponse>()
            .is_some();
        let bytes = match body {
            Body::Empty => Vec::new(),
            Body::Bytes(bytes) => bytes,
            // The upload loop of `digime_protocol::upload`, on a body held in memory:
            // a fresh encoder per attempt, exactly `body_len` bytes.
            Body::Upload(upload_kind) => {
                let source = upload
                    .ok_or_else(|| TransportError::body_source("this operation needs a body"))?;
                let failed = |e: Error| TransportError::body_source(e.to_string());
                let mut encoder = upload_kind.encoder().map_err(failed)?;
                let mut out = Vec::with_capacity(source.len());
                encoder.encode(source, &mut out).map_err(failed)?;
                encoder.finish(&mut out).map_err(failed)?;
                debug_assert_eq!(out.len() as u64, upload_kind.body_len(source.len() as u64));
                out
            }
        };
        let (head, mut reader) = http1::exchange(&parts, &bytes, self.idle)?;
        if stream && head.status().is_success() {
            return Ok((head.map(|()| Vec::new()), Some(reader)));
        }
        let mut body = Vec::new();
        (&mut reader)
            .take(MAX_RESPONSE_BYTES as u64 + 1)
            .read_to_end(&mut body)
            .map_err(|e| http1::io_error(&e))?;
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(TransportError::new(
                TransportErrorKind::ResponseTooLarge,
                "the answer is larger than MAX_RESPONSE_BYTES",
            ));
        }
        let (parts, ()) = head.into_parts();
        Ok((Response::from_parts(parts, body), None))
    }

    /// What a browser does with the onboard URL when consent is automatic: one GET,
    /// and the `Location` it is sent to.
    fn redirect_of(&self, url: &str) -> Result<String, Box<dyn std::error::Error>> {
        let request = Request::get(url).body(())?;
        let (parts, ()) = request.into_parts();
        let (head, _) = http1::exchange(&parts, &[], self.idle)?;
        let location = head
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                format!(
                    "the onboard page answered {} without a redirect",
                    head.status()
                )
            })?;
        Ok(location.to_owned())
    }
}

/// A minimal HTTP/1.1 client: one connection per request (`Connection: close`),
/// bodies framed by `Content-Length`, chunked encoding, or the end of the connection.
mod http1 {
    use digime_protocol::error::{TransportError, TransportErrorKind};
    use digime_protocol::http::{self, HeaderName, HeaderValue, Response, StatusCode};
    use std::io::{self, BufRead, BufReader, Read, Write};
    use std::net::{TcpStream, ToSocketAddrs};
    use std::time::Duration;

    /// The most an answer's status line and headers may take.
    const MAX_HEAD: usize = 64 * 1024;
    const MAX_HEADERS: usize = 100;

    pub fn io_error(e: &io::Error) -> TransportError {
        TransportError::new(TransportErrorKind::from_io(e.kind()), e.to_string())
    }

    fn protocol(message: &str) -> TransportError {
        TransportError::new(TransportErrorKind::Other, message)
    }

    /// Sends a request and reads the head of its answer; the body is left to read.
    pub fn exchange(
        parts: &http::request::Parts,
        body: &[u8],
        idle: Duration,
    ) -> Result<(Response<()>, BodyReader), TransportError> {
        let uri = &parts.uri;
        if uri.scheme_str() != Some("http") {
            return Err(protocol("this transport speaks plain http:// only"));
        }
        let host = uri.host().ok_or_else(|| protocol("no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        let connect =
            |e: io::Error| TransportError::new(TransportErrorKind::Connect, e.to_string());
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(connect)?
            .next()
            .ok_or_else(|| TransportError::new(TransportErrorKind::Connect, "no address"))?;
        let socket = TcpStream::connect_timeout(&addr, idle).map_err(connect)?;
        socket
            .set_read_timeout(Some(idle))
            .map_err(|e| io_error(&e))?;
        socket
            .set_write_timeout(Some(idle))
            .map_err(|e| io_error(&e))?;
        socket.set_nodelay(true).map_err(|e| io_error(&e))?;

        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut head = format!(
            "{} {target} HTTP/1.1\r\nhost: {host}:{port}\r\n",
            parts.method
        );
        for (name, value) in &parts.headers {
            let value = value
                .to_str()
                .map_err(|_| protocol("a header value that is not text"))?;
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let has_body =
            !body.is_empty() || !matches!(parts.method, http::Method::GET | http::Method::HEAD);
        if has_body && !parts.headers.contains_key(http::header::CONTENT_LENGTH) {
            head.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        head.push_str("connection: close\r\n\r\n");
        let mut writer = &socket;
        writer
            .write_all(head.as_bytes())
            .and_then(|()| writer.write_all(body))
            .and_then(|()| writer.flush())
            .map_err(|e| io_error(&e))?;

        let mut reader = BufReader::new(socket);
        let mut budget = MAX_HEAD;
        let status_line = read_line(&mut reader, &mut budget)?;
        let mut words = status_line.splitn(3, ' ');
        let (Some(version), Some(code)) = (words.next(), words.next()) else {
            return Err(protocol("a malformed status line"));
        };
        if !version.starts_with("HTTP/1.") {
            return Err(protocol("not an HTTP/1 answer"));
        }
        let status = code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or_else(|| protocol("a malformed status code"))?;
        let mut response = Response::builder()
            .status(status)
            .body(())
            .map_err(|_| protocol("bad head"))?;
        loop {
            let line = read_line(&mut reader, &mut budget)?;
            if line.is_empty() {
                break;
            }
            if response.headers().len() >= MAX_HEADERS {
                return Err(TransportError::new(
                    TransportErrorKind::ResponseTooLarge,
                    "too many headers",
                ));
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| protocol("a malformed header"))?;
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| protocol("a bad header name"))?;
            let value =
                HeaderValue::from_str(value.trim()).map_err(|_| protocol("a bad header value"))?;
            response.headers_mut().append(name, value);
        }

        let headers = response.headers();
        let framing = if parts.method == http::Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            Framing::Length(0)
        } else if headers
            .get(http::header::TRANSFER_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            Framing::Chunked {
                left: 0,
                done: false,
            }
        } else if let Some(length) = headers.get(http::header::CONTENT_LENGTH) {
            let length = length
                .to_str()
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| protocol("a malformed Content-Length"))?;
            Framing::Length(length)
        } else {
            Framing::Close
        };
        Ok((response, BodyReader { reader, framing }))
    }

    /// One CRLF-terminated line of the head, counted against its budget.
    fn read_line(reader: &mut impl BufRead, budget: &mut usize) -> Result<String, TransportError> {
        let mut line = Vec::new();
        let limit = (*budget as u64).saturating_add(1);
        let n = reader
            .take(limit)
            .read_until(b'\n', &mut line)
            .map_err(|e| io_error(&e))?;
        if n == 0 {
            return Err(TransportError::new(
                TransportErrorKind::Reset,
                "the connection closed before the answer",
            ));
        }
        if !line.ends_with(b"\n") {
            return Err(if n as u64 >= limit {
                TransportError::new(
                    TransportErrorKind::ResponseTooLarge,
                    "the answer's head is too large",
                )
            } else {
                TransportError::new(
                    TransportErrorKind::Reset,
                    "the connection closed in the answer's head",
                )
            });
        }
        *budget = budget.saturating_sub(n);
        line.pop();
        if line.ends_with(b"\r") {
            line.pop();
        }
        String::from_utf8(line).map_err(|_| protocol("a head line that is not text"))
    }

    enum Framing {
        /// This many bytes are left.
        Length(u64),
        /// `left` bytes of the current chunk are left; `done` after the last chunk.
        Chunked { left: u64, done: bool },
        /// Until the server closes the connection.
        Close,
    }

    /// An answer's body, read as its framing says; a body cut short is an
    /// `UnexpectedEof` error, never a silent end.
    pub struct BodyReader {
        reader: BufReader<TcpStream>,
        framing: Framing,
    }

    impl BodyReader {
        fn chunk_size(&mut self) -> io::Result<u64> {
            let mut line = String::new();
            (&mut self.reader).take(1024).read_line(&mut line)?;
            if !line.ends_with('\n') {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let size = line.trim_end().split(';').next().unwrap_or_default();
            u64::from_str_radix(size.trim(), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a malformed chunk size"))
        }

        fn crlf(&mut self) -> io::Result<()> {
            let mut end = [0u8; 2];
            self.reader.read_exact(&mut end)?;
            if end == *b"\r\n" {
                Ok(())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a chunk without its CRLF",
                ))
            }
        }
    }

    impl Read for BodyReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if buf.is_empty() {
                return Ok(0);
            }
            match self.framing {
                Framing::Length(0) | Framing::Chunked { done: true, .. } => Ok(0),
                Framing::Length(left) => {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = self.reader.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    self.framing = Framing::Length(left - n as u64);
                    Ok(n)
                }
                Framing::Chunked { left: 0, .. } => {
                    let size = self.chunk_size()?;
                    if size == 0 {
                        // Trailers, up to the empty line.
                        loop {
                            let mut line = String::new();
                            (&mut self.reader).take(8192).read_line(&mut line)?;
                            if line.trim_end().is_empty() {
                                break;
                            }
                        }
                        self.framing = Framing::Chunked {
                            left: 0,
                            done: true,
                        };
                        return Ok(0);
                    }
                    self.framing = Framing::Chunked {
                        left: size,
                        done: false,
                    };
                    self.read(buf)
                }
                Framing::Chunked { left, .. } => {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = self.reader.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    let left = left - n as u64;
                    if left == 0 {
                        self.crlf()?;
                    }
                    self.framing = Framing::Chunked { left, done: false };
                    Ok(n)
                }
                Framing::Close => self.reader.read(buf),
            }
        }
    }
}
