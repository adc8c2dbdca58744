//! A scripted digi.me server for the scenario tests: no sockets, no real time.
//!
//! * [`Script`] drives any [`Flow`] to its end. Each `Step::Send` is answered by the
//!   next scripted [`Answer`] (a response, a transport error, or a closure that looks
//!   at the request); every request is recorded as a [`Seen`] with the decoded claims
//!   of its `Authorization: Bearer` JWT. `Step::Sleep(d)` advances a fake clock by `d`
//!   and is recorded; nothing ever really sleeps. `Step::Receive` feeds the held body
//!   of a [`Answer::streamed`] response in chunks. A request beyond the script panics,
//!   and a script dropped with answers left over panics too.
//! * [`ServerKeys`] signs server tokens (PS512, `kid`, `jku` = the configured key-set
//!   URL), serves their key set, and builds `oauth/token` answers.
//! * [`World`] is one app, one contract, one user token, one session, one server.
//! * [`Script::read_all`] drives the `read_all_files` coordinator: tasks are started
//!   when it says `Run` and finish, one at a time in the order they started, when it
//!   says `Wait` or `Sleep` (a `Sleep` with nothing in flight advances the clock).
#![allow(dead_code)] // each test file uses a part of the harness

use digime_crypto::{PrivateKey, b64url_encode, envelope, jws};
use digime_protocol::flow::{Event, Flow, Step};
use digime_protocol::http::{HeaderMap, Method, Request, Response};
use digime_protocol::read_all::{ReadAllFiles, ReadAllStep, Task};
use digime_protocol::wire::Body;
use digime_protocol::{
    Config, Contract, Error, FileData, Output, ReadAllEvent, ReadAllOptions, ReadAllSummary, Sdk,
    SessionKey, TransportError, TransportErrorKind, UserAccessToken,
};
use serde_json::{Map, Value, json};
use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

/// Where the fake clock starts (a fixed instant, so that dates in tests are stable).
pub const T0: Duration = Duration::from_secs(1_700_000_000);

/// A request the flow sent.
#[derive(Debug)]
pub struct Seen {
    /// The method.
    pub method: Method,
    /// The path relative to the API base (`oauth/token`), or the whole URL elsewhere.
    pub path: String,
    /// The headers.
    pub headers: HeaderMap,
    /// The claims of the bearer JWT, if the request had one.
    pub claims: Option<Map<String, Value>>,
    /// The body, when it was given as bytes.
    pub body: Option<Vec<u8>>,
    /// The query string (empty when there is none).
    pub query: String,
    /// The upload, when the body is the caller's ([`Body::Upload`]).
    pub upload: Option<digime_protocol::upload::Upload>,
    /// The fake time it was sent at.
    pub at: SystemTime,
}

impl Seen {
    /// A string claim of the bearer JWT; panics when absent.
    pub fn claim(&self, name: &str) -> &str {
        let claims = self.claims.as_ref().expect("a bearer JWT");
        claims
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no string claim {name:?} in {claims:?}"))
    }
}

enum Kind {
    Http {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        chunk: Option<usize>,
        cut: Option<usize>,
    },
    Transport(TransportErrorKind),
    With(Box<dyn FnOnce(&Seen) -> Answer>),
}

/// One scripted answer to one request.
pub struct Answer(Kind);

impl Answer {
    /// A response with this status, no headers, an empty body.
    pub fn status(status: u16) -> Self {
        Answer(Kind::Http {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            chunk: None,
            cut: None,
        })
    }
    /// `200` with this JSON body.
    pub fn json(body: &str) -> Self {
        Answer::status(200).body(body)
    }
    /// The standard error body `{"error":{"code","message"}}` with this status.
    pub fn api_error(status: u16, code: &str) -> Self {
        Answer::status(status).body(json!({"error": {"code": code, "message": "scripted"}}))
    }
    /// No response: the transport failed this way.
    pub fn transport(kind: TransportErrorKind) -> Self {
        Answer(Kind::Transport(kind))
    }
    /// The answer this closure makes of the request.
    pub fn with(f: impl FnOnce(&Seen) -> Answer + 'static) -> Self {
        Answer(Kind::With(Box::new(f)))
    }
    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let Kind::Http { headers, .. } = &mut self.0 {
            headers.push((name.into(), value.into()));
        }
        self
    }
    /// Sets the body (bytes, a string, or a JSON value).
    pub fn body(mut self, bytes: impl Into<BodyBytes>) -> Self {
        if let Kind::Http { body, .. } = &mut self.0 {
            *body = bytes.into().0;
        }
        self
    }
    /// The headers go to `handle_response` with an empty body; the body is held for
    /// the flow's `Step::Receive` and fed in chunks of `chunk` bytes.
    pub fn streamed(mut self, chunk_size: usize) -> Self {
        if let Kind::Http { chunk, .. } = &mut self.0 {
            *chunk = Some(chunk_size.max(1));
        }
        self
    }
    /// A streamed body whose connection breaks (`Reset`) after `bytes` bytes.
    pub fn cut_after(mut self, bytes: usize) -> Self {
        if let Kind::Http { cut, .. } = &mut self.0 {
            *cut = Some(bytes);
        }
        self
    }
}

