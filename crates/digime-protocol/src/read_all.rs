//! `read_all_files`: poll a session's file list until the sync is over, downloading
//! every new or updated file (docs/protocol.md, "Read all"), with bounded concurrency, one
//! shared token refresh, and a clean stop.
//!
//! [`ReadAllFiles`] is a coordinator, not a single [`crate::Flow`]: it hands out
//! [`Task`]s (a file-list call, a file download, a token refresh), each an ordinary
//! flow that the driver runs *concurrently* and reports back. The run loop:
//!
//! ```text
//! loop {
//!     match all.poll(now()) {
//!         ReadAllStep::Run(task)   => start(task),       // do not wait for it; when it
//!                                                         // ends: list_done / file_done /
//!                                                         // refresh_done, then poll again
//!         ReadAllStep::Sleep(d)    => wait_for_a_task_or(d),
//!         ReadAllStep::Wait        => wait_for_a_task(),
//!         ReadAllStep::Event(e)    => deliver(e),
//!         ReadAllStep::Done(r)     => return r,            // every task has ended
//!     }
//! }
//! ```
//!
//! A driver may also run each task to its end before it polls again, one at a time:
//! the repository's `examples/std_transport.rs` does, as the simplest correct driver
//! (see [`crate::flow`], "Writing a driver"). It gives up only the concurrency.
//!
//! The polling itself, per file-list answer:
//!
//! ```text
//!            pending: nothing to download
//!          ┌──────────────┐
//!          ▼              │ after `poll_interval`
//!  ┌──────────────┐ ──────┘            ┌──────────────────────────────┐
//!  │ GET file list│ running: queue files│ files whose updatedDate grew  │
//!  └──────┬───────┘ ───────────────────▶│ (at most `max_concurrency`    │
//!         │ partial / completed         │ downloads at once)            │
//!         ▼                             └──────────────────────────────┘
//!  queue the last files, wait for every download, Done(summary)
//! ```
//!
//! Differences from the official SDK, on purpose: downloads run at most
//! `max_concurrency` at a time (unbounded there); a 401 on any call is answered with
//! one refresh shared by all calls in flight (each call refreshing on its own would
//! spend the rotated refresh token twice); `stop` takes effect at once (no new list
//! calls, queued downloads dropped, running ones finish); a failing file-list call
//! ends the run only after the downloads already running have been reported.

use crate::Contract;
use crate::auth::TokenFlow;
use crate::config::SessionKey;
use crate::error::Error;
use crate::file::{Output, ReadFile};
use crate::flow::{Authed, Flow, Step};
use crate::read::{FileList, FileListEntry, ReadFileList, SyncState, SyncStatus};
use crate::refresh::{AuthedCall, error_wants_refresh, without_marker};
use crate::sdk::Sdk;
use crate::token::UserAccessToken;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

/// The official SDK's interval between file-list calls.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(3);
/// Downloads running at once by default.
pub const DEFAULT_MAX_CONCURRENCY: usize = 4;

/// How `read_all_files` runs.
#[derive(Debug, Clone)]
pub struct ReadAllOptions {
    /// Time between file-list calls while the sync is pending or running (3 s).
    pub poll_interval: Duration,
    /// Downloads running at once (4; at least 1).
    pub max_concurrency: usize,
    /// Stops the run when triggered; keep a clone to stop it from anywhere.
    pub stop: StopHandle,
    /// The longest the run polls (one hour): then it stops as if [`StopHandle::stop`]
    /// had been called, and its summary says `timed_out`. A server that never ends
    /// its sync cannot keep the run alive forever.
    pub max_duration: Duration,
    /// The most distinct file names the run keeps track of (100,000): a list naming
    /// more ends the run with a [`Error::Decode`], so a server inventing names at
    /// every poll cannot grow the run's memory without end.
    pub max_files: usize,
    /// Files the app already holds, by name, with the `updatedDate` it read them at
    /// (empty): a listed file is downloaded only if its `updatedDate` is newer, so a
    /// run into a folder that a run filled before fetches only what changed. These
    /// names count towards [`ReadAllOptions::max_files`].
    pub already_read: HashMap<String, i64>,
}

/// The default of [`ReadAllOptions::max_duration`].
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(60 * 60);
/// The default of [`ReadAllOptions::max_files`].
pub const DEFAULT_MAX_FILES: usize = 100_000;

impl Default for ReadAllOptions {
    fn default() -> Self {
        ReadAllOptions {
            poll_interval: DEFAULT_POLL_INTERVAL,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            stop: StopHandle::default(),
            max_duration: DEFAULT_MAX_DURATION,
            max_files: DEFAULT_MAX_FILES,
            already_read: HashMap::new(),
        }
    }
}

/// What the app hears while `read_all_files` runs.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReadAllEvent<T> {
    /// The sync state changed (an initial `pending` is not reported, as in the
    /// official SDK). Carries the whole status, per-account details included.
    StatusChanged(SyncStatus),
    /// A file was downloaded, decrypted and decompressed.
    File(T),
    /// A file could not be read; the others go on.
    FileError {
        /// The file-list entry of the file.
        entry: FileListEntry,
        /// Why.
        error: Error,
    },
    /// The access token was refreshed: the run goes on with this token, the old one
    /// is spent. The drivers' token listener hears of it once, from the call that
    /// refreshed (this run's, or another call's that this run took it from).
    TokenRefreshed(UserAccessToken),
}

