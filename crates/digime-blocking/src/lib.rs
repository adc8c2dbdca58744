//! Blocking driver of the digi.me Rust SDK, on `ureq` 3.
//!
//! Scope: IO only. Every operation is a [`digime_protocol::Flow`] run by one loop,
//! [`Client::run`] (with [`Client::run_to`] for a flow that streams to a writer and
//! [`Client::call`] for any `UserOperation`); each method of [`Client`] is a line or
//! two over the core. The protocol logic lives in `digime-protocol`.
//!
//! `digime-async` is this crate's twin and differs from it only in being async:
//!
//! | | `digime-blocking` | `digime-async` |
//! |---|---|---|
//! | calls | return the result | return a future of it |
//! | upload bodies | `Read + Seek` | `AsyncRead + AsyncSeek` |
//! | sinks | `Write` | `AsyncWrite` |
//! | `read_all_files` downloads | scoped threads | futures within the call's future |
//! | sleeping | `std::thread::sleep` | `tokio::time::sleep` |
//!
//! Everything else is the same by construction: every upload goes out with a
//! `Content-Length` (the reader is seeked to its end for its length, then to its start
//! before every attempt, and streamed through the core's encoder); a sink is flushed,
//! never closed, once its flow is done (a flush failure fails a call that otherwise
//! succeeded); a call fails with a timeout after [`IDLE_TIMEOUT`] without progress
//! (nothing written, nothing read), when an answer's head does not come within it
//! of the request, when a buffered answer (anything but a file download) does not
//! come whole within it of its head, or when a download comes slower than
//! [`digime_protocol::wire::MIN_BYTES_PER_SECOND`] over a window of it, while a slow
//! but moving upload never does (docs/protocol.md, "Timeouts");
//! sockets have `TCP_NODELAY` set, so a request's head and a small body never wait
//! for an acknowledgement.
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

mod api;
pub mod legacy;
mod run;

pub use run::ReadSeek;

use digime_protocol::auth::{AuthorizationCode, AuthorizeOptions, AuthorizeUrl};
use digime_protocol::auth::{
    OnboardServiceOptions, OnboardUrl, ReauthorizeAccountOptions, ReauthorizeOptions, RevokeUrl,
};
use digime_protocol::flow::Authed;
use digime_protocol::read::Account;
use digime_protocol::{
    CodeVerifier, Config, Contract, ContractDetails, Error, FileDescriptor, Sdk,
};
use digime_protocol::{
    FileData, FileHead, FileList, Output, PullOptions, ReadAllEvent, ReadAllOptions,
    ReadAllSummary, Session, SessionKey, UserAccessToken,
};
use std::io::{Read, Seek, Write};
use std::sync::Arc;
use std::time::Duration;

type TokenListener = Arc<dyn Fn(&UserAccessToken) + Send + Sync>;

/// Default time allowed to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time allowed without progress on a read or a write.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A blocking digi.me client. Cheap to clone; clones share the connection pool and
/// the server key-set cache.
#[derive(Clone)]
pub struct Client {
    sdk: Sdk,
    agent: ureq::Agent,
    /// The idle timeout: also the deadline of a buffered answer's body, and the
    /// window of a streamed body's floor ([`digime_protocol::wire::SlowBodyGuard`]).
    idle: Duration,
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
    /// responses (the protocol core classifies them), `TCP_NODELAY`, rustls on
    /// aws-lc-rs, 30 s to connect and at most [`IDLE_TIMEOUT`] without progress on a
    /// read or a write (a stalled server cannot hang a call; a slow but moving upload
    /// is never cut off). Building it cannot fail.
    pub fn new(config: Config) -> Self {
        Self::with_agent(config, run::default_agent(IDLE_TIMEOUT))
    }

    /// [`Client::new`], as a `Result` for symmetry with `digime_async::Client::try_new`
    /// (building a ureq agent cannot fail, so this is always `Ok`).
    pub fn try_new(config: Config) -> Result<Self, Error> {
        Ok(Self::new(config))
    }