/// Anything that makes a body.
pub struct BodyBytes(Vec<u8>);
impl From<&str> for BodyBytes {
    fn from(s: &str) -> Self {
        BodyBytes(s.as_bytes().to_vec())
    }
}
impl From<String> for BodyBytes {
    fn from(s: String) -> Self {
        BodyBytes(s.into_bytes())
    }
}
impl From<Vec<u8>> for BodyBytes {
    fn from(b: Vec<u8>) -> Self {
        BodyBytes(b)
    }
}
impl From<Value> for BodyBytes {
    fn from(v: Value) -> Self {
        BodyBytes(v.to_string().into_bytes())
    }
}

/// The scripted server and fake clock.
pub struct Script {
    now: SystemTime,
    base_path: String,
    answers: VecDeque<Answer>,
    held: Option<(Vec<u8>, usize, Option<usize>)>,
    /// Every request, in order.
    pub requests: Vec<Seen>,
    /// Every `Step::Sleep`, in order.
    pub sleeps: Vec<Duration>,
    /// Every `Step::Event`, in order.
    pub events: Vec<Event>,
    /// Requests, sleeps and events as short lines (`GET permission-access/accounts`,
    /// `sleep 7000ms`, `event TokenRefreshed`).
    pub trace: Vec<String>,
    /// What `handle_body`/`handle_body_end` handed out (streamed output).
    pub output: Vec<u8>,
}

impl Script {
    /// An empty script for an SDK with this configuration; the clock is at [`T0`].
    pub fn new(config: &Config) -> Self {
        let base = config.base_url().parse::<digime_protocol::http::Uri>();
        Script {
            now: SystemTime::UNIX_EPOCH + T0,
            base_path: base.map(|u| u.path().to_owned()).unwrap_or_default(),
            answers: VecDeque::new(),
            held: None,
            requests: Vec::new(),
            sleeps: Vec::new(),
            events: Vec::new(),
            trace: Vec::new(),
            output: Vec::new(),
        }
    }

    /// Queues the answer to the next request.
    pub fn then(&mut self, answer: Answer) -> &mut Self {
        self.answers.push_back(answer);
        self
    }

    /// The fake time.
    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// Moves the fake clock forward.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// The requests as `METHOD path`.
    pub fn endpoints(&self) -> Vec<String> {
        let line = |r: &Seen| format!("{} {}", r.method, r.path);
        self.requests.iter().map(line).collect()
    }

    /// The last request sent.
    pub fn last(&self) -> &Seen {
        self.requests.last().expect("a request was sent")
    }

    /// Panics unless every scripted answer was used.
    pub fn assert_consumed(&self) {
        assert!(
            self.answers.is_empty(),
            "{} scripted answer(s) never asked for; requests were {:?}",
            self.answers.len(),
            self.endpoints()
        );
    }

    /// Drives `flow` to `Step::Done` and returns its result.
    pub fn run<F: Flow>(&mut self, mut flow: F) -> Result<F::Output, Error> {
        loop {
            match flow.poll(self.now) {
                Step::Send(request) => self.answer(&mut flow, request),
                Step::Sleep(d) => {
                    self.now += d;
                    self.sleeps.push(d);
                    self.trace.push(format!("sleep {}ms", d.as_millis()));
                }
                Step::Event(e) => {
                    let Event::TokenRefreshed(t) = &e else {
                        panic!("unknown event {e:?}")
                    };
                    let line = format!("event TokenRefreshed {}", t.access_token.value.expose());
                    self.trace.push(line);
                    self.events.push(e);
                }
                Step::Receive => self.receive(&mut flow),
                Step::Done(result) => return result,
            }
        }
    }