/// How a `read_all_files` run ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReadAllSummary {
    /// The last status the server reported (`pending` if none arrived).
    pub status: SyncStatus,
    /// The run was stopped before the sync was over.
    pub stopped: bool,
    /// It was stopped because it ran for [`ReadAllOptions::max_duration`].
    pub timed_out: bool,
    /// Files delivered.
    pub files_read: usize,
    /// Files reported as errors.
    pub files_failed: usize,
    /// The newest token, if it was refreshed during the run: persist it.
    pub refreshed_token: Option<UserAccessToken>,
}

/// Stops a `read_all_files` run from anywhere (another thread, an event handler).
#[derive(Debug, Clone, Default)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// Asks the run to stop: no new file-list calls or downloads start; the ones
    /// running finish and are reported; then the run ends with `stopped: true`.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A safe local file name for a server file name, for an app that saves a library
/// into a folder: one path component of plain characters (ASCII letters, digits,
/// `.`, `_`, `-`; never `.` or `..`), at most 200 bytes, and unique. A name kept as it
/// is never holds a `~`; a name that had to change gets `~` and 16 hex digits of its
/// SHA-256, so `a/b`, `a?b` and `a_b` land in three different files and a hostile name
/// (`../../etc/passwd`) cannot leave the folder. Since no kept name holds a `~`,
/// `LOCAL~anything` is free for the app's own temporary files.
///
/// ```
/// use digime_protocol::read_all::local_file_name;
/// assert_eq!(local_file_name("4_12_300_202610_1.json"), "4_12_300_202610_1.json");
/// assert!(local_file_name("../etc/passwd").starts_with(".._etc_passwd~"));
/// assert_ne!(local_file_name("a/b"), local_file_name("a_b"));
/// ```
pub fn local_file_name(name: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
    // Names of up to 200 bytes, to stay under every file system's limit (255).
    let kept = !name.is_empty()
        && name.len() <= 200
        && name != "."
        && name != ".."
        && name.chars().all(plain);
    if kept {
        return name.to_owned();
    }
    let safe: String = name
        .chars()
        .take(100)
        .map(|c| if plain(c) { c } else { '_' })
        .collect();
    let digest = digime_crypto::sha256(name.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{safe}~{hex}")
}

/// A file-list call to run; report its result with [`ReadAllFiles::list_done`].
#[derive(Debug)]
pub struct ListTask {
    flow: Box<AuthedCall<ReadFileList>>,
}

impl ListTask {
    /// The flow to run.
    pub fn into_flow(self) -> AuthedCall<ReadFileList> {
        *self.flow
    }
}

/// A download to run; report its result with [`ReadAllFiles::file_done`].
#[derive(Debug)]
pub struct FileTask {
    /// Identifies the download in `file_done`.
    pub id: u64,
    /// The file-list entry.
    pub entry: FileListEntry,
    sdk: Sdk,
    contract: Contract,
    session: SessionKey,
    token: UserAccessToken,
}

impl FileTask {
    /// The download flow, with the plaintext going where `output` says. It does not
    /// refresh on its own: a 401 is reported back and the coordinator refreshes once.
    pub fn into_flow(self, output: Output) -> ReadFile {
        ReadFile::new(
            self.sdk,
            self.contract,
            self.token,
            self.session,
            self.entry.name,
            output,
        )
        .without_refresh()
    }
}

/// A token refresh to run; report its result with [`ReadAllFiles::refresh_done`].
#[derive(Debug)]
pub struct RefreshTask {
    flow: TokenFlow,
}

impl RefreshTask {
    /// The flow to run: the refresh, shared with every other call of the process that
    /// holds the same refresh token ([`crate::single_flight`]). It yields
    /// [`crate::Event::TokenRefreshed`] only when this run issued the refresh: a token
    /// taken from another call was announced by that call. The run's own
    /// [`ReadAllEvent::TokenRefreshed`] comes either way.
    pub fn into_flow(self) -> RunRefresh {
        RunRefresh {
            inner: crate::single_flight::SharedRefresh::new(self.flow),
            done: None,
        }
    }
}

/// The flow of a [`Task::Refresh`] (see [`RefreshTask::into_flow`]).
#[derive(Debug)]
pub struct RunRefresh {
    inner: crate::single_flight::SharedRefresh,
    /// The token, once announced, to hand back at the next poll.
    done: Option<UserAccessToken>,
}

impl Flow for RunRefresh {
    type Output = UserAccessToken;

    fn poll(&mut self, now: SystemTime) -> Step<UserAccessToken> {
        if let Some(token) = self.done.take() {
            return Step::Done(Ok(token));
        }
        match self.inner.poll(now) {
            Step::Done(Ok(token)) if self.inner.was_ours() => {
                self.done = Some(token.clone());
                Step::Event(crate::flow::Event::TokenRefreshed(token))
            }
            step => step,
        }
    }

    fn handle_response(&mut self, response: http::Response<Vec<u8>>) {
        self.inner.handle_response(response);
    }

    fn handle_transport_error(&mut self, error: crate::error::TransportError) {
        self.inner.handle_transport_error(error);
    }
}

/// Work for the driver.
#[derive(Debug)]
#[non_exhaustive]
pub enum Task {
    /// Fetch the file list.
    List(ListTask),
    /// Download a file.
    File(FileTask),
    /// Refresh the access token.
    Refresh(RefreshTask),
}

/// How a task ended: its result, for [`ReadAllFiles::task_done`].
#[derive(Debug)]
pub enum TaskEnd<T> {
    /// A [`Task::List`].
    List(Result<Authed<FileList>, Error>),
    /// A [`Task::File`], by its id.
    File(u64, Result<T, Error>),
    /// A [`Task::Refresh`].
    Refresh(Result<UserAccessToken, Error>),
}

/// What the driver must do next.
// One step lives at a time, moved straight to the driver: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ReadAllStep<T> {
    /// Start this task without waiting for it; report its end, then poll again.
    Run(Task),
    /// Nothing to start before this much time has passed: poll again then, or as soon
    /// as a task ends.
    Sleep(Duration),
    /// Nothing to start until a task ends.
    Wait,
    /// Hand this event to the app, then poll again.
    Event(ReadAllEvent<T>),
    /// Finished: every task has ended and been reported.
    Done(Result<ReadAllSummary, Error>),
}

