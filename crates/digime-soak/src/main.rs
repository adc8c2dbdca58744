//! `digime-soak`: thousands of mixed flows through both drivers against a sandbox
//! that fails on purpose, checking that nothing is lost, duplicated, corrupted or
//! misreported.
//!
//! ```sh
//! cargo run --release -p digime-soak -- --flows 2000 --rate 0.1
//! cargo run --release -p digime-soak -- --rate 0.3 --api http://127.0.0.1:PORT/v1.7/ \
//!     --control http://127.0.0.1:PORT/_sandbox/
//! ```
//!
//! By default it starts an embedded sandbox; `--api` and `--control` point it at a
//! running one instead (the demo contracts' keys are read from the paths its `info`
//! gives, so it must run on the same machine). The faults are set through the
//! control API: `--rate` of the API requests get one, drawn from `--kinds` with
//! `--seed`; a stall holds an answer 2 s, past the clients' 1 s idle timeout.
//!
//! The flows, drawn from the seed: authorize a new user (write contract, then the read
//! contract linked to it), push a file (a unique body, 10 B to 256 KiB), read all
//! files of a new session, read the accounts, expire the access token and read them
//! (a refresh), and four calls at once on one expired token (one shared refresh).
//! Each user belongs to one driver (blocking or async), and each driver has a client
//! per contract, so a token is only ever refreshed by one client; every flow starts
//! with the newest token the client announced (as an app persists it from the
//! listener). The clients retry up to four times, 5 ms apart and doubling. When a
//! user is lost (its refresh token spent by a refresh whose answer was lost), a new
//! user is authorized in its place, as an app would send the user through
//! authorization again.
//!
//! Then, with the faults off, it checks and prints the invariants:
//!
//! 1. no panic and no hang: every call ends within `--call-bound` seconds (default
//!    90: four retries of a 1 s idle timeout, with backoff, take under 10 s; a read-all
//!    is bounded by its own 60 s `max_duration`);
//! 2. every push reported done is in the library exactly once, byte-identical;
//! 3. every push reported failed is absent, or was reported `outcome_unknown` (then it
//!    is there once or not at all);
//! 4. every file read is byte-identical to what a clean read returns afterwards, or a
//!    typed error;
//! 5. every refreshed token is surfaced: each token a client announced to its listener
//!    was also handed back to a caller (`refreshed_token` of a result or an error, or a
//!    read-all event);
//! 6. no call says "reauthorization needed" while the user's refresh token is alive
//!    (`/_sandbox/users/{id}/refresh-tokens`). A refresh whose answer was lost spends
//!    the refresh token with the new one never received: that user's later
//!    reauthorizations are counted apart, as expected.
//!
//! It exits with 1 if any invariant fails.