    fn record(&mut self, request: Request<Body>) -> Seen {
        let (parts, body) = request.into_parts();
        let uri = parts.uri.to_string();
        let path = match parts.uri.path().strip_prefix(self.base_path.as_str()) {
            Some(rest) if !self.base_path.is_empty() => rest.to_owned(),
            _ => uri,
        };
        let claims = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|jwt| {
                let payload = jws::Compact::parse(jwt).unwrap().payload().unwrap();
                serde_json::from_slice(&payload).expect("the request JWT is a JSON object")
            });
        let (body, upload) = match body {
            Body::Bytes(b) => (Some(b), None),
            Body::Upload(u) => (None, Some(u)),
            Body::Empty => (None, None),
        };
        Seen {
            method: parts.method,
            path,
            headers: parts.headers,
            claims,
            body,
            query: parts.uri.query().unwrap_or("").to_owned(),
            upload,
            at: self.now,
        }
    }

    fn answer<F: Flow>(&mut self, flow: &mut F, request: Request<Body>) {
        // A driver drops a body it still holds when the flow sends again.
        self.held = None;
        let seen = self.record(request);
        self.trace.push(format!("{} {}", seen.method, seen.path));
        let Some(mut answer) = self.answers.pop_front() else {
            panic!(
                "unscripted request #{}: {} {} (trace: {:?})",
                self.requests.len() + 1,
                seen.method,
                seen.path,
                self.trace
            );
        };
        while let Kind::With(f) = answer.0 {
            answer = f(&seen);
        }
        self.requests.push(seen);
        match answer.0 {
            Kind::Transport(kind) => {
                flow.handle_transport_error(TransportError::new(kind, "scripted"));
            }
            Kind::Http {
                status,
                headers,
                body,
                chunk,
                cut,
            } => {
                let mut b = Response::builder().status(status);
                for (k, v) in headers {
                    b = b.header(k, v);
                }
                let body = match chunk {
                    Some(size) => {
                        self.held = Some((body, size, cut));
                        Vec::new()
                    }
                    None => body,
                };
                flow.handle_response(b.body(body).unwrap());
            }
            Kind::With(_) => unreachable!(),
        }
    }

    fn receive<F: Flow>(&mut self, flow: &mut F) {
        let (body, size, cut) = self
            .held
            .take()
            .expect("Step::Receive without a streamed answer (use Answer::streamed)");
        let sent = &body[..cut.unwrap_or(body.len()).min(body.len())];
        let drain = |flow: &mut F, output: &mut Vec<u8>| {
            let mut step = Vec::new();
            while digime_protocol::flow::drain_body(flow, &mut step) || !step.is_empty() {
                output.append(&mut step);
            }
        };
        for chunk in sent.chunks(size) {
            let more = flow.handle_body(chunk, &mut self.output);
            drain(flow, &mut self.output);
            if !more {
                flow.handle_body_end(&mut self.output);
                return drain(flow, &mut self.output);
            }
        }
        match cut {
            Some(_) => flow.handle_transport_error(TransportError::new(
                TransportErrorKind::Reset,
                "scripted cut",
            )),
            None => {
                flow.handle_body_end(&mut self.output);
                drain(flow, &mut self.output);
            }
        }
    }

    /// Drives a `read_all_files` coordinator to its end (see the module docs for the
    /// order tasks finish in). Downloads are buffered.
    pub fn read_all(&mut self, mut all: ReadAllFiles<FileData>) -> ReadAllRun {
        type Job = Box<dyn FnOnce(&mut Script, &mut ReadAllFiles<FileData>)>;
        let mut in_flight: VecDeque<(bool, Job)> = VecDeque::new();
        let mut run = ReadAllRun::default();
        let files_in_flight = |q: &VecDeque<(bool, Job)>| q.iter().filter(|j| j.0).count();
        loop {
            match all.poll(self.now) {
                ReadAllStep::Run(Task::List(t)) => {
                    run.log.push("list".into());
                    let flow = t.into_flow();
                    in_flight.push_back((
                        false,
                        Box::new(move |s, all| {
                            let r = s.run(flow);
                            all.list_done(r, s.now);
                        }),
                    ));
                }
                ReadAllStep::Run(Task::File(t)) => {
                    run.log
                        .push(format!("get {}@{}", t.entry.name, t.entry.updated_date));
                    let id = t.id;
                    let flow = t.into_flow(Output::Buffer);
                    in_flight.push_back((
                        true,
                        Box::new(move |s, all| all.file_done(id, s.run(flow).map(|a| a.value))),
                    ));
                    run.max_downloads = run.max_downloads.max(files_in_flight(&in_flight));
                }
                ReadAllStep::Run(Task::Refresh(t)) => {
                    run.log.push("refresh".into());
                    let flow = t.into_flow();
                    in_flight
                        .push_back((false, Box::new(move |s, all| all.refresh_done(s.run(flow)))));
                }
                ReadAllStep::Run(_) => panic!("a task this harness does not know"),
                ReadAllStep::Sleep(d) if in_flight.is_empty() => {
                    run.log.push(format!("sleep {}ms", d.as_millis()));
                    self.now += d;
                }
                ReadAllStep::Sleep(_) | ReadAllStep::Wait => {
                    let (_, job) = in_flight.pop_front().expect("Wait with nothing in flight");
                    job(self, &mut all);
                }
                ReadAllStep::Event(e) => run.log.push(match e {
                    ReadAllEvent::StatusChanged(s) => format!("status {}", s.state),
                    ReadAllEvent::File(f) => {
                        let line = format!("file {}", f.head.name);
                        run.files.push(f);
                        line
                    }
                    ReadAllEvent::FileError { entry, error } => {
                        format!("error {}: {error}", entry.name)
                    }
                    ReadAllEvent::TokenRefreshed(t) => {
                        format!("token {}", t.access_token.value.expose())
                    }
                    _ => panic!("an event this harness does not know"),
                }),
                ReadAllStep::Done(r) => {
                    assert!(in_flight.is_empty(), "Done with tasks in flight");
                    run.result = Some(r);
                    return run;
                }
            }
        }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.assert_consumed();
        }
    }
}

