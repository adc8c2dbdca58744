//! Async driver of the digi.me Rust SDK, on `reqwest` and `tokio`.
//!
//! Scope: IO only. Every operation is a [`digime_protocol::Flow`] run by one loop,
//! [`Client::run`] (with [`Client::run_with_upload`] for a flow that sends the
//! caller's body, [`Client::run_to`] for one that streams to a writer and
//! [`Client::call`] for any `UserOperation`); each method of [`Client`] is a line or
//! two over the core. The protocol logic lives in `digime-protocol`.
//!
//! `digime-blocking` is this crate's twin and differs from it only in being sync:
//!
//! | | `digime-blocking` | `digime-async` |
//! |---|---|---|
//! | calls | return the result | return a future of it |
//! | upload bodies | `Read + Seek` | `AsyncRead + AsyncSeek` ([`Upload`]) |
//! | sinks | `Write` | `AsyncWrite` |
//! | `read_all_files` downloads | scoped threads | futures within the call's future (no task is spawned) |
//! | sleeping | `std::thread::sleep` | `tokio::time::sleep` |
//!
//! Everything else is the same by construction: every upload goes out with a
//! `Content-Length` (the reader is seeked to its end for its length, then to its start
//! before every attempt, and streamed through the core's encoder); a sink is flushed,
//! never shut down, once its flow is done (shutting an `AsyncWrite` down closes it,
//! which its owner may not want; a flush failure fails a call that otherwise
//! succeeded); a call fails with a timeout after [`IDLE_TIMEOUT`] without progress
//! (no upload chunk taken, no response, no response chunk), when an answer's head
//! does not come within it of the request's last byte, when a buffered answer
//! (anything but a file download) does not come whole within it of its head, or when
//! a download comes slower than [`digime_protocol::wire::MIN_BYTES_PER_SECOND`] over a
//! window of it, while a slow but moving upload never does (docs/protocol.md,
//! "Timeouts"); sockets have `TCP_NODELAY` set, so a request's head and a
//! small body never wait for an acknowledgement.
//!
//! ```no_run
//! use digime_async::Client;
//! use digime_protocol::{AuthorizeOptions, Config, Contract, FileDescriptor};
//!
//! # async fn demo() -> Result<(), digime_protocol::Error> {
//! let client = Client::new(Config::new("my-application-id")?);
//! let contract = Contract::from_pem("my-write-contract", &std::fs::read_to_string("key.pem").unwrap())?;
//! let auth = client
//!     .authorize_url(&contract, "https://app.example/callback", "state-123", AuthorizeOptions::default())
//!     .await?;
//! // ... store auth.code_verifier, redirect the user to auth.url, receive the callback ...
//! # let callback_url = "";
//! let callback = digime_protocol::parse_callback(callback_url)?.verify_state("state-123")?;
//! let token = client.exchange_code_for_token(&contract, &callback.code, &auth.code_verifier).await?;
//! let file = tokio::fs::File::open("receipt.json").await.unwrap();
//! let pushed = client
//!     .push_to_library(&contract, &token, &FileDescriptor::new("application/json"), file)
//!     .await?;
//! if let Some(new_token) = pushed.refreshed_token { /* persist it */ }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// The README's examples, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

mod api;
pub mod legacy;
mod run;

pub use run::Upload;

