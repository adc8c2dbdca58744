//! Fault injection: the failures a real deployment shows now and then (an overloaded
//! server, a proxy that cuts a body, a connection lost at the worst moment, a clock
//! that drifts), injected per request on the API paths, at a rate, from a seed.
//!
//! Every kind is either *before* processing (the handler never runs: nothing changed on
//! the server) or *after* (the handler ran and its effect is kept; only the answer is
//! damaged). A client that cannot tell the two apart must not repeat a write.
//!
//! The connection faults need a hold on the socket: the server accepts through
//! `FaultListener`, whose connections carry a `Conn` handle that a request can use
//! to reset its own connection (`SO_LINGER` 0, then every read and write fails, so
//! hyper drops it and the peer gets an RST).

use crate::checks::ApiFailure;
use crate::{Shared, now_ms};
use axum::body::{Body, Bytes};
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// One kind of injected fault (its name on the command line and in the control API in
/// brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum FaultKind {
    /// `503`: before processing, 503 `ServiceUnavailable` with `Retry-After`.
    #[serde(rename = "503")]
    Unavailable,
    /// `429`: before processing, 429 `TooManyRequests` with `Retry-After`.
    #[serde(rename = "429")]
    TooMany,
    /// `500`: after processing, the answer is replaced by 500 `InternalError`.
    #[serde(rename = "500")]
    Internal,
    /// `drop`: before processing, the connection is reset with no answer at all.
    #[serde(rename = "drop")]
    Drop,
    /// `reset`: after processing, the head and about half of the body go out, then the
    /// connection is reset (a bodiless answer is reset before its head).
    #[serde(rename = "reset")]
    Reset,
    /// `truncate`: after processing, about half of the body is sent, cleanly framed
    /// (chunked, no `content-length`), as a broken proxy would: the answer looks whole.
    #[serde(rename = "truncate")]
    Truncate,
    /// `stall`: after processing, the answer is held back for the stall time.
    #[serde(rename = "stall")]
    Stall,
    /// `skew`: the request is processed on a clock off by the skew (either way): token
    /// and session lifetimes and timestamps see that time (the simulated syncs do not).
    #[serde(rename = "skew")]
    Skew,
    /// `expire`: before processing, the access token the request carries expires, so a
    /// call that needs it is answered 401 and must refresh.
    #[serde(rename = "expire")]
    Expire,
}

impl FaultKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FaultKind; 9] = [
        FaultKind::Unavailable,
        FaultKind::TooMany,
        FaultKind::Internal,
        FaultKind::Drop,
        FaultKind::Reset,
        FaultKind::Truncate,
        FaultKind::Stall,
        FaultKind::Skew,
        FaultKind::Expire,
    ];

    /// The kind's name (`"503"`, `"reset"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Unavailable => "503",
            FaultKind::TooMany => "429",
            FaultKind::Internal => "500",
            FaultKind::Drop => "drop",
            FaultKind::Reset => "reset",
            FaultKind::Truncate => "truncate",
            FaultKind::Stall => "stall",
            FaultKind::Skew => "skew",
            FaultKind::Expire => "expire",
        }
    }

    /// Whether the request was processed (its handler ran) when this fault struck.
    /// `skew` requests are processed, on the skewed clock.
    pub fn after_processing(self) -> bool {
        matches!(
            self,
            FaultKind::Internal
                | FaultKind::Reset
                | FaultKind::Truncate
                | FaultKind::Stall
                | FaultKind::Skew
        )
    }
}

impl std::str::FromStr for FaultKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown fault kind {s:?} (one of {})", names.join(", "))
            })
    }
}

/// Parses a comma-separated list of kinds (`"503,429,reset"`); `"all"` is every kind.
pub fn parse_fault_kinds(list: &str) -> Result<Vec<FaultKind>, String> {
    if list.trim() == "all" {
        return Ok(FaultKind::ALL.to_vec());
    }
    list.split(',')
        .map(|k| k.trim().parse())
        .collect::<Result<Vec<_>, _>>()
        .and_then(|kinds| {
            if kinds.is_empty() {
                Err("no fault kind given".into())
            } else {
                Ok(kinds)
            }
        })
}

