//! The sans-IO core of the digi.me Rust SDK.
//!
//! Scope:
//! * In: configuration, ids and models, request building (every request signed with a
//!   fresh PS512 JWT), response parsing, the error model, retry policy as data, and every
//!   call as a state machine ([`Flow`]) that a driver runs.
//! * Out: sockets, clocks, sleeping, and reading or writing bodies. The drivers
//!   (`digime-blocking`, `digime-async`) do that, in one short loop around a [`Flow`];
//!   any other transport can do the same.
//!
//! One module per endpoint, each with its request, its response parser and its
//! refresh/retry rule (the wire facts are in the repository's `docs/protocol.md`):
//!
//! | endpoint | module | flow |
//! |---|---|---|
//! | POST `oauth/authorize` | [`auth::authorize`] | [`auth::AuthorizeFlow`] |
//! | POST `oauth/token` | [`auth::token`] | [`auth::TokenFlow`] |
//! | the redirect back | [`auth::callback`] | (a parser) |
//! | POST `oauth/token/reference` | [`auth::token_reference`] | [`auth::ReauthorizeFlow`], [`auth::OnboardFlow`] |
//! | POST `reference` | [`auth::reference`] | [`call::ClientCall`] (inside [`auth::OnboardFlow`]) |
//! | GET `permission-access/contract` | [`auth::contract`] | [`call::ClientCall`] |
//! | GET `permission-access/revoke/h:accountId` | [`auth::revoke`] | [`refresh::AuthedCall`] |
//! | GET `jwks/oauth` | [`jwks`] | (inside the token flows) |
//! | POST `permission-access/import` | [`push`] | [`refresh::AuthedCall`] |
//! | POST `permission-access/trigger` | [`read::trigger`] | [`refresh::AuthedCall`] |
//! | GET `permission-access/query/{session}` | [`read::file_list`] | [`refresh::AuthedCall`] |
//! | GET, HEAD `…/query/{session}/{file}` | [`read::file`] | [`ReadFile`] |
//! | GET `permission-access/accounts` | [`read::accounts`] | [`refresh::AuthedCall`] |
//! | DELETE `user`, DELETE `permission-access/service/h:accountId` | [`delete`] | [`refresh::AuthedCall`] |
//! | POST `discovery/sources`, `discovery/{countries,platforms,categories}` | [`discovery::sources`], [`discovery::facets`] | [`call::ClientCall`] |
//! | GET `permission-access/sample/datasets/{source}` | [`discovery::sample_data`] | [`call::ClientCall`] |
//! | GET `export/{serviceType}/report` | [`report`] | [`stream::Streamed`] over [`refresh::AuthedCall`] |
//! | POST `permission-access/import/h:accountId/fhir/{version}` | [`provider`] | [`refresh::AuthedCall`] |
//! | POST, GET `storage` | [`storage::account`] | [`call::ClientCall`], [`refresh::AuthedCall`] |
//! | `{cloud}clouds/{storage}/files/apps/{app}{path}` | [`storage::files`] | [`call::ClientCall`], [`stream::Streamed`] |
//! | the postbox era | [`legacy`] | its own, built on the above |
//!
//! The building blocks they share: [`flow`] (the run loop, one request with retries),
//! [`refresh`] (refresh-then-retry, for every call made with a user's token), [`call`]
//! (calls made with the contract alone), [`upload`] (the caller's upload, plain or
//! transformed), [`stream`] (an answer streamed through a decoder), [`wire`] (signing, errors), and [`read_all`] (the read-all coordinator).
//! [`legacy`] builds on them; nothing else names it.
//!
//! The run loop and the state diagrams are in [`flow`]. A push answered with 401,
//! refreshed, and pushed again, driven by hand with canned responses:
//!
//! ```
//! use digime_protocol::{flow::{Event, Flow, Step}, *};
//! use digime_crypto::{jws, PrivateKey};
//! use std::time::SystemTime;
//!
//! let sdk = Sdk::new(Config::new("my-app")?);
//! let contract = Contract::new("write-contract", PrivateKey::generate()?)?;
//! // The server's signing key, trusted statically so that no key set is fetched.
//! let server = PrivateKey::generate()?;
//! sdk.use_static_server_keys(KeySet::from_keys([("srv".to_string(), server.public_key())]));
//!
//! let token: UserAccessToken = serde_json::from_str(
//!     r#"{"accessToken":{"value":"old","expiry":1},"refreshToken":{"value":"rt","expiry":2}}"#)?;
//! let mut push = sdk.push_to_library(&contract, &token, &FileDescriptor::new("text/plain"))?;
//! let now = SystemTime::now();
//! let respond = |status: u16, body: &str| {
//!     http::Response::builder().status(status).body(body.as_bytes().to_vec()).unwrap()
//! };
//!
//! // 1. The push; the access token has expired.
//! let Step::Send(req) = push.poll(now) else { panic!() };
//! assert!(req.uri().path().ends_with("permission-access/import"));
//! push.handle_response(respond(401, ""));
//! // 2. The refresh.
//! let Step::Send(req) = push.poll(now) else { panic!() };
//! assert!(req.uri().path().ends_with("oauth/token"));
//! let claims = r#"{"access_token":{"value":"new","expires_on":4000000000},"refresh_token":{"value":"rt2","expires_on":4000000000},"sub":"u1"}"#;
//! let signed = jws::sign(br#"{"alg":"PS512","typ":"JWT","kid":"srv"}"#, claims.as_bytes(), &server)?;
//! push.handle_response(respond(201, &format!(r#"{{"token":"{signed}"}}"#)));
//! // 3. The new token is announced, then the push is sent again and succeeds.
//! let Step::Event(Event::TokenRefreshed(new)) = push.poll(now) else { panic!() };
//! assert_eq!(new.access_token.value.expose(), "new");
//! let Step::Send(_) = push.poll(now) else { panic!() };
//! push.handle_response(respond(201, ""));
//! let Step::Done(Ok(done)) = push.poll(now) else { panic!() };
//! assert_eq!(done.refreshed_token.unwrap().refresh_token.value.expose(), "rt2");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]