    /// Uses a default agent (as [`Client::new`]) that allows `timeout` without
    /// progress on a read or a write. Replaces an agent given to [`Client::with_agent`].
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.agent = run::default_agent(timeout);
        self.idle = timeout;
        self
    }

    /// A client on your own `ureq` agent (timeouts, proxies, TLS). It must be built
    /// with `http_status_as_error(false)`, and, for `https`, with a rustls crypto
    /// provider in its TLS config (`TlsConfig::builder().unversioned_rustls_crypto_provider`):
    /// this crate builds ureq without one of its own, so that only aws-lc-rs is
    /// linked, and ureq panics at the first TLS connection of an agent that has none.
    pub fn with_agent(config: Config, agent: ureq::Agent) -> Self {
        Client {
            sdk: Sdk::new(config),
            agent,
            idle: IDLE_TIMEOUT,
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
        let flow = self.sdk.authorize_url(contract, callback, state, options)?;
        self.run(flow, None)
    }

    /// Builds the user-reauthorization URL, for when the refresh token has died
    /// ([`Error::needs_reauthorization`]): send the user to `url`, keep `code_verifier`,
    /// parse the callback with [`digime_protocol::parse_callback`] and exchange its code
    /// with [`Client::exchange_code_for_token`]. The new token is the same user's, with
    /// the same library. `token` is the user's last token (its access token may have
    /// expired); this call never refreshes it.
    pub fn reauthorize_url(
        &self,
        contract: &Contract,
        callback: &str,
        token: &UserAccessToken,
        options: ReauthorizeOptions,
    ) -> Result<AuthorizeUrl, Error> {
        let flow = self
            .sdk
            .reauthorize_url(contract, callback, token, options)?;
        self.run(flow, None)
    }

    /// Builds the URL that adds a service to the user's library; the session it returns
    /// reads the new data. The callback ([`digime_protocol::parse_onboard_callback`])
    /// carries no code: the user's token stays valid.
    pub fn onboard_service_url(
        &self,
        contract: &Contract,
        callback: &str,
        token: &UserAccessToken,
        options: OnboardServiceOptions,
    ) -> Result<Authed<OnboardUrl>, Error> {
        let flow = self
            .sdk
            .onboard_service_url(contract, callback, token, options)?;
        self.run(flow, None)
    }

    /// Builds the URL where the user repairs one account whose source needs them again
    /// (a file list's `ServiceAuthorizationError`, 511). The callback is parsed with
    /// [`digime_protocol::parse_onboard_callback`].
    pub fn reauthorize_account_url(
        &self,
        contract: &Contract,
        callback: &str,
        token: &UserAccessToken,
        account_id: &str,
        options: ReauthorizeAccountOptions,
    ) -> Result<Authed<OnboardUrl>, Error> {
        let flow =
            (self.sdk).reauthorize_account_url(contract, callback, token, account_id, options)?;
        self.run(flow, None)
    }

    /// The location of the page where the user withdraws this contract's permission to
    /// one account; they come back to `redirect_uri`
    /// ([`digime_protocol::parse_revoke_callback`]).
    pub fn revoke_account_permission_url(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        account_id: &str,
        redirect_uri: &str,
    ) -> Result<Authed<RevokeUrl>, Error> {
        let flow =
            (self.sdk).revoke_account_permission_url(contract, token, account_id, redirect_uri)?;
        self.run(flow, None)
    }

    /// Deletes the user: their library, and every token of theirs for every contract.
    pub fn delete_user(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
    ) -> Result<Authed<()>, Error> {
        self.run(self.sdk.delete_user(contract, token), None)
    }

    /// Deletes one of the user's accounts and its data.
    pub fn delete_account(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        account_id: &str,
    ) -> Result<Authed<()>, Error> {
        let flow = self.sdk.delete_account(contract, token, account_id)?;
        self.run(flow, None)
    }

    /// Exchanges the callback's code and the stored verifier for a token.
    pub fn exchange_code_for_token(
        &self,
        contract: &Contract,
        code: &AuthorizationCode,
        verifier: &CodeVerifier,
    ) -> Result<UserAccessToken, Error> {
        let flow = self.sdk.exchange_code_for_token(contract, code, verifier)?;
        self.run(flow, None)
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

    /// Pushes `body` into the user's library, streamed with a `Content-Length` (a
    /// 1 GiB file is never held in memory). The body is rewound if the push must be
    /// repeated after a token refresh.
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
        let flow = (self.sdk).read_file(contract, token, session, file_name, Output::Buffer)?;
        self.run(flow, None)
    }

    /// Downloads a file, decrypting and decompressing it into `sink` as it arrives (a
    /// 1 GiB file passes in constant memory); `sink` is flushed at the end. The bytes
    /// are only complete once this returns `Ok`; on an error, discard what was written.
    /// `Ok` means the file had a whole envelope with valid padding (and, compressed, a
    /// complete stream): the envelope has no MAC, so it does not prove the bytes are
    /// the ones the server encrypted (see `docs/protocol.md`, "File envelope").
    pub fn read_file_to(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        session: &SessionKey,
        file_name: &str,
        sink: &mut dyn Write,
    ) -> Result<Authed<FileHead>, Error> {
        let flow = (self.sdk).read_file(contract, token, session, file_name, Output::Stream)?;
        let a = self.run_to(flow, sink)?;
        Ok(Authed {
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
        let flow = (self.sdk).read_file_metadata(contract, token, session, file_name)?;
        self.run(flow, None)
    }

    /// What the contract allows: its access type, application and expiry.
    pub fn contract_details(&self, contract: &Contract) -> Result<ContractDetails, Error> {
        self.run(self.sdk.contract_details(contract), None)
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
        let open = |_: &FileHead| Ok(std::io::sink());
        self.run_all(all, Output::Buffer, open, |f| f, on_event)
    }

    /// Like [`Client::read_all_files`], but each file is decrypted and decompressed
    /// into the writer `open` returns for it (called on a download thread once the
    /// file's headers have arrived; flushed when the file is done), in constant
    /// memory. A file reported as [`ReadAllEvent::FileError`] may have been partly
    /// written: discard it.
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
        self.run_all(all, Output::Stream, open, |f| f.head, on_event)
    }

    fn announce(&self, token: &UserAccessToken) {
        if let Some(listener) = &self.on_token {
            listener(token);
        }
    }
}

/// The README's Rust snippets, compiled as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