struct Queued {
    entry: FileListEntry,
    after_refresh: bool,
    /// Why a parked download waits (its 401), reported if it never runs again.
    cause: Option<Error>,
}

/// The downloads not started: retries first (each with the entry it ran with), then
/// new files in list order. A newer version of a file still waiting replaces it in
/// place, found by name in O(1).
#[derive(Default)]
struct Waiting {
    again: VecDeque<Queued>,
    fresh: VecDeque<String>,
    latest: HashMap<String, FileListEntry>,
}

impl Waiting {
    fn add(&mut self, entry: FileListEntry) {
        match self.latest.entry(entry.name.clone()) {
            Entry::Occupied(mut waiting) => {
                waiting.insert(entry);
            }
            Entry::Vacant(new) => {
                self.fresh.push_back(new.key().clone());
                new.insert(entry);
            }
        }
    }

    fn push_front(&mut self, q: Queued) {
        self.again.push_front(q);
    }

    fn pop_front(&mut self) -> Option<Queued> {
        if let Some(q) = self.again.pop_front() {
            return Some(q);
        }
        let name = self.fresh.pop_front()?;
        let entry = self.latest.remove(&name)?;
        Some(Queued {
            entry,
            after_refresh: false,
            cause: None,
        })
    }

    fn len(&self) -> usize {
        self.again.len() + self.fresh.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn clear(&mut self) {
        *self = Waiting::default();
    }
}

struct Running {
    entry: FileListEntry,
    token_gen: u64,
    after_refresh: bool,
}

/// The `read_all_files` coordinator; `T` is what a finished download yields (the
/// file's bytes, or its head when the bytes went to a sink).
pub struct ReadAllFiles<T> {
    sdk: Sdk,
    contract: Contract,
    session: SessionKey,
    options: ReadAllOptions,
    token: UserAccessToken,
    token_gen: u64,
    refreshed: Option<UserAccessToken>,
    handled: HashMap<String, i64>,
    local_state: SyncState,
    status: SyncStatus,
    queue: Waiting,
    parked: Vec<Queued>,
    running: HashMap<u64, Running>,
    list_running: Option<u64>,
    list_401s: u32,
    list_waits_for_refresh: bool,
    refresh_running: bool,
    refresh_wanted: bool,
    next_id: u64,
    next_poll: Option<SystemTime>,
    polling_over: bool,
    stop: StopHandle,
    stopped: bool,
    /// Stopped by [`ReadAllOptions::max_duration`].
    timed_out: bool,
    /// When the run was first polled.
    started: Option<SystemTime>,
    fatal: Option<Error>,
    events: VecDeque<ReadAllEvent<T>>,
    files_read: usize,
    files_failed: usize,
    finished: bool,
}

impl<T> std::fmt::Debug for ReadAllFiles<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadAllFiles")
            .field("session", &self.session)
            .field("state", &self.local_state)
            .field("queued", &self.queue.len())
            .field("running", &self.running.len())
            .field("files_read", &self.files_read)
            .field("files_failed", &self.files_failed)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl<T> ReadAllFiles<T> {
    pub(crate) fn new(
        sdk: Sdk,
        contract: Contract,
        token: UserAccessToken,
        session: SessionKey,
        mut options: ReadAllOptions,
    ) -> Self {
        let stop = options.stop.clone();
        let handled = std::mem::take(&mut options.already_read);
        options.max_concurrency = options.max_concurrency.max(1);
        ReadAllFiles {
            sdk,
            contract,
            session,
            options,
            token,
            token_gen: 0,
            refreshed: None,
            handled,
            local_state: SyncState::Pending,
            status: SyncStatus {
                state: SyncState::Pending,
                details: Default::default(),
            },
            queue: Waiting::default(),
            parked: Vec::new(),
            running: HashMap::new(),
            list_running: None,
            list_401s: 0,
            list_waits_for_refresh: false,
            refresh_running: false,
            refresh_wanted: false,
            next_id: 0,
            next_poll: None,
            polling_over: false,
            stop,
            stopped: false,
            timed_out: false,
            started: None,
            fatal: None,
            events: VecDeque::new(),
            files_read: 0,
            files_failed: 0,
            finished: false,
        }
    }

    /// A handle that stops the run from anywhere.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Stops the run (see [`StopHandle::stop`]).
    pub fn stop(&mut self) {
        self.stop.stop();
    }

    /// The token calls are made with now.
    pub fn token(&self) -> &UserAccessToken {
        &self.token
    }

    /// The last status the server reported.
    pub fn status(&self) -> &SyncStatus {
        &self.status
    }

    fn end_polling(&mut self) {
        self.polling_over = true;
        self.queue.clear();
        // A download that failed and waits for a refresh is reported, never dropped.
        for q in std::mem::take(&mut self.parked) {
            if let Some(error) = q.cause {
                self.files_failed += 1;
                self.events.push_back(ReadAllEvent::FileError {
                    entry: q.entry,
                    error,
                });
            }
        }
        self.list_waits_for_refresh = false;
    }

    fn fail(&mut self, error: Error) {
        if self.fatal.is_none() {
            self.fatal = Some(error);
        }
        self.refresh_wanted = false;
        self.end_polling();
    }

    /// The next thing to do.
    pub fn poll(&mut self, now: SystemTime) -> ReadAllStep<T> {
        let started = *self.started.get_or_insert(now);
        let over = now.duration_since(started).unwrap_or_default() >= self.options.max_duration;
        if (over || self.stop.is_stopped()) && !self.stopped {
            self.timed_out = over && !self.stop.is_stopped();
            self.stopped = true;
            self.refresh_wanted = false;
            self.end_polling();
        }
        if let Some(e) = self.events.pop_front() {
            return ReadAllStep::Event(e);
        }
        if self.finished {
            return ReadAllStep::Done(Err(crate::flow::misuse("poll after Done")));
        }
        if self.refresh_wanted && !self.refresh_running {
            self.refresh_wanted = false;
            self.refresh_running = true;
            let flow = TokenFlow::refresh(self.sdk.clone(), self.contract.clone(), &self.token);
            return ReadAllStep::Run(Task::Refresh(RefreshTask { flow }));
        }
        let poll_due = self.next_poll.is_none_or(|t| t <= now);
        if !self.polling_over
            && self.list_running.is_none()
            && !self.refresh_running
            && !self.list_waits_for_refresh
            && poll_due
        {
            self.list_running = Some(self.token_gen);
            let flow = self
                .sdk
                .call(
                    &self.contract,
                    &self.token,
                    ReadFileList::new(self.session.clone()),
                )
                .without_refresh();
            return ReadAllStep::Run(Task::List(ListTask {
                flow: Box::new(flow),
            }));
        }
        if !self.refresh_running
            && self.running.len() < self.options.max_concurrency
            && let Some(q) = self.queue.pop_front()
        {
            let id = self.next_id;
            self.next_id += 1;
            self.running.insert(
                id,
                Running {
                    entry: q.entry.clone(),
                    token_gen: self.token_gen,
                    after_refresh: q.after_refresh,
                },
            );
            return ReadAllStep::Run(Task::File(FileTask {
                id,
                entry: q.entry,
                sdk: self.sdk.clone(),
                contract: self.contract.clone(),
                session: self.session.clone(),
                token: self.token.clone(),
            }));
        }
        let idle = self.running.is_empty() && self.list_running.is_none() && !self.refresh_running;
        if idle && self.polling_over && self.queue.is_empty() {
            self.finished = true;
            let refreshed = self.refreshed.clone();
            return ReadAllStep::Done(match (self.fatal.take(), refreshed) {
                (None, refreshed_token) => Ok(ReadAllSummary {
                    status: self.status.clone(),
                    stopped: self.stopped,
                    timed_out: self.timed_out,
                    files_read: self.files_read,
                    files_failed: self.files_failed,
                    refreshed_token,
                }),
                (Some(e @ Error::AfterRefresh { .. }), _) | (Some(e), None) => Err(e),
                (Some(error), Some(token)) => Err(Error::AfterRefresh {
                    refreshed_token: Box::new(token),
                    error: Box::new(error),
                }),
            });
        }
        if !self.polling_over
            && self.list_running.is_none()
            && !self.refresh_running
            && !self.list_waits_for_refresh
            && let Some(at) = self.next_poll
        {
            return ReadAllStep::Sleep(at.duration_since(now).unwrap_or_default());
        }
        ReadAllStep::Wait
    }

    /// Reports the end of any task (what a driver running tasks concurrently collects).
    pub fn task_done(&mut self, end: TaskEnd<T>, now: SystemTime) {
        match end {
            TaskEnd::List(r) => self.list_done(r, now),
            TaskEnd::File(id, r) => self.file_done(id, r),
            TaskEnd::Refresh(r) => self.refresh_done(r),
        }
    }

    /// Reports the end of a [`Task::List`].
    pub fn list_done(&mut self, result: Result<Authed<FileList>, Error>, now: SystemTime) {
        let Some(list_gen) = self.list_running.take() else {
            return;
        };
        // A list call that started with a token another call had refreshed since
        // went with the new one: so does the run from now on.
        let result = match result {
            Ok(Authed {
                value,
                refreshed_token: Some(token),
            }) => {
                self.adopt(token);
                Ok(value)
            }
            Err(Error::AfterRefresh {
                refreshed_token,
                error,
            }) => {
                self.adopt(*refreshed_token);
                Err(*error)
            }
            other => other.map(|a| a.value),
        };
        match result {
            Ok(list) => {
                self.list_401s = 0;
                if self.polling_over {
                    return;
                }
                let state = list.status.state;
                if state != self.local_state {
                    self.local_state = state;
                    self.events
                        .push_back(ReadAllEvent::StatusChanged(list.status.clone()));
                }
                self.status = list.status;
                if state != SyncState::Pending {
                    for entry in list.file_list {
                        let seen = self.handled.get(&entry.name).copied();
                        if entry.updated_date <= seen.unwrap_or(0) {
                            continue;
                        }
                        if seen.is_none() && self.handled.len() >= self.options.max_files {
                            return self.fail(Error::Decode {
                                context: "file list",
                                detail: format!(
                                    "more than {} distinct files (ReadAllOptions::max_files)",
                                    self.options.max_files
                                ),
                            });
                        }
                        self.handled.insert(entry.name.clone(), entry.updated_date);
                        // A newer version of a file not yet started replaces it.
                        self.queue.add(entry);
                    }
                }
                if state.is_final() {
                    self.polling_over = true;
                } else {
                    self.next_poll = Some(now + self.options.poll_interval);
                }
            }
            // Sent with a token that has been refreshed since: try again with the new.
            Err(e) if error_wants_refresh(&e, false) && list_gen < self.token_gen => {
                if !self.polling_over {
                    self.next_poll = None;
                }
            }
            Err(e) if error_wants_refresh(&e, false) && self.list_401s == 0 => {
                self.list_401s += 1;
                if !self.polling_over {
                    self.list_waits_for_refresh = true;
                    self.refresh_wanted |= !self.refresh_running;
                }
            }
            Err(e) => self.fail(without_marker(e)),
        }
    }

    /// Reports the end of a [`Task::File`]: its value (bytes or head) or error.
    pub fn file_done(&mut self, id: u64, result: Result<T, Error>) {
        let Some(run) = self.running.remove(&id) else {
            return;
        };
        match result {
            Ok(value) => {
                self.files_read += 1;
                self.events.push_back(ReadAllEvent::File(value));
            }
            Err(e)
                if error_wants_refresh(&e, true)
                    && (!run.after_refresh || run.token_gen < self.token_gen)
                    && self.fatal.is_none()
                    && !self.stop.is_stopped() =>
            {
                if run.token_gen < self.token_gen {
                    self.queue.push_front(Queued {
                        entry: run.entry,
                        after_refresh: true,
                        cause: None,
                    });
                } else {
                    self.parked.push(Queued {
                        entry: run.entry,
                        after_refresh: true,
                        cause: Some(without_marker(e)),
                    });
                    self.refresh_wanted |= !self.refresh_running;
                }
            }
            Err(error) => {
                self.files_failed += 1;
                self.events.push_back(ReadAllEvent::FileError {
                    entry: run.entry,
                    error: without_marker(error),
                });
            }
        }
    }

    /// Goes on with a newer token than the run's: from its refresh, or one another
    /// call made (the list call took it).
    fn adopt(&mut self, token: UserAccessToken) {
        self.token = token.clone();
        self.token_gen += 1;
        self.refreshed = Some(token.clone());
        self.events.push_back(ReadAllEvent::TokenRefreshed(token));
    }

    /// Reports the end of a [`Task::Refresh`].
    pub fn refresh_done(&mut self, result: Result<UserAccessToken, Error>) {
        if !self.refresh_running {
            return;
        }
        self.refresh_running = false;
        match result {
            Ok(token) => {
                self.adopt(token);
                for mut q in self.parked.drain(..).rev() {
                    q.cause = None;
                    self.queue.push_front(q);
                }
                if std::mem::take(&mut self.list_waits_for_refresh) {
                    self.next_poll = None;
                }
            }
            // The refresh token is dead: nothing more can be read with it.
            Err(e) => self.fail(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Event, Flow, Step};
    use crate::read::FileData;
    use crate::{Config, KeySet, PrivateKey};
    use digime_crypto::jws;
    use http::Response;

    struct World {
        sdk: Sdk,
        contract: Contract,
        server: PrivateKey,
        token: UserAccessToken,
    }

    fn world() -> World {
        let sdk = Sdk::new(Config::new("app").unwrap());
        let server = PrivateKey::generate().unwrap();
        sdk.use_static_server_keys(KeySet::from_keys([("k".to_string(), server.public_key())]));
        let contract = Contract::new("c", PrivateKey::generate().unwrap()).unwrap();
        let token: UserAccessToken = serde_json::from_str(
            r#"{"accessToken":{"value":"a1","expiry":1},"refreshToken":{"value":"r1","expiry":2}}"#,
        )
        .unwrap();
        World {
            sdk,
            contract,
            server,
            token,
        }
    }

    fn respond(status: u16, body: &str) -> Response<Vec<u8>> {
        Response::builder()
            .status(status)
            .body(body.as_bytes().to_vec())
            .unwrap()
    }

    /// Runs a sub-flow against canned responses, one per `Send`.
    fn run<F: Flow>(
        mut flow: F,
        answers: &mut VecDeque<Response<Vec<u8>>>,
    ) -> Result<F::Output, Error> {
        let now = SystemTime::now();
        loop {
            match flow.poll(now) {
                Step::Send(_) => flow.handle_response(answers.pop_front().expect("an answer")),
                Step::Done(r) => return r,
                Step::Sleep(_) | Step::Event(_) => {}
                Step::Receive => panic!("no streaming in these tests"),
            }
        }
    }

    fn list(state: &str, files: &[(&str, i64)]) -> Response<Vec<u8>> {
        let entries: Vec<String> = files
            .iter()
            .map(|(n, d)| format!(r#"{{"name":"{n}","updatedDate":{d}}}"#))
            .collect();
        respond(
            200,
            &format!(
                r#"{{"status":{{"state":"{state}"}},"fileList":[{}]}}"#,
                entries.join(",")
            ),
        )
    }

    fn fake_file(entry: &FileListEntry) -> FileData {
        FileData {
            head: crate::read::FileHead {
                name: entry.name.clone(),
                metadata: crate::read::FileMetadata::Raw(
                    serde_json::from_str(r#"{"mimetype":"a/b","accounts":[]}"#).unwrap(),
                ),
                compression: Default::default(),
                last_modified: None,
            },
            data: entry.updated_date.to_string().into_bytes(),
        }
    }

    /// Drives the coordinator: list answers come from `lists`, every download
    /// succeeds at once (or per `file_result`), time jumps over sleeps.
    fn drive(
        all: &mut ReadAllFiles<FileData>,
        w: &World,
        lists: Vec<Response<Vec<u8>>>,
        mut file_result: impl FnMut(&FileListEntry) -> Result<FileData, Error>,
    ) -> (Vec<String>, Result<ReadAllSummary, Error>) {
        let mut lists: VecDeque<_> = lists.into();
        let mut now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut log = Vec::new();
        let mut downloads: VecDeque<(u64, FileListEntry)> = VecDeque::new();
        loop {
            match all.poll(now) {
                ReadAllStep::Run(Task::List(t)) => {
                    // A list call takes as many answers as it sends (retries too).
                    let r = run(t.into_flow(), &mut lists);
                    log.push("list".to_string());
                    all.list_done(r, now);
                }
                ReadAllStep::Run(Task::File(t)) => {
                    log.push(format!("get {}@{}", t.entry.name, t.entry.updated_date));
                    downloads.push_back((t.id, t.entry.clone()));
                }
                ReadAllStep::Run(Task::Refresh(t)) => {
                    let claims = r#"{"access_token":{"value":"a2","expires_on":4000000000},"refresh_token":{"value":"r2","expires_on":4000000000}}"#;
                    let signed = jws::sign(
                        br#"{"alg":"PS512","typ":"JWT","kid":"k"}"#,
                        claims.as_bytes(),
                        &w.server,
                    )
                    .unwrap();
                    let mut answer: VecDeque<_> =
                        [respond(201, &format!(r#"{{"token":"{signed}"}}"#))].into();
                    log.push("refresh".into());
                    all.refresh_done(run(t.into_flow(), &mut answer));
                }
                ReadAllStep::Sleep(d) => {
                    if let Some((id, e)) = downloads.pop_front() {
                        all.file_done(id, file_result(&e));
                    } else {
                        now += d;
                        log.push(format!("sleep {}", d.as_millis()));
                    }
                }
                ReadAllStep::Wait => {
                    let (id, e) = downloads.pop_front().expect("something to wait for");
                    all.file_done(id, file_result(&e));
                }
                ReadAllStep::Event(ReadAllEvent::StatusChanged(s)) => {
                    log.push(format!("status {}", s.state))
                }
                ReadAllStep::Event(ReadAllEvent::File(f)) => log.push(format!(
                    "file {}@{}",
                    f.head.name,
                    String::from_utf8_lossy(&f.data)
                )),
                ReadAllStep::Event(ReadAllEvent::FileError { entry, error }) => {
                    log.push(format!("error {} {}", entry.name, error))
                }
                ReadAllStep::Event(ReadAllEvent::TokenRefreshed(t)) => {
                    log.push(format!("token {}", t.access_token.value.expose()))
                }
                ReadAllStep::Done(r) => return (log, r),
            }
        }
    }

    #[test]
    fn the_observed_timeline_of_the_spec() {
        let w = world();
        let mut all = w.sdk.read_all_files(
            &w.contract,
            &w.token,
            &SessionKey::new("s").unwrap(),
            ReadAllOptions::default(),
        );
        let (log, r) = drive(
            &mut all,
            &w,
            vec![
                list("pending", &[("ignored", 5)]),
                list("running", &[("a", 10), ("b", 10)]),
                list("running", &[("a", 10), ("b", 20)]),
                list("partial", &[("a", 10), ("b", 20), ("c", 30)]),
            ],
            |e| Ok(fake_file(e)),
        );
        assert_eq!(
            log,
            [
                "list",
                "sleep 3000",
                "list",
                "status running",
                "get a@10",
                "get b@10",
                "file a@10",
                "file b@10",
                "sleep 3000",
                "list",
                "get b@20",
                "file b@20",
                "sleep 3000",
                "list",
                "status partial",
                "get c@30",
                "file c@30",
            ]
        );
        let summary = r.unwrap();
        assert_eq!(summary.status.state, SyncState::Partial);
        assert_eq!(summary.files_read, 4);
        assert!(!summary.stopped && summary.refreshed_token.is_none());
    }

    #[test]
    fn local_names_are_single_safe_components_and_never_collide() {
        let names = [
            "a/b",
            "a?b",
            "a_b",
            "a\\b",
            "a b",
            "..",
            ".",
            "",
            "a_b~partial",
            "x",
            "x~partial",
            "../../etc/passwd",
            "ünïcode.json",
            "4_12_300_202610_1.json",
        ];
        let locals: Vec<String> = names.iter().map(|n| local_file_name(n)).collect();
        let mut unique = locals.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{locals:?}");
        for (name, local) in names.iter().zip(&locals) {
            assert!(
                !local.is_empty() && local != "." && local != "..",
                "{name:?}"
            );
            assert!(
                !local.contains('/') && !local.contains('\\'),
                "{name:?} -> {local}"
            );
            // A partial file never takes another file's local name.
            assert!(!locals.contains(&format!("{local}~partial")), "{name:?}");
        }
        // Plain names stay as they are.
        assert_eq!(
            local_file_name("4_12_300_202610_1.json"),
            "4_12_300_202610_1.json"
        );
        assert_eq!(local_file_name("a_b"), "a_b");
        assert!(local_file_name("a/b").starts_with("a_b~"));
        assert_eq!(local_file_name(&"x".repeat(200)).len(), 200);
        assert_eq!(local_file_name(&"x".repeat(300)).len(), 100 + 17);
        assert!(local_file_name(&"/".repeat(300)).len() <= 100 + 17);
    }

    #[test]
    fn files_already_read_are_downloaded_again_only_once_they_change() {
        let w = world();
        let options = ReadAllOptions {
            already_read: [("a".to_string(), 10), ("b".to_string(), 10)].into(),
            ..Default::default()
        };
        let mut all = (w.sdk).read_all_files(
            &w.contract,
            &w.token,
            &SessionKey::new("s").unwrap(),
            options,
        );
        let (log, r) = drive(
            &mut all,
            &w,
            vec![
                list("running", &[("a", 10), ("b", 10), ("c", 5)]),
                list("completed", &[("a", 10), ("b", 20), ("c", 5)]),
            ],
            |e| Ok(fake_file(e)),
        );
        assert_eq!(
            log,
            [
                "list",
                "status running",
                "get c@5",
                "file c@5",
                "sleep 3000",
                "list",
                "status completed",
                "get b@20",
                "file b@20",
            ]
        );
        assert_eq!(r.unwrap().files_read, 2);
    }

    #[test]
    fn at_most_max_concurrency_downloads_run_at_once() {
        let w = world();
        let mut all: ReadAllFiles<FileData> = w.sdk.read_all_files(
            &w.contract,
            &w.token,
            &SessionKey::new("s").unwrap(),
            ReadAllOptions {
                max_concurrency: 2,
                ..Default::default()
            },
        );
        let now = SystemTime::now();
        let ReadAllStep::Run(Task::List(t)) = all.poll(now) else {
            panic!()
        };
        let mut answer: VecDeque<_> = [list(
            "completed",
            &[("a", 1), ("b", 1), ("c", 1), ("d", 1), ("z", 0)],
        )]
        .into();
        all.list_done(run(t.into_flow(), &mut answer), now);
        assert!(matches!(
            all.poll(now),
            ReadAllStep::Event(ReadAllEvent::StatusChanged(_))
        ));
        let ReadAllStep::Run(Task::File(a)) = all.poll(now) else {
            panic!()
        };
        let ReadAllStep::Run(Task::File(_b)) = all.poll(now) else {
            panic!()
        };
        assert!(matches!(all.poll(now), ReadAllStep::Wait));
        all.file_done(a.id, Err(Error::InvalidInput("boom".into())));
        assert!(matches!(
            all.poll(now),
            ReadAllStep::Event(ReadAllEvent::FileError { .. })
        ));
        let ReadAllStep::Run(Task::File(c)) = all.poll(now) else {
            panic!()
        };
        assert_eq!(c.entry.name, "c");
        // A stop drops "d" (never started) and waits for the two running downloads.
        all.stop_handle().stop();
        assert!(matches!(all.poll(now), ReadAllStep::Wait));
        all.file_done(c.id, Ok(fake_file(&c.entry)));
        assert!(matches!(
            all.poll(now),
            ReadAllStep::Event(ReadAllEvent::File(_))
        ));
        assert!(matches!(all.poll(now), ReadAllStep::Wait));
        all.file_done(_b.id, Ok(fake_file(&_b.entry)));
        assert!(matches!(
            all.poll(now),
            ReadAllStep::Event(ReadAllEvent::File(_))
        ));
        let ReadAllStep::Done(Ok(s)) = all.poll(now) else {
            panic!()
        };
        assert!(s.stopped);
        assert_eq!((s.files_read, s.files_failed), (2, 1));
    }

    #[test]
    fn concurrent_401s_share_one_refresh_and_every_file_is_read() {
        let w = world();
        let mut all = w.sdk.read_all_files(
            &w.contract,
            &w.token,
            &SessionKey::new("s").unwrap(),
            ReadAllOptions::default(),
        );
        let mut failed_once = std::collections::HashSet::new();
        let (log, r) = drive(
            &mut all,
            &w,
            vec![list("completed", &[("a", 1), ("b", 1), ("c", 1)])],
            |e| {
                if failed_once.insert(e.name.clone()) {
                    Err(Error::UnexpectedStatus {
                        status: 401,
                        body: String::new(),
                        retry_after: None,
                    })
                } else {
                    Ok(fake_file(e))
                }
            },
        );
        assert_eq!(log.iter().filter(|l| *l == "refresh").count(), 1, "{log:?}");
        assert_eq!(
            log.iter().filter(|l| l.starts_with("file ")).count(),
            3,
            "{log:?}"
        );
        assert!(log.contains(&"token a2".to_string()));
        let s = r.unwrap();
        assert_eq!(
            s.refreshed_token.unwrap().refresh_token.value.expose(),
            "r2"
        );
    }

    #[test]
    fn a_download_waiting_for_a_refresh_is_reported_when_the_run_stops() {
        let w = world();
        let mut all: ReadAllFiles<FileData> = w.sdk.read_all_files(
            &w.contract,
            &w.token,
            &SessionKey::new("s").unwrap(),
            ReadAllOptions::default(),
        );
        let now = SystemTime::now();
        let ReadAllStep::Run(Task::List(t)) = all.poll(now) else {
            panic!()
        };
        let mut answer: VecDeque<_> = [list("completed", &[("a", 1)])].into();
        all.list_done(run(t.into_flow(), &mut answer), now);
        assert!(matches!(
            all.poll(now),
            ReadAllStep::Event(ReadAllEvent::StatusChanged(_))
        ));
        let ReadAllStep::Run(Task::File(a)) = all.poll(now) else {
            panic!()
        };
        // The download is answered 401; the refresh is wanted, and the app stops.
        all.file_done(
            a.id,
            Err(Error::UnexpectedStatus {
                status: 401,
                body: String::new(),
                retry_after: None,
            }),
        );
        all.stop();
        match all.poll(now) {
            ReadAllStep::Event(ReadAllEvent::FileError { entry, error }) => {
                assert_eq!(entry.name, "a");
                assert!(matches!(error, Error::UnexpectedStatus { status: 401, .. }));
            }
            _ => panic!("the parked download's error is reported"),
        }
        let ReadAllStep::Done(Ok(s)) = all.poll(now) else {
            panic!()
        };
        assert!(s.stopped);
        assert_eq!((s.files_read, s.files_failed), (0, 1));
    }

    #[test]
    fn a_list_401_with_an_old_token_is_retried_with_the_new_one() {
        let w = world();
        let mut all: ReadAllFiles<FileData> = w.sdk.read_all_files(
            &w.contract,
            &w.token,
            &SessionKey::new("s").unwrap(),
            ReadAllOptions::default(),
        );
        let now = SystemTime::now();
        // L1 is answered 401: one refresh.
        let ReadAllStep::Run(Task::List(_)) = all.poll(now) else {
            panic!()
        };
        all.list_done(
            Err(Error::UnexpectedStatus {
                status: 401,
                body: String::new(),
                retry_after: None,
            }),
            now,
        );
        let ReadAllStep::Run(Task::Refresh(_)) = all.poll(now) else {
            panic!()
        };
        all.refresh_done(Ok(w.token.clone()));
        assert!(matches!(
            all.poll(now),
            ReadAllStep::Event(ReadAllEvent::TokenRefreshed(_))
        ));
        // L2 goes out with the new token; a file's 401 meanwhile refreshes again...
        let ReadAllStep::Run(Task::List(_)) = all.poll(now) else {
            panic!()
        };
        all.token_gen += 1;
        // ... so L2's own 401 is not fatal: the list is asked again at once.
        all.list_done(
            Err(Error::UnexpectedStatus {
                status: 401,
                body: String::new(),
                retry_after: None,
            }),
            now,
        );
        assert!(matches!(all.poll(now), ReadAllStep::Run(Task::List(_))));
    }

    #[test]
    fn a_failing_list_call_ends_the_run_with_its_error() {
        let w = world();
        let mut all = w.sdk.read_all_files(
            &w.contract,
            &w.token,
            &SessionKey::new("s").unwrap(),
            ReadAllOptions::default(),
        );
        let (_, r) = drive(
            &mut all,
            &w,
            vec![respond(
                404,
                r#"{"error":{"code":"SessionNotFound","message":"no"}}"#,
            )],
            |e| Ok(fake_file(e)),
        );
        assert_eq!(r.unwrap_err().api().unwrap().status, 404);
        let mut invalid = w.sdk.read_all_files::<FileData>(
            &w.contract,
            &w.token,
            &SessionKey::new("s").unwrap(),
            ReadAllOptions::default(),
        );
        let (_, r) = drive(
            &mut invalid,
            &w,
            // Asked three times: a malformed answer to a GET is asked again.
            vec![respond(200, r#"{"fileList":[]}"#); 3],
            |e| Ok(fake_file(e)),
        );
        assert!(matches!(r, Err(Error::Decode { .. })));
        let _ = Event::TokenRefreshed;
    }
}