use clap::{Parser, ValueEnum};
use digime_protocol::{
    Authed, AuthorizeOptions, Config, Contract, Error, FileDescriptor, PullOptions, ReadAllEvent,
    ReadAllOptions, ReadAllSummary, UserAccessToken, parse_callback,
};
use digime_sandbox::{BackgroundSandbox, ConsentMode, Sandbox, SandboxConfig, SandboxInfo};
use digime_testkit::control::Control;
use digime_testkit::fixtures::hex;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// The command line.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "digime-soak",
    about = "Mixed flows through both drivers against a sandbox that fails on purpose"
)]
struct Args {
    /// Flows to run.
    #[arg(long, default_value_t = 2000)]
    flows: usize,
    /// Share of API requests that get a fault, 0 to 1.
    #[arg(long, default_value_t = 0.1)]
    rate: f64,
    /// Seed of the fault draws and of the mix of flows.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fault kinds, comma-separated, or `all` (503, 429, 500, drop, reset, truncate,
    /// stall, skew, expire).
    #[arg(long, default_value = "all")]
    kinds: String,
    /// Flows running at once.
    #[arg(long, default_value_t = 8)]
    threads: usize,
    /// Users made before the flows start.
    #[arg(long, default_value_t = 12)]
    users: usize,
    /// Which drivers run the flows.
    #[arg(long, value_enum, default_value_t = Drivers::Both)]
    drivers: Drivers,
    /// API base of a running sandbox (default: an embedded one).
    #[arg(long, requires = "control")]
    api: Option<String>,
    /// Control base of that sandbox, `http://HOST:PORT/_sandbox/`.
    #[arg(long, requires = "api")]
    control: Option<String>,
    /// The longest a call may take, in seconds, before it counts as a hang.
    #[arg(long, default_value_t = 90)]
    call_bound: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Drivers {
    Blocking,
    Async,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    Blocking,
    Async,
}

/// A user of the soak, on one driver (its tokens are in [`Soak::latest`]).
struct User {
    id: String,
    driver: Driver,
    /// A call said "reauthorization needed" with the refresh token spent: the user is
    /// left alone from then on.
    lost: bool,
    /// A refresh of the read (write) token may have lost its answer: the refresh
    /// token may be spent with the new one never received.
    read_loss: bool,
    write_loss: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PushEnd {
    Done,
    Unknown,
    Failed,
}

struct Push {
    user: String,
    sha: String,
    end: PushEnd,
}

/// What the flows saw, for the checks at the end.
#[derive(Default)]
struct Record {
    pushes: Vec<Push>,
    /// `(user, file name)` → the SHA-256 of every copy read.
    reads: HashMap<(String, String), HashSet<String>>,
    file_errors: usize,
    files_read: usize,
    /// Tokens handed back to callers (SHA-256 of the access token).
    returned: HashSet<String>,
    /// Flow kind → (ok, failed).
    flows: BTreeMap<&'static str, (usize, usize)>,
    /// Error kind → count.
    errors: BTreeMap<String, usize>,
    outcome_unknown: usize,
    panics: Vec<String>,
    calls: usize,
    longest: Duration,
    over_bound: usize,
    /// "Reauthorization needed" while the user's refresh token was alive.
    false_reauth: Vec<String>,
    /// ... with the refresh token spent, after a refresh answer was seen lost.
    reauth_after_loss: usize,
    /// ... with the refresh token spent, no loss seen: a refresh whose answer came
    /// back but could not be used (say, the key set to verify it was unreachable).
    reauth_spent_unseen: usize,
}

struct Soak {
    args: Args,
    control: Control,
    write: Contract,
    read: Contract,
    /// Per contract: `[write, read]`.
    blocking: [digime_blocking::Client; 2],
    asynch: [digime_async::Client; 2],
    rt: tokio::runtime::Runtime,
    users: RwLock<Vec<Arc<Mutex<User>>>>,
    announced: Arc<Mutex<HashSet<String>>>,
    /// `(user, read contract?)` → the newest token: the one the client announced last.
    latest: Arc<Mutex<HashMap<(String, bool), UserAccessToken>>>,
    record: Mutex<Record>,
    next: AtomicUsize,
    pushed: AtomicUsize,
}

fn sha(bytes: &[u8]) -> String {
    hex(&digime_crypto::sha256(bytes))
}

fn token_id(t: &UserAccessToken) -> String {
    sha(t.access_token.value.expose().as_bytes())
}

/// splitmix64 of `x`: the flow mix's draws.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A short name of an error, for the summary.
fn error_kind(e: &Error) -> String {
    let e = e.cause();
    match e {
        Error::Api(a) => format!("api {} {}", a.status, a.code.as_str()),
        Error::Transport(t) => format!("transport {:?}", t.kind),
        Error::Decode { context, .. } => format!("decode {context}"),
        Error::Decryption(c) => format!("decryption {c:?}")
            .split(['{', '('])
            .next()
            .unwrap_or("decryption")
            .trim()
            .to_owned(),
        other => format!("{other:?}")
            .split(['{', '('])
            .next()
            .unwrap_or("other")
            .trim()
            .to_owned(),
    }
}

impl Soak {
    fn new(args: Args, info: SandboxInfo) -> Result<Self, String> {
        let control = Control::new(&info);
        let mut config: Config = info.client_config();
        config.retry.limit = 4;
        config.retry.base_delay = Duration::from_millis(5);
        let announced: Arc<Mutex<HashSet<String>>> = Arc::default();
        let latest: Arc<Mutex<HashMap<(String, bool), UserAccessToken>>> = Arc::default();
        // What an app does in its listener: keep the token, newest last.
        let listener = |read: bool| {
            let (announced, latest) = (announced.clone(), latest.clone());
            move |t: &UserAccessToken| {
                announced.lock().unwrap().insert(token_id(t));
                let user = t.user_id().unwrap_or_default().to_owned();
                latest.lock().unwrap().insert((user, read), t.clone());
            }
        };
        let idle = Duration::from_secs(1);
        let blocking = [false, true].map(|read| {
            digime_blocking::Client::new(config.clone())
                .with_idle_timeout(idle)
                .on_token_refreshed(listener(read))
        });
        let asynch = [false, true].map(|read| {
            digime_async::Client::new(config.clone())
                .with_idle_timeout(idle)
                .on_token_refreshed(listener(read))
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Soak {
            write: info.demo.write.contract().map_err(|e| e.to_string())?,
            read: info.demo.read.contract().map_err(|e| e.to_string())?,
            args,
            control,
            blocking,
            asynch,
            rt,
            users: RwLock::default(),
            announced,
            latest,
            record: Mutex::default(),
            next: AtomicUsize::new(0),
            pushed: AtomicUsize::new(0),
        })
    }

    fn rec(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs one SDK call, timed against the bound.
    fn call<T>(&self, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        let took = t.elapsed();
        let mut r = self.rec();
        r.calls += 1;
        r.longest = r.longest.max(took);
        if took > Duration::from_secs(self.args.call_bound) {
            r.over_bound += 1;
        }
        out
    }

    fn returned(&self, t: Option<&UserAccessToken>) {
        if let Some(t) = t {
            self.rec().returned.insert(token_id(t));
        }
    }

    /// Notes a failed call of `user` (whose token `held` the call started with).
    fn failed(&self, user: &Mutex<User>, e: &Error, read: bool) {
        self.returned(e.refreshed_token());
        let mut r = self.rec();
        *r.errors.entry(error_kind(e)).or_default() += 1;
        if e.outcome_unknown() {
            r.outcome_unknown += 1;
        }
        drop(r);
        let mut u = user.lock().unwrap();
        // A read never has an unknown outcome of its own: the refresh it made did. A
        // push's may be its own, so a write token's loss is assumed then.
        let loss = e.outcome_unknown()
            || matches!(
                e.cause(),
                Error::Decode {
                    context: "token",
                    ..
                }
            );
        if loss {
            if read {
                u.read_loss = true;
            } else {
                u.write_loss = true;
            }
        }
        if e.needs_reauthorization() {
            let lost_before = if read { u.read_loss } else { u.write_loss };
            let held = self.token(&u.id, read);
            let rt = held.refresh_token.value.expose().to_owned();
            if self.control.refresh_token_alive(&u.id, &rt) {
                let why = format!("user {}: {e} (its refresh token is alive)", u.id);
                self.rec().false_reauth.push(why);
            } else if lost_before {
                self.rec().reauth_after_loss += 1;
                u.lost = true;
            } else {
                self.rec().reauth_spent_unseen += 1;
                u.lost = true;
            }
        }
    }

    /// The newest token of a user for a contract.
    fn token(&self, user: &str, read: bool) -> UserAccessToken {
        self.latest.lock().unwrap()[&(user.to_owned(), read)].clone()
    }

    fn flow_end(&self, kind: &'static str, ok: bool) {
        let mut r = self.rec();
        let e = r.flows.entry(kind).or_default();
        if ok { e.0 += 1 } else { e.1 += 1 }
    }

    fn driver_of(&self, draw: u64) -> Driver {
        match self.args.drivers {
            Drivers::Blocking => Driver::Blocking,
            Drivers::Async => Driver::Async,
            Drivers::Both if draw.is_multiple_of(2) => Driver::Blocking,
            Drivers::Both => Driver::Async,
        }
    }

    // -----------------------------------------------------------------------------
    // The calls, on either driver.

    fn authorize(
        &self,
        d: Driver,
        contract: &Contract,
        linked: Option<UserAccessToken>,
    ) -> Result<UserAccessToken, Error> {
        let options = AuthorizeOptions {
            user_access_token: linked,
            ..Default::default()
        };
        let cb = "http://localhost/soak";
        let r = usize::from(contract.id() == self.read.id());
        let auth = self.call(|| match d {
            Driver::Blocking => self.blocking[r].authorize_url(contract, cb, "soak", options),
            Driver::Async => (self.rt.handle())
                .block_on(self.asynch[r].authorize_url(contract, cb, "soak", options)),
        })?;
        let callback = parse_callback(&self.control.browse(&auth.url))?.verify_state("soak")?;
        let (code, verifier) = (&callback.code, &auth.code_verifier);
        self.call(|| match d {
            Driver::Blocking => self.blocking[r].exchange_code_for_token(contract, code, verifier),
            Driver::Async => (self.rt.handle())
                .block_on(self.asynch[r].exchange_code_for_token(contract, code, verifier)),
        })
    }

    fn push(&self, d: Driver, t: &UserAccessToken, body: Vec<u8>) -> Result<Authed<()>, Error> {
        let desc = FileDescriptor::new("application/octet-stream");
        let w = &self.write;
        self.call(|| match d {
            Driver::Blocking => self.blocking[0].push_to_library(w, t, &desc, Cursor::new(body)),
            Driver::Async => (self.rt.handle()).block_on(self.asynch[0].push_to_library(
                w,
                t,
                &desc,
                Cursor::new(body),
            )),
        })
    }

    fn accounts(&self, d: Driver, t: &UserAccessToken) -> Result<Option<UserAccessToken>, Error> {
        let r = &self.read;
        self.call(|| match d {
            Driver::Blocking => self.blocking[1].read_accounts(r, t),
            Driver::Async => (self.rt.handle()).block_on(self.asynch[1].read_accounts(r, t)),
        })
        .map(|a| a.refreshed_token)
    }

    fn read_all(
        &self,
        d: Driver,
        t: &UserAccessToken,
        on_event: impl FnMut(ReadAllEvent<digime_protocol::FileData>),
    ) -> Result<(Option<UserAccessToken>, ReadAllSummary), Error> {
        let r = &self.read;
        let session = self.call(|| match d {
            Driver::Blocking => self.blocking[1].read_session(r, t, &PullOptions::default()),
            Driver::Async => (self.rt.handle()).block_on(self.asynch[1].read_session(
                r,
                t,
                &PullOptions::default(),
            )),
        })?;
        let first = session.refreshed_token;
        let t = first.as_ref().unwrap_or(t);
        let key = &session.value.key;
        let options = ReadAllOptions {
            poll_interval: Duration::from_millis(20),
            max_duration: Duration::from_secs(60),
            ..ReadAllOptions::default()
        };
        let summary = self.call(|| match d {
            Driver::Blocking => self.blocking[1].read_all_files(r, t, key, options, on_event),
            Driver::Async => (self.rt.handle())
                .block_on(self.asynch[1].read_all_files(r, t, key, options, on_event)),
        });
        match summary {
            Ok(s) => Ok((first, s)),
            // The trigger's refresh is still news for the caller.
            Err(e) => {
                self.returned(first.as_ref());
                Err(e)
            }
        }
    }

    // -----------------------------------------------------------------------------
    // The flows.

    fn new_user(&self, d: Driver) -> Result<(), Error> {
        let write = self.authorize(d, &self.write, None)?;
        let read = self.authorize(d, &self.read, Some(write.clone()))?;
        let id = write.user_id().unwrap_or_default().to_owned();
        let mut latest = self.latest.lock().unwrap();
        latest.insert((id.clone(), false), write);
        latest.insert((id.clone(), true), read);
        drop(latest);
        self.users.write().unwrap().push(Arc::new(Mutex::new(User {
            id,
            driver: d,
            lost: false,
            read_loss: false,
            write_loss: false,
        })));
        Ok(())
    }

    fn pick_user(&self, draw: u64) -> Option<Arc<Mutex<User>>> {
        let users = self.users.read().unwrap();
        let live: Vec<_> = users.iter().filter(|u| !u.lock().unwrap().lost).collect();
        if live.is_empty() {
            return None;
        }
        Some(live[(draw % live.len() as u64) as usize].clone())
    }

    fn flow(&self, n: usize) {
        let draw = mix(self.args.seed ^ (n as u64).wrapping_mul(0x1000_0000_01b3));
        let kind = match draw % 100 {
            0..=39 => "push",
            40..=54 => "read-all",
            55..=66 => "accounts",
            67..=79 => "refresh",
            80..=89 => "concurrent",
            _ => "authorize",
        };
        // A lost user is replaced: the app sends someone through authorization again.
        let live = (self.users.read().unwrap().iter())
            .filter(|u| !u.lock().unwrap().lost)
            .count();
        let kind = if live < self.args.users {
            "authorize"
        } else {
            kind
        };
        if kind == "authorize" {
            let ok = self.new_user(self.driver_of(draw >> 8));
            if let Err(e) = &ok {
                *self.rec().errors.entry(error_kind(e)).or_default() += 1;
            }
            return self.flow_end(kind, ok.is_ok());
        }
        let Some(user) = self.pick_user(draw >> 8) else {
            return self.flow_end(kind, false);
        };
        let (d, id) = {
            let u = user.lock().unwrap();
            (u.driver, u.id.clone())
        };
        let (write, read) = (self.token(&id, false), self.token(&id, true));
        let ok = match kind {
            "push" => {
                let seq = self.pushed.fetch_add(1, Ordering::Relaxed);
                let size = match (draw >> 16) % 10 {
                    0 => (64 << 10) + (((draw >> 24) % 192) << 10) as usize,
                    _ => 10 + ((draw >> 24) % 8192) as usize,
                };
                let mut body = format!("soak push {seq} of {id}\n").into_bytes();
                body.resize(size.max(body.len()), b'0' + (seq % 10) as u8);
                let digest = sha(&body);
                let r = self.push(d, &write, body);
                let end = match &r {
                    Ok(done) => {
                        self.returned(done.refreshed_token.as_ref());
                        PushEnd::Done
                    }
                    Err(e) => {
                        self.failed(&user, e, false);
                        if e.outcome_unknown() {
                            PushEnd::Unknown
                        } else {
                            PushEnd::Failed
                        }
                    }
                };
                self.rec().pushes.push(Push {
                    user: id,
                    sha: digest,
                    end,
                });
                r.is_ok()
            }
            "read-all" => {
                let mut seen = Vec::new();
                let mut tokens = Vec::new();
                let mut errors = Vec::new();
                let r = self.read_all(d, &read, |e| match e {
                    ReadAllEvent::File(f) => seen.push((f.head.name, sha(&f.data))),
                    ReadAllEvent::FileError { error, .. } => errors.push(error_kind(&error)),
                    ReadAllEvent::TokenRefreshed(t) => tokens.push(t),
                    _ => {}
                });
                for t in &tokens {
                    self.returned(Some(t));
                }
                {
                    let mut rec = self.rec();
                    rec.files_read += seen.len();
                    rec.file_errors += errors.len();
                    for k in errors {
                        *rec.errors.entry(format!("file: {k}")).or_default() += 1;
                    }
                    for (name, digest) in seen {
                        rec.reads
                            .entry((id.clone(), name))
                            .or_default()
                            .insert(digest);
                    }
                }
                match r {
                    Ok((first, summary)) => {
                        self.returned(first.as_ref());
                        self.returned(summary.refreshed_token.as_ref());
                        summary.files_failed == 0
                    }
                    Err(e) => {
                        self.failed(&user, &e, true);
                        false
                    }
                }
            }
            "accounts" | "refresh" => {
                if kind == "refresh" {
                    self.control.expire_access_tokens(&id);
                }
                match self.accounts(d, &read) {
                    Ok(new) => {
                        self.returned(new.as_ref());
                        true
                    }
                    Err(e) => {
                        self.failed(&user, &e, true);
                        false
                    }
                }
            }
            _ => {
                // Four calls at once on one expired token.
                self.control.expire_access_tokens(&id);
                let results: Vec<Result<Option<UserAccessToken>, Error>> = match d {
                    Driver::Blocking => std::thread::scope(|s| {
                        let calls: Vec<_> = (0..4)
                            .map(|_| s.spawn(|| self.accounts(d, &read)))
                            .collect();
                        calls
                            .into_iter()
                            .map(|c| c.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                            .collect()
                    }),
                    Driver::Async => self
                        .call(|| {
                            self.rt.handle().block_on(futures_util::future::join_all(
                                (0..4).map(|_| self.asynch[1].read_accounts(&self.read, &read)),
                            ))
                        })
                        .into_iter()
                        .map(|r| r.map(|a| a.refreshed_token))
                        .collect(),
                };
                let mut all_ok = true;
                for r in results {
                    match r {
                        Ok(new) => self.returned(new.as_ref()),
                        Err(e) => {
                            self.failed(&user, &e, true);
                            all_ok = false;
                        }
                    }
                }
                all_ok
            }
        };
        self.flow_end(kind, ok);
    }

    fn worker(&self) {
        loop {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            if n >= self.args.flows {
                return;
            }
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| self.flow(n))) {
                let what = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                self.rec().panics.push(format!("flow {n}: {what}"));
            }
        }
    }

    fn set_faults(&self, rate: f64) -> Result<(), String> {
        let kinds = digime_sandbox::faults::parse_fault_kinds(&self.args.kinds)?;
        self.control.set_faults(json!({
            "rate": rate, "seed": self.args.seed, "kinds": kinds,
            "stallMs": 2000, "skewMs": 60_000, "retryAfter": 0, "next": [],
        }));
        Ok(())
    }
}

/// One invariant's line.
struct Check {
    pass: bool,
    what: &'static str,
    detail: String,
}

/// The figures and invariants of a run.
struct Report {
    lines: Vec<String>,
    checks: Vec<Check>,
}

impl Report {
    fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.pass)
    }