use digime_protocol::auth::{AuthorizationCode, AuthorizeOptions, AuthorizeUrl};
use digime_protocol::auth::{
    OnboardServiceOptions, OnboardUrl, ReauthorizeAccountOptions, ReauthorizeOptions, RevokeUrl,
};
use digime_protocol::error::{TransportError, TransportErrorKind};
use digime_protocol::flow::Authed;
use digime_protocol::read::Account;
use digime_protocol::{
    CodeVerifier, Config, Contract, ContractDetails, Error, FileDescriptor, Sdk,
};
use digime_protocol::{
    FileData, FileHead, FileList, Output, PullOptions, ReadAllEvent, ReadAllOptions,
    ReadAllSummary, Session, SessionKey, UserAccessToken,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWrite;

type TokenListener = Arc<dyn Fn(&UserAccessToken) + Send + Sync>;

/// Default time allowed to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time allowed without progress (see [`Client::with_idle_timeout`]).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// An async digi.me client. Cheap to clone; clones share the connection pool and the
/// server key-set cache.
#[derive(Clone)]
pub struct Client {
    sdk: Sdk,
    http: reqwest::Client,
    on_token: Option<TokenListener>,
    idle_timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("sdk", &self.sdk)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client with a default `reqwest` client: no redirects followed,
    /// `TCP_NODELAY`, rustls on aws-lc-rs, 30 s to connect; every call also gives up
    /// after [`IDLE_TIMEOUT`] without progress (a stalled server cannot hang it; a
    /// slow but moving upload is never cut off).
    ///
    /// # Panics
    ///
    /// Only if the TLS backend cannot be initialized (as `reqwest::Client::new`);
    /// [`Client::try_new`] reports that as an error instead. It never falls back to a
    /// client without these settings.
    pub fn new(config: Config) -> Self {
        Self::try_new(config).unwrap_or_else(|e| panic!("digime_async::Client::new: {e}"))
    }

    /// [`Client::new`], with a failure to build the HTTP client as an error
    /// ([`Error::Transport`]).
    pub fn try_new(config: Config) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| {
                let msg = format!("cannot build the HTTP client: {e}");
                Error::Transport(TransportError::new(TransportErrorKind::Other, msg))
            })?;
        Ok(Self::with_http_client(config, http))
    }

    /// A client on your own `reqwest::Client` (timeouts, proxies, TLS). Configure it
    /// not to follow redirects.
    pub fn with_http_client(config: Config, http: reqwest::Client) -> Self {
        Client {
            sdk: Sdk::new(config),
            http,
            on_token: None,
            idle_timeout: IDLE_TIMEOUT,
        }
    }

    /// How long a call may go without progress before it fails with a timeout.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
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
    pub async fn authorize_url(
        &self,
        contract: &Contract,
        callback: &str,
        state: &str,
        options: AuthorizeOptions,
    ) -> Result<AuthorizeUrl, Error> {
        let flow = self.sdk.authorize_url(contract, callback, state, options)?;
        self.run(flow).await
    }

    /// Builds the user-reauthorization URL, for when the refresh token has died
    /// ([`Error::needs_reauthorization`]): send the user to `url`, keep `code_verifier`,
    /// parse the callback with [`digime_protocol::parse_callback`] and exchange its code
    /// with [`Client::exchange_code_for_token`]. The new token is the same user's, with
    /// the same library. `token` is the user's last token (its access token may have
    /// expired); this call never refreshes it.
    pub async fn reauthorize_url(
        &self,
        contract: &Contract,
        callback: &str,
        token: &UserAccessToken,
        options: ReauthorizeOptions,
    ) -> Result<AuthorizeUrl, Error> {
        let flow = self
            .sdk
            .reauthorize_url(contract, callback, token, options)?;
        self.run(flow).await
    }

    /// Builds the URL that adds a service to the user's library; the session it returns
    /// reads the new data. The callback ([`digime_protocol::parse_onboard_callback`])
    /// carries no code: the user's token stays valid.
    pub async fn onboard_service_url(
        &self,
        contract: &Contract,
        callback: &str,
        token: &UserAccessToken,
        options: OnboardServiceOptions,
    ) -> Result<Authed<OnboardUrl>, Error> {
        let flow = self
            .sdk
            .onboard_service_url(contract, callback, token, options)?;
        self.run(flow).await
    }

    /// Builds the URL where the user repairs one account whose source needs them again
    /// (a file list's `ServiceAuthorizationError`, 511). The callback is parsed with
    /// [`digime_protocol::parse_onboard_callback`].
    pub async fn reauthorize_account_url(
        &self,
        contract: &Contract,
        callback: &str,
        token: &UserAccessToken,
        account_id: &str,
        options: ReauthorizeAccountOptions,
    ) -> Result<Authed<OnboardUrl>, Error> {
        let flow =
            (self.sdk).reauthorize_account_url(contract, callback, token, account_id, options)?;
        self.run(flow).await
    }

    /// The location of the page where the user withdraws this contract's permission to
    /// one account; they come back to `redirect_uri`
    /// ([`digime_protocol::parse_revoke_callback`]).
    pub async fn revoke_account_permission_url(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        account_id: &str,
        redirect_uri: &str,
    ) -> Result<Authed<RevokeUrl>, Error> {
        let flow =
            (self.sdk).revoke_account_permission_url(contract, token, account_id, redirect_uri)?;
        self.run(flow).await
    }

    /// Deletes the user: their library, and every token of theirs for every contract.
    pub async fn delete_user(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
    ) -> Result<Authed<()>, Error> {
        self.run(self.sdk.delete_user(contract, token)).await
    }

    /// Deletes one of the user's accounts and its data.
    pub async fn delete_account(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        account_id: &str,
    ) -> Result<Authed<()>, Error> {
        let flow = self.sdk.delete_account(contract, token, account_id)?;
        self.run(flow).await
    }

    /// Exchanges the callback's code and the stored verifier for a token.
    pub async fn exchange_code_for_token(
        &self,
        contract: &Contract,
        code: &AuthorizationCode,
        verifier: &CodeVerifier,
    ) -> Result<UserAccessToken, Error> {
        let flow = self.sdk.exchange_code_for_token(contract, code, verifier)?;
        self.run(flow).await
    }

    /// Refreshes a token; [`Error::needs_reauthorization`] tells when the user must
    /// authorize again.
    pub async fn refresh_token(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
    ) -> Result<UserAccessToken, Error> {
        self.run(self.sdk.refresh_token(contract, token)).await
    }

    /// Pushes `body` into the user's library, streamed with a `Content-Length` (a
    /// 1 GiB file is never held in memory). The body is rewound if the push must be
    /// repeated after a token refresh.
    pub async fn push_to_library(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        descriptor: &FileDescriptor,
        body: impl Upload,
    ) -> Result<Authed<()>, Error> {
        let flow = self.sdk.push_to_library(contract, token, descriptor)?;
        self.run_with_upload(flow, body).await
    }

    /// Starts a read session: the user's sources sync; the session key reads the file
    /// list and the files.
    pub async fn read_session(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        options: &PullOptions,
    ) -> Result<Authed<Session>, Error> {
        self.run(self.sdk.read_session(contract, token, options))
            .await
    }

    /// The session's file list and sync status.
    pub async fn read_file_list(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        session: &SessionKey,
    ) -> Result<Authed<FileList>, Error> {
        self.run(self.sdk.read_file_list(contract, token, session))
            .await
    }

    /// Downloads, decrypts and decompresses a file into memory.
    pub async fn read_file(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        session: &SessionKey,
        file_name: &str,
    ) -> Result<Authed<FileData>, Error> {
        let flow = (self.sdk).read_file(contract, token, session, file_name, Output::Buffer)?;
        self.run(flow).await
    }

    /// Downloads a file, decrypting and decompressing it into `sink` as it arrives (a
    /// 1 GiB file passes in constant memory); `sink` is flushed at the end. The bytes
    /// are only complete once this returns `Ok`; on an error, discard what was written.
    /// `Ok` means the file had a whole envelope with valid padding (and, compressed, a
    /// complete stream): the envelope has no MAC, so it does not prove the bytes are
    /// the ones the server encrypted (see `docs/protocol.md`, "File envelope").
    pub async fn read_file_to<W: AsyncWrite + Unpin + Send>(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        session: &SessionKey,
        file_name: &str,
        sink: &mut W,
    ) -> Result<Authed<FileHead>, Error> {
        let flow = (self.sdk).read_file(contract, token, session, file_name, Output::Stream)?;
        let a = self.run_to(flow, sink).await?;
        Ok(Authed {
            value: a.value.head,
            refreshed_token: a.refreshed_token,
        })
    }

    /// A file's metadata, without its body (`HEAD`).
    pub async fn read_file_metadata(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        session: &SessionKey,
        file_name: &str,
    ) -> Result<Authed<FileHead>, Error> {
        let flow = (self.sdk).read_file_metadata(contract, token, session, file_name)?;
        self.run(flow).await
    }

    /// What the contract allows: its access type, application and expiry.
    pub async fn contract_details(&self, contract: &Contract) -> Result<ContractDetails, Error> {
        self.run(self.sdk.contract_details(contract)).await
    }

    /// The user's source accounts.
    pub async fn read_accounts(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
    ) -> Result<Authed<Vec<Account>>, Error> {
        self.run(self.sdk.read_accounts(contract, token)).await
    }

    /// Reads every file of a session as its sync goes on, into memory, calling
    /// `on_event` (on this thread) for status changes, each file, each file error and
    /// refreshed tokens. Up to `options.max_concurrency` downloads run at once, within
    /// this future (no task is spawned). Stop it from anywhere with `options.stop`.
    pub async fn read_all_files(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        session: &SessionKey,
        options: ReadAllOptions,
        on_event: impl FnMut(ReadAllEvent<FileData>),
    ) -> Result<ReadAllSummary, Error> {
        let all = self.sdk.read_all_files(contract, token, session, options);
        let open = |_: &FileHead| std::future::ready(Ok(tokio::io::sink()));
        self.run_all(all, Output::Buffer, &open, |f| f, on_event)
            .await
    }

    /// Like [`Client::read_all_files`], but each file is decrypted and decompressed
    /// into the writer that `open` yields for it (once the file's headers have
    /// arrived; flushed, not shut down, when the file is done), in constant memory. A
    /// file reported as [`ReadAllEvent::FileError`] may have been partly written:
    /// discard it.
    pub async fn read_all_files_to<W, Fut>(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        session: &SessionKey,
        options: ReadAllOptions,
        open: impl Fn(&FileHead) -> Fut + Sync,
        on_event: impl FnMut(ReadAllEvent<FileHead>),
    ) -> Result<ReadAllSummary, Error>
    where
        W: AsyncWrite + Unpin + Send,
        Fut: Future<Output = std::io::Result<W>> + Send,
    {
        let all = self.sdk.read_all_files(contract, token, session, options);
        self.run_all(all, Output::Stream, &open, |f| f.head, on_event)
            .await
    }

    fn announce(&self, token: &UserAccessToken) {
        if let Some(listener) = &self.on_token {
            listener(token);
        }
    }
}