/// The README's examples, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub mod auth;
pub mod call;
pub mod config;
pub mod delete;
pub mod discovery;
pub mod error;
pub mod file;
pub mod flow;
pub mod jwks;
pub mod legacy;
pub mod provider;
pub mod push;
pub mod read;
pub mod read_all;
pub mod refresh;
pub mod report;
pub mod retry;
mod sdk;
pub mod single_flight;
pub mod storage;
pub mod stream;
pub mod token;
pub mod trace;
pub mod upload;
pub mod wire;

pub use auth::{
    AuthorizationCallback, AuthorizationCode, AuthorizeOptions, AuthorizeUrl, OnboardCallback,
    OnboardServiceOptions, OnboardUrl, ReauthorizeAccountOptions, ReauthorizeOptions,
    RevokeCallback, parse_callback, parse_onboard_callback, parse_revoke_callback,
};
pub use auth::{ContractAccess, ContractApplication, ContractDetails, PullOptions, Session};
pub use call::{ClientCall, ClientOperation};
pub use config::{
    Agent, ApplicationId, Config, Contract, ContractId, FileFormat, SessionKey, StorageId,
};
pub use digime_crypto::{CodeVerifier, PrivateKey, SecretString};
pub use discovery::{
    Category, Country, FacetQuery, Platform, SampleDataSet, Source, SourceFilter, SourcesPage,
    SourcesQuery,
};
pub use error::{
    ApiError, CallbackError, CallbackErrorCode, Error, ErrorCode, TransportError,
    TransportErrorKind,
};
pub use file::{FileDecoder, Output, ReadFile};
pub use flow::{Authed, Event, Flow, Step};
pub use jwks::KeySet;
pub use provider::FhirVersion;
pub use push::{AccountRef, FileDescriptor};
pub use read::{
    Account, AccountSyncStatus, Compression, FileData, FileHead, FileList, FileListEntry,
    FileMetadata, MappedFileMetadata, RawFileMetadata, SyncState, SyncStatus,
};
pub use read_all::{ReadAllEvent, ReadAllOptions, ReadAllSummary, StopHandle};
pub use refresh::{AuthedCall, UserOperation};
pub use report::PortabilityReportOptions;
pub use retry::RetryPolicy;
pub use sdk::Sdk;
pub use storage::{Storage, StorageFile, StorageFileList};
pub use token::{Token, User, UserAccessToken};

/// Re-exported so that drivers and apps use the same `http` types.
pub use http;