    fn print(&self) {
        for l in &self.lines {
            println!("{l}");
        }
        println!("invariants:");
        for c in &self.checks {
            let mark = if c.pass { "PASS" } else { "FAIL" };
            println!("  {mark}  {} ({})", c.what, c.detail);
        }
    }
}

fn run(args: Args) -> Result<Report, String> {
    if !(0.0..=1.0).contains(&args.rate) {
        return Err(format!("--rate {} is not between 0 and 1", args.rate));
    }
    let started = Instant::now();
    let (embedded, info): (Option<BackgroundSandbox>, SandboxInfo) = match &args.control {
        None => {
            let sandbox = Sandbox::spawn(SandboxConfig {
                consent: ConsentMode::Auto,
                sync_step: Duration::from_millis(20),
                ..SandboxConfig::default()
            })
            .map_err(|e| format!("cannot start the sandbox: {e}"))?;
            let info = sandbox.info().clone();
            (Some(sandbox), info)
        }
        Some(control) => {
            let url = format!("{}info", control.trim_end_matches('/').to_owned() + "/");
            let v: Value = ureq_json(&url)?;
            let mut info: SandboxInfo =
                serde_json::from_value(v).map_err(|e| format!("{url}: {e}"))?;
            info.api = args.api.clone().unwrap_or(info.api);
            (None, info)
        }
    };
    let soak = Soak::new(args.clone(), info)?;
    soak.set_faults(0.0)?;
    for i in 0..args.users {
        soak.new_user(soak.driver_of(i as u64))
            .map_err(|e| format!("making user {i}: {e}"))?;
    }
    soak.set_faults(args.rate)?;
    std::thread::scope(|s| {
        for _ in 0..args.threads.max(1) {
            s.spawn(|| soak.worker());
        }
    });
    let faults = soak.control.faults();
    soak.set_faults(0.0)?;
    let report = check(&soak, &faults, started);
    drop(soak);
    drop(embedded);
    Ok(report)
}

fn ureq_json(url: &str) -> Result<Value, String> {
    let agent = ureq::Agent::new_with_defaults();
    let mut r = agent.get(url).call().map_err(|e| format!("{url}: {e}"))?;
    let text = r
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{url}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{url}: {e}"))
}

/// The checks at the end, faults off.
fn check(soak: &Soak, faults: &Value, started: Instant) -> Report {
    let users: Vec<Arc<Mutex<User>>> = soak.users.read().unwrap().clone();
    // Taken out: the clean reads below record their calls afresh.
    let mut rec = std::mem::take(&mut *soak.rec());
    let mut lines = Vec::new();
    let a = &soak.args;
    lines.push(format!(
        "digime-soak: {} flows, {} threads, drivers {:?}, fault rate {} (seed {}, kinds {}), {}",
        a.flows,
        a.threads,
        a.drivers,
        a.rate,
        a.seed,
        a.kinds,
        if a.control.is_some() {
            "external sandbox"
        } else {
            "embedded sandbox"
        }
    ));
    let flows: Vec<String> = rec
        .flows
        .iter()
        .map(|(k, (ok, failed))| format!("{k} {ok} ok / {failed} failed"))
        .collect();
    lines.push(format!("flows: {}", flows.join(", ")));
    let injected: Vec<String> = faults["injected"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, n)| n.as_u64() != Some(0))
                .map(|(k, n)| format!("{k} {n}"))
                .collect()
        })
        .unwrap_or_default();
    lines.push(format!(
        "API requests: {}; faults: {}",
        faults["requests"],
        injected.join(", ")
    ));
    let mut errors: Vec<_> = rec.errors.iter().collect();
    errors.sort_by(|x, y| y.1.cmp(x.1));
    let errors: Vec<String> = errors.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
    lines.push(format!(
        "calls: {}, longest {:.1} s; errors: {}",
        rec.calls,
        rec.longest.as_secs_f64(),
        if errors.is_empty() {
            "none".to_owned()
        } else {
            errors.join(", ")
        }
    ));

    let mut checks = Vec::new();
    checks.push(Check {
        pass: rec.panics.is_empty() && rec.over_bound == 0,
        what: "no panic and no hang",
        detail: format!(
            "{} panics; longest call {:.1} s, bound {} s, {} over",
            rec.panics.len(),
            rec.longest.as_secs_f64(),
            a.call_bound,
            rec.over_bound
        ),
    });
    for p in rec.panics.iter().take(5) {
        lines.push(format!("panic: {p}"));
    }

    // The library as it is now, per user: SHA-256 → copies.
    let mut libraries: HashMap<String, HashMap<String, usize>> = HashMap::new();
    for u in &users {
        let id = u.lock().unwrap().id.clone();
        let mut counts = HashMap::new();
        for f in soak.control.files(&id) {
            if let Some(s) = f["sha256"].as_str() {
                *counts.entry(s.to_owned()).or_insert(0) += 1;
            }
        }
        libraries.insert(id, counts);
    }
    let copies = |p: &Push| {
        libraries
            .get(&p.user)
            .and_then(|l| l.get(&p.sha))
            .copied()
            .unwrap_or(0)
    };
    let done: Vec<&Push> = rec
        .pushes
        .iter()
        .filter(|p| p.end == PushEnd::Done)
        .collect();
    let bad_done = done.iter().filter(|p| copies(p) != 1).count();
    checks.push(Check {
        pass: bad_done == 0,
        what: "every push reported done is in the library exactly once, byte-identical",
        detail: format!("{} done, {bad_done} not stored exactly once", done.len()),
    });
    let failed: Vec<&Push> = rec
        .pushes
        .iter()
        .filter(|p| p.end == PushEnd::Failed)
        .collect();
    let unknown: Vec<&Push> = rec
        .pushes
        .iter()
        .filter(|p| p.end == PushEnd::Unknown)
        .collect();
    let failed_stored = failed.iter().filter(|p| copies(p) > 0).count();
    let unknown_stored = unknown.iter().filter(|p| copies(p) == 1).count();
    let unknown_dup = unknown.iter().filter(|p| copies(p) > 1).count();
    checks.push(Check {
        pass: failed_stored == 0 && unknown_dup == 0,
        what: "every push reported failed is absent, or was reported outcome_unknown",
        detail: format!(
            "{} failed, {failed_stored} of them stored; {} outcome unknown: {unknown_stored} \
             stored once, {} absent, {unknown_dup} duplicated",
            failed.len(),
            unknown.len(),
            unknown.len() - unknown_stored - unknown_dup
        ),
    });

    // A clean read of every live user's library, against every copy read before.
    let mut mismatched = Vec::new();
    let mut compared = 0;
    let mut unchecked_users = 0;
    for u in &users {
        let (id, d, lost) = {
            let u = u.lock().unwrap();
            (u.id.clone(), u.driver, u.lost)
        };
        let read = soak.token(&id, true);
        if !rec.reads.keys().any(|(user, _)| *user == id) {
            continue;
        }
        if lost {
            unchecked_users += 1;
            continue;
        }
        let mut clean = HashMap::new();
        let mut tokens = Vec::new();
        let r = soak.read_all(d, &read, |e| match e {
            ReadAllEvent::File(f) => {
                clean.insert(f.head.name, sha(&f.data));
            }
            ReadAllEvent::TokenRefreshed(t) => tokens.push(token_id(&t)),
            _ => {}
        });
        rec.returned.extend(tokens);
        match &r {
            Ok((first, summary)) => {
                rec.returned.extend(first.as_ref().map(token_id));
                rec.returned
                    .extend(summary.refreshed_token.as_ref().map(token_id));
            }
            Err(e) => {
                rec.returned.extend(e.refreshed_token().map(token_id));
                unchecked_users += 1;
                continue;
            }
        }
        for ((user, name), digests) in rec.reads.iter().filter(|((user, _), _)| *user == id) {
            let Some(want) = clean.get(name) else {
                continue;
            };
            compared += digests.len();
            if digests.iter().any(|d| d != want) {
                mismatched.push(format!("{user}/{name}"));
            }
        }
    }
    // What the clean reads' own calls recorded.
    rec.returned
        .extend(std::mem::take(&mut soak.rec().returned));
    checks.push(Check {
        pass: mismatched.is_empty(),
        what: "every file read is byte-identical or a typed error",
        detail: format!(
            "{} files read, {compared} distinct copies compared with a clean read, {} differ; \
             {} typed file errors; {unchecked_users} users not re-read",
            rec.files_read,
            mismatched.len(),
            rec.file_errors
        ),
    });
    let announced = soak.announced.lock().unwrap().clone();
    let unsurfaced = announced.difference(&rec.returned).count();
    checks.push(Check {
        pass: unsurfaced == 0,
        what: "every refreshed token is surfaced",
        detail: format!(
            "{} tokens announced, {unsurfaced} never handed back",
            announced.len()
        ),
    });
    checks.push(Check {
        pass: rec.false_reauth.is_empty(),
        what: "no \"reauthorization needed\" while the refresh token is alive",
        detail: format!(
            "{} while alive; with the token spent: {} after a refresh answer was lost, {} \
             after a refresh that failed otherwise",
            rec.false_reauth.len(),
            rec.reauth_after_loss,
            rec.reauth_spent_unseen
        ),
    });
    for f in rec.false_reauth.iter().take(5) {
        lines.push(format!("false reauthorization: {f}"));
    }
    lines.push(format!(
        "outcome unknown: {}; users: {} ({} lost to a lost refresh answer); elapsed {:.1} s",
        rec.outcome_unknown,
        users.len(),
        users.iter().filter(|u| u.lock().unwrap().lost).count(),
        started.elapsed().as_secs_f64()
    ));
    Report { lines, checks }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(report) => {
            report.print();
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("digime-soak: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A short soak at a high fault rate holds every invariant, through both drivers.
    #[test]
    fn a_short_soak_at_30_percent_holds_every_invariant() {
        let args = Args::parse_from([
            "digime-soak",
            "--flows",
            "120",
            "--rate",
            "0.3",
            "--users",
            "4",
        ]);
        let report = run(args).unwrap();
        report.print();
        assert!(report.passed());
        assert!(report.lines.iter().any(|l| l.contains("faults: ")));
    }

    #[test]
    fn the_command_line_is_checked() {
        assert!(Args::try_parse_from(["digime-soak", "--api", "http://x/"]).is_err());
        assert!(Args::try_parse_from(["digime-soak", "--flows", "many"]).is_err());
        let a = Args::try_parse_from(["digime-soak", "--drivers", "async"]).unwrap();
        assert_eq!(a.drivers, Drivers::Async);
        assert!(run(Args::parse_from(["digime-soak", "--rate", "2"])).is_err());
    }
}