/// Which faults are injected, how often, and how bad they are
/// ([`crate::SandboxConfig::faults`]; changeable at run time, `POST /_sandbox/faults`).
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// The share of API requests that get a fault, 0 to 1 (default 0: none).
    pub rate: f64,
    /// The seed of the draws: the same seed and the same sequence of requests give the
    /// same faults.
    pub seed: u64,
    /// The kinds drawn from, evenly (default: all).
    pub kinds: Vec<FaultKind>,
    /// How long a `stall` holds the answer (default 3 s).
    pub stall: Duration,
    /// How far a `skew` moves the clock, either way (default 60 s, inside the five
    /// minutes a request timestamp may be off).
    pub skew: Duration,
    /// The `Retry-After` of a `503` or `429`, in seconds (default 0).
    pub retry_after_s: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            rate: 0.0,
            seed: 0,
            kinds: FaultKind::ALL.to_vec(),
            stall: Duration::from_secs(3),
            skew: Duration::from_secs(60),
            retry_after_s: 0,
        }
    }
}

impl Faults {
    /// Checks the values (a rate in 0..=1 and at least one kind).
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.rate) {
            return Err(format!(
                "the fault rate {} is not between 0 and 1",
                self.rate
            ));
        }
        if self.kinds.is_empty() {
            return Err("no fault kind given".into());
        }
        Ok(())
    }
}

/// The run-time state: the settings, the draws, the forced queue and the counters.
pub(crate) struct FaultState {
    faults: Faults,
    rng: u64,
    /// Kinds forced on the next API requests, in order, whatever the rate.
    next: VecDeque<FaultKind>,
    requests: u64,
    injected: BTreeMap<FaultKind, u64>,
}

impl FaultState {
    pub(crate) fn new(faults: Faults) -> Self {
        FaultState {
            rng: faults.seed,
            faults,
            next: VecDeque::new(),
            requests: 0,
            injected: BTreeMap::new(),
        }
    }

    /// splitmix64: small, fast and good enough for a fault schedule (no dependency).
    fn draw(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The fault of the next API request, if any, with a draw for its details.
    fn pick(&mut self) -> Option<(FaultKind, u64)> {
        self.requests += 1;
        let kind = match self.next.pop_front() {
            Some(k) => k,
            None => {
                // 53 random bits as a fraction in [0, 1).
                let x = (self.draw() >> 11) as f64 / (1u64 << 53) as f64;
                if x >= self.faults.rate {
                    return None;
                }
                let i = self.draw() % self.faults.kinds.len() as u64;
                self.faults.kinds[i as usize]
            }
        };
        *self.injected.entry(kind).or_default() += 1;
        Some((kind, self.draw()))
    }

    /// The control API's view (`GET /_sandbox/faults`).
    pub(crate) fn view(&self) -> serde_json::Value {
        let injected: serde_json::Map<_, _> = FaultKind::ALL
            .iter()
            .map(|k| {
                let n = self.injected.get(k).copied().unwrap_or(0);
                (k.name().to_owned(), n.into())
            })
            .collect();
        serde_json::json!({
            "rate": self.faults.rate,
            "seed": self.faults.seed,
            "kinds": self.faults.kinds,
            "stallMs": self.faults.stall.as_millis() as u64,
            "skewMs": self.faults.skew.as_millis() as u64,
            "retryAfter": self.faults.retry_after_s,
            "next": self.next,
            "requests": self.requests,
            "injected": injected,
        })
    }

    /// Applies a `POST /_sandbox/faults` body: the fields given replace the current
    /// ones; the draws restart from the seed and the counters from zero.
    pub(crate) fn update(&mut self, body: &serde_json::Value) -> Result<(), ApiFailure> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct Update {
            rate: Option<f64>,
            seed: Option<u64>,
            kinds: Option<Vec<FaultKind>>,
            stall_ms: Option<u64>,
            skew_ms: Option<u64>,
            retry_after: Option<u64>,
            next: Option<Vec<FaultKind>>,
        }
        let u: Update = serde_json::from_value(body.clone())
            .map_err(|e| ApiFailure::bad_params(&format!("faults: {e}")))?;
        let mut faults = self.faults.clone();
        if let Some(r) = u.rate {
            faults.rate = r;
        }
        if let Some(s) = u.seed {
            faults.seed = s;
        }
        if let Some(k) = u.kinds {
            faults.kinds = k;
        }
        if let Some(ms) = u.stall_ms {
            faults.stall = Duration::from_millis(ms);
        }
        if let Some(ms) = u.skew_ms {
            faults.skew = Duration::from_millis(ms);
        }
        if let Some(s) = u.retry_after {
            faults.retry_after_s = s;
        }
        faults.validate().map_err(|e| ApiFailure::bad_params(&e))?;
        let next = u.next.map(VecDeque::from).unwrap_or_default();
        *self = FaultState::new(faults);
        self.next = next;
        Ok(())
    }
}