/// What a `read_all_files` run did.
#[derive(Debug, Default)]
pub struct ReadAllRun {
    /// `list`, `get a@10`, `refresh`, `sleep 3000ms`, `status running`, `file a`,
    /// `error a: …`, `token a2`, in order.
    pub log: Vec<String>,
    /// The most downloads in flight at once.
    pub max_downloads: usize,
    /// The files delivered.
    pub files: Vec<FileData>,
    /// How it ended.
    pub result: Option<Result<ReadAllSummary, Error>>,
}

impl ReadAllRun {
    /// The summary of a run that succeeded.
    pub fn summary(&self) -> &ReadAllSummary {
        match &self.result {
            Some(Ok(s)) => s,
            other => panic!("the run did not succeed: {other:?}"),
        }
    }
    /// How many log lines are exactly `line`.
    pub fn count(&self, line: &str) -> usize {
        self.log.iter().filter(|l| *l == line).count()
    }
}

/// The server's signing keys and its key set.
pub struct ServerKeys {
    /// The key-set URL tokens name in `jku` (the configured one).
    pub jwks_url: String,
    keys: Vec<(String, PrivateKey)>,
}

impl ServerKeys {
    /// A fresh key per `kid`, pinned to `config`'s key-set URL.
    pub fn new(config: &Config, kids: &[&str]) -> Self {
        let keys = kids
            .iter()
            .map(|k| (k.to_string(), PrivateKey::generate().unwrap()))
            .collect();
        ServerKeys {
            jwks_url: config.jwks_url(),
            keys,
        }
    }

    pub fn key(&self, kid: &str) -> &PrivateKey {
        let found = self.keys.iter().find(|(k, _)| k == kid);
        &found.unwrap_or_else(|| panic!("no server key {kid:?}")).1
    }

    /// A token signed with the key of `kid`, the header naming `kid` and [`Self::jwks_url`].
    pub fn sign(&self, kid: &str, claims: &Value) -> String {
        let header = json!({"alg": "PS512", "typ": "JWT", "kid": kid, "jku": self.jwks_url});
        self.sign_with_header(kid, &header, claims)
    }

    /// A token signed with the key of `kid` under exactly this header.
    pub fn sign_with_header(&self, kid: &str, header: &Value, claims: &Value) -> String {
        let (h, p) = (header.to_string(), claims.to_string());
        jws::sign(h.as_bytes(), p.as_bytes(), self.key(kid)).unwrap()
    }

