//! The sans-IO core of the digi.me Rust SDK.
//!
//! Scope:
//! * In: configuration, ids and models, request building (every request signed with a
//!   fresh PS512 JWT), response parsing, the error model, retry policy as data, and the
//!   multi-request operations as state machines ([`flow`]): authorization URL, code
//!   exchange, refresh, library push with refresh-on-401, server token verification
//!   against a pinned, cached key set; reading ([`read`]): read sessions, file lists,
//!   accounts, file downloads decrypted and decompressed as they stream ([`mod@file`]),
//!   and the read-all polling coordinator with bounded concurrency ([`read_all`]); the
//!   postbox era of the older official SDKs, kept apart in [`legacy`].
//! * Out: sockets, clocks, sleeping, and reading or writing bodies. The drivers
//!   (`digime-blocking`, `digime-async`) do that, in a short loop around a [`Flow`];
//!   any other transport can do the same.
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

pub mod auth;
pub mod call;
pub mod config;
pub mod error;
pub mod file;
pub mod flow;
pub mod jwks;
pub mod legacy;
pub mod push;
pub mod read;
pub mod read_all;
pub mod refresh;
pub mod retry;
mod sdk;
pub mod token;
pub mod upload;
pub mod wire;

pub use auth::{
    AuthorizationCallback, AuthorizationCode, AuthorizeOptions, AuthorizeUrl, parse_callback,
};
pub use auth::{PullOptions, Session};
pub use config::{Agent, ApplicationId, Config, Contract, ContractId, FileFormat, SessionKey};
pub use digime_crypto::{CodeVerifier, PrivateKey, SecretString};
pub use error::{
    ApiError, CallbackError, CallbackErrorCode, Error, ErrorCode, TransportError,
    TransportErrorKind,
};
pub use file::{FileDecoder, Output, ReadFile};
pub use flow::{Authed, Event, Flow, Step};
pub use jwks::KeySet;
pub use push::{AccountRef, FileDescriptor};
pub use read::{
    Account, AccountSyncStatus, Compression, FileData, FileHead, FileList, FileListEntry,
    FileMetadata, MappedFileMetadata, RawFileMetadata, SyncState, SyncStatus,
};
pub use read_all::{ReadAllEvent, ReadAllOptions, ReadAllSummary, StopHandle};
pub use retry::RetryPolicy;
pub use sdk::Sdk;
pub use token::{Token, User, UserAccessToken};

/// Re-exported so that drivers and apps use the same `http` types.
pub use http;