tokio::task_local! {
    /// The clock offset of the request being handled (a `skew` fault), in ms.
    static SKEW_MS: i64;
}

/// The server's clock as the current request sees it: [`now_ms`] reads it.
pub(crate) fn skew_ms() -> i64 {
    SKEW_MS.try_with(|s| *s).unwrap_or(0)
}

/// Whether faults may strike this path: the API versions and the cloud, never the
/// control API nor the pages a browser follows.
fn faultable(path: &str) -> bool {
    path.starts_with("/v1.") || path.starts_with("/cloud/")
}

/// The middleware: draws a fault for each API request and applies it.
pub(crate) async fn inject(State(shared): State<Shared>, req: Request, next: Next) -> Response {
    if !faultable(req.uri().path()) {
        return next.run(req).await;
    }
    // One lock: the draw and the settings it was drawn under.
    let picked = {
        let mut state = shared.faults.lock().unwrap_or_else(|p| p.into_inner());
        state.pick().map(|p| (p, state.faults.clone()))
    };
    let Some(((kind, draw), faults)) = picked else {
        return next.run(req).await;
    };
    let conn = req
        .extensions()
        .get::<ConnectInfo<Conn>>()
        .map(|c| c.0.clone());
    let mut resp = match kind {
        FaultKind::Unavailable => busy(503, "ServiceUnavailable", &faults),
        FaultKind::TooMany => busy(429, "TooManyRequests", &faults),
        FaultKind::Drop => {
            match &conn {
                Some(c) => c.reset(),
                None => return busy(503, "ServiceUnavailable", &faults),
            }
            ApiFailure::new(500, "InternalError", "fault: dropped").into_response()
        }
        FaultKind::Expire => {
            expire_bearer_token(&shared, &req);
            next.run(req).await
        }
        FaultKind::Skew => {
            let ms = faults.skew.as_millis() as i64;
            let ms = if draw & 1 == 0 { ms } else { -ms };
            SKEW_MS.scope(ms, next.run(req)).await
        }
        FaultKind::Internal => {
            let _processed = next.run(req).await;
            ApiFailure::new(500, "InternalError", "An internal error occurred").into_response()
        }
        FaultKind::Stall => {
            let resp = next.run(req).await;
            tokio::time::sleep(faults.stall).await;
            resp
        }
        FaultKind::Reset | FaultKind::Truncate => {
            let head = req.method() == Method::HEAD;
            let resp = next.run(req).await;
            match (kind, conn) {
                (FaultKind::Truncate, _) if head => resp,
                (FaultKind::Truncate, _) => truncated(resp),
                (_, Some(c)) if head => {
                    c.reset();
                    resp
                }
                (_, Some(c)) => cut(resp, c),
                // No hold on the connection (an in-process router): the nearest thing.
                (_, None) => truncated(resp),
            }
        }
    };
    resp.extensions_mut().insert(Injected(kind));
    resp
}

/// The fault a response got, for the request log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Injected(pub(crate) FaultKind);

fn busy(status: u16, code: &'static str, faults: &Faults) -> Response {
    let mut resp =
        ApiFailure::new(status, code, "fault: the server is busy, retry later").into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(faults.retry_after_s));
    resp
}

/// Expires the access token named by the request's bearer JWT, if any (its signature
/// is the handler's business: only a genuine token is in the table anyway).
fn expire_bearer_token(shared: &Shared, req: &Request) {
    let claims = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .and_then(|(_, jws)| digime_crypto::jws::Compact::parse(jws.trim()).ok())
        .and_then(|c| c.payload().ok())
        .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p).ok());
    let Some(token) = claims
        .as_ref()
        .and_then(|c| c.get("access_token"))
        .and_then(|t| t.as_str())
    else {
        return;
    };
    let mut st = shared.lock();
    let now_s = now_ms() / 1000;
    if let Some(t) = st.access_tokens.get_mut(token) {
        t.expires_s = t.expires_s.min(now_s);
        let _ = shared.save(&st);
    }
}