    /// The key set `{"keys":[{kid,kty,n,e,pem}]}` of these kids.
    pub fn jwks_of(&self, kids: &[&str]) -> Answer {
        let keys: Vec<Value> = kids
            .iter()
            .map(|kid| {
                let public = self.key(kid).public_key();
                json!({"kid": kid, "kty": "RSA", "n": b64url_encode(public.modulus()),
                       "e": b64url_encode(public.exponent()), "pem": public.to_pkcs1_pem()})
            })
            .collect();
        Answer::json(&json!({ "keys": keys }).to_string())
    }

    /// The key set of every key.
    pub fn jwks(&self) -> Answer {
        let kids: Vec<&str> = self.keys.iter().map(|(k, _)| k.as_str()).collect();
        self.jwks_of(&kids)
    }

    /// A `201 {"token": …}` answer to `oauth/token`, signed with `kid`.
    pub fn token_answer_signed(&self, kid: &str, access: &str, refresh: &str) -> Answer {
        let claims = json!({
            "access_token": {"value": access, "expires_on": 4_000_000_000u64},
            "refresh_token": {"value": refresh, "expires_on": 4_000_000_000u64},
            "sub": "user-1",
        });
        let token = self.sign(kid, &claims);
        Answer::status(201).body(json!({ "token": token }))
    }

    /// [`Self::token_answer_signed`] with the first key.
    pub fn token_answer(&self, access: &str, refresh: &str) -> Answer {
        self.token_answer_signed(&self.keys[0].0, access, refresh)
    }
}

/// One app with one contract, a user token `a1`/`r1`, a session `s1`, and the server.
pub struct World {
    /// The SDK.
    pub sdk: Sdk,
    /// The contract.
    pub contract: Contract,
    /// The user's token (access `a1`, refresh `r1`).
    pub token: UserAccessToken,
    /// A read session.
    pub session: SessionKey,
    /// The server's keys: `k1` (and `k2`).
    pub keys: ServerKeys,
}

impl World {
    /// The server keys are trusted statically: no key set is ever fetched.
    pub fn new() -> Self {
        let w = World::pinned(|_| {});
        let kids = [("k1".to_string(), w.keys.key("k1").public_key())];
        w.sdk
            .use_static_server_keys(digime_protocol::KeySet::from_keys(kids));
        w
    }

    /// The key set is fetched from the pinned URL when needed; `tune` adjusts the
    /// configuration first.
    pub fn pinned(tune: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::new("app").unwrap();
        tune(&mut config);
        let keys = ServerKeys::new(&config, &["k1", "k2"]);
        let token = serde_json::from_value(json!({
            "accessToken": {"value": "a1", "expiry": 1},
            "refreshToken": {"value": "r1", "expiry": 2},
        }))
        .unwrap();
        World {
            sdk: Sdk::new(config),
            contract: Contract::new("contract", PrivateKey::generate().unwrap()).unwrap(),
            token,
            session: SessionKey::new("s1").unwrap(),
            keys,
        }
    }

    /// An empty script for this world's configuration.
    pub fn script(&self) -> Script {
        Script::new(self.sdk.config())
    }

    /// A download answer: `plaintext` encrypted to the contract, with `X-Metadata`,
    /// streamed in chunks of 1000 bytes.
    pub fn file(&self, plaintext: &[u8]) -> Answer {
        let public = self.contract.key().public_key();
        let body = envelope::encrypt(&public, plaintext, envelope::Format::Current).unwrap();
        let meta = json!({"metadata": {"mimetype": "text/plain", "accounts": []}});
        Answer::status(200)
            .header("x-metadata", &b64url_encode(meta.to_string().as_bytes()))
            .body(body)
            .streamed(1000)
    }

    /// A file-list answer: `state` and `(name, updatedDate)` entries.
    pub fn list(state: &str, files: &[(&str, i64)]) -> Answer {
        let entries: Vec<Value> = files
            .iter()
            .map(|(n, d)| json!({"name": n, "updatedDate": d}))
            .collect();
        Answer::json(&json!({"status": {"state": state}, "fileList": entries}).to_string())
    }

    /// A `read_all_files` run of the session.
    pub fn read_all(&self, options: ReadAllOptions) -> ReadAllFiles<FileData> {
        self.sdk
            .read_all_files(&self.contract, &self.token, &self.session, options)
    }
}