/// How much of a body a `reset` or `truncate` lets through: half of its length (its
/// `content-length`, or what the body knows of itself), else 32 KiB.
fn keep_of(headers: &axum::http::HeaderMap, body: &Body) -> usize {
    use axum::body::HttpBody as _;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared.or(body.size_hint().exact()) {
        Some(n) => (n / 2) as usize,
        None => 32 * 1024,
    }
}

/// The answer with its body cut to [`keep_of`], cleanly framed.
fn truncated(resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    let keep = keep_of(&parts.headers, &body);
    parts.headers.remove(header::CONTENT_LENGTH);
    let data = body.into_data_stream();
    let stream = futures_util::stream::unfold((data, keep), |(mut data, left)| async move {
        if left == 0 {
            return None;
        }
        match data.next().await? {
            Ok(mut chunk) => {
                chunk.truncate(left);
                let n = chunk.len();
                Some((Ok::<Bytes, io::Error>(chunk), (data, left - n)))
            }
            Err(e) => Some((Err(io::Error::other(e)), (data, 0))),
        }
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

/// The answer whose connection is reset once [`keep_of`] bytes of its body went out.
fn cut(resp: Response, conn: Conn) -> Response {
    let (parts, body) = resp.into_parts();
    let keep = keep_of(&parts.headers, &body);
    if keep == 0 {
        conn.reset();
        return Response::from_parts(parts, Body::empty());
    }
    let data = body.into_data_stream();
    let stream = futures_util::stream::unfold(
        (data, keep, Some(conn)),
        |(mut data, left, conn)| async move {
            let conn = conn?;
            let chunk = if left == 0 { None } else { data.next().await };
            match chunk {
                Some(Ok(mut chunk)) => {
                    chunk.truncate(left);
                    let n = chunk.len();
                    Some((Ok(chunk), (data, left - n, Some(conn))))
                }
                _ => {
                    // Let what went before reach the wire, then reset.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    conn.reset();
                    let e = io::Error::new(io::ErrorKind::ConnectionReset, "fault: reset");
                    Some((Err::<Bytes, _>(e), (data, 0, None)))
                }
            }
        },
    );
    Response::from_parts(parts, Body::from_stream(stream))
}

/// The listener the sandbox serves through: a TCP listener whose connections can be
/// reset by the requests they carry.
pub(crate) struct FaultListener(pub(crate) TcpListener);

impl Listener for FaultListener {
    type Io = FaultIo;
    type Addr = Conn;

    async fn accept(&mut self) -> (FaultIo, Conn) {
        loop {
            match self.0.accept().await {
                Ok((tcp, _peer)) => {
                    // Every answer goes out at once, as from a production server:
                    // without TCP_NODELAY a response written in two pieces (headers,
                    // then a streamed body) waits for the client's delayed ACK.
                    let _ = tcp.set_nodelay(true);
                    let conn = Conn(Arc::new(AtomicBool::new(false)));
                    return (
                        FaultIo {
                            tcp,
                            conn: conn.clone(),
                        },
                        conn,
                    );
                }
                // Out of file descriptors and the like: wait rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Not an address: a handle of no connection (axum asks for it only to log).
    fn local_addr(&self) -> io::Result<Conn> {
        self.0.local_addr()?;
        Ok(Conn(Arc::new(AtomicBool::new(false))))
    }
}

/// A handle on one connection, in every request's extensions (`ConnectInfo<Conn>`).
#[derive(Clone)]
pub(crate) struct Conn(Arc<AtomicBool>);

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Conn")
    }
}

impl Conn {
    /// From now on the connection fails every read and write and is reset when dropped.
    fn reset(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Connected<IncomingStream<'_, FaultListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, FaultListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A TCP stream that its [`Conn`] can reset.
pub(crate) struct FaultIo {
    tcp: TcpStream,
    conn: Conn,
}

impl FaultIo {
    fn check(&self) -> io::Result<()> {
        if !self.conn.0.load(Ordering::SeqCst) {
            return Ok(());
        }
        // An RST rather than a FIN when the socket closes.
        let _ = self.tcp.set_zero_linger();
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "fault: connection reset",
        ))
    }
}

impl AsyncRead for FaultIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        me.check()?;
        Pin::new(&mut me.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for FaultIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        me.check()?;
        Pin::new(&mut me.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        me.check()?;
        Pin::new(&mut me.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        me.check()?;
        Pin::new(&mut me.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        me.check()?;
        Pin::new(&mut me.tcp).poll_shutdown(cx)
    }
}
