//! The postbox era of the older official SDKs (`digime_protocol::legacy`), through
//! [`Client::legacy`].
//!
//! ```no_run
//! use digime_blocking::Client;
//! use digime_protocol::legacy::{self, PostboxAuth};
//! use digime_protocol::{Config, ContractId, FileDescriptor};
//!
//! # fn main() -> Result<(), digime_protocol::Error> {
//! let client = Client::new(Config::new("my-application-id")?.with_base_url(legacy::BASE_URL_V1_4)?);
//! let session = client.legacy().establish_session(&ContractId::new("my-contract")?, None)?;
//! let link = client.legacy().create_postbox_url_once(&session.session_key, "https://app.example/push")?;
//! // ... keep `link.state`, open `link.url` on the user's phone; the digi.me app
//! // calls the callback back ...
//! # let callback_url = "";
//! let callback = legacy::parse_postbox_callback(callback_url, &link.state)?;
//! let auth = PostboxAuth::Headers { session_key: session.session_key };
//! let file = std::fs::File::open("receipt.json").unwrap();
//! let pushed = client.legacy().push_to_postbox(
//!     &callback.postbox, auth, "receipt.json", &FileDescriptor::new("application/json"), file)?;
//! println!("{:?}", pushed.value.status);
//! # Ok(()) }
//! ```

use crate::Client;
use digime_protocol::auth::{AuthorizationCode, Scope};
use digime_protocol::flow::Authed;
use digime_protocol::legacy::{
    LegacySession, OncePostboxUrl, OngoingPostboxUrl, Postbox, PostboxAuth, PostboxPush,
};
use digime_protocol::{
    CodeVerifier, Contract, ContractId, Error, FileDescriptor, SessionKey, UserAccessToken,
};
use std::io::{Read, Seek};

/// The postbox-era operations of a [`Client`]; see `digime_protocol::legacy` for
/// which API base and which [`PostboxAuth`] each era needs.
#[derive(Debug, Clone, Copy)]
pub struct LegacyClient<'a> {
    client: &'a Client,
}

impl Client {
    /// The postbox-era operations (SDK v0.5–v8 integrations).
    pub fn legacy(&self) -> LegacyClient<'_> {
        LegacyClient { client: self }
    }
}

impl LegacyClient<'_> {
    /// Establishes a session (`POST permission-access/session`, SDK v0.5–v4).
    pub fn establish_session(
        &self,
        contract_id: &ContractId,
        scope: Option<&Scope>,
    ) -> Result<LegacySession, Error> {
        let sdk = self.client.sdk().legacy();
        self.client
            .run(sdk.establish_session(contract_id, scope)?, None)
    }

    /// The one-off `digime://postbox/create` deep link (no IO).
    pub fn create_postbox_url_once(
        &self,
        session_key: &SessionKey,
        callback_url: &str,
    ) -> Result<OncePostboxUrl, Error> {
        let sdk = self.client.sdk().legacy();
        sdk.create_postbox_url_once(session_key, callback_url)
    }

    /// Pre-authorizes an ongoing postbox (SDK v4): its deep link and the PKCE
    /// verifier to keep.
    pub fn create_postbox_url_ongoing(
        &self,
        contract: &Contract,
        session_key: &SessionKey,
        redirect_uri: &str,
        state: Option<&str>,
    ) -> Result<OngoingPostboxUrl, Error> {
        let sdk = self.client.sdk().legacy();
        let flow = sdk.create_postbox_url_ongoing(contract, session_key, redirect_uri, state)?;
        self.client.run(flow, None)
    }

    /// Exchanges an ongoing postbox's code for the user's token (SDK v4 flat format).
    pub fn exchange_code_for_token_ongoing(
        &self,
        contract: &Contract,
        redirect_uri: &str,
        code: &AuthorizationCode,
        verifier: &CodeVerifier,
    ) -> Result<UserAccessToken, Error> {
        let sdk = self.client.sdk().legacy();
        let flow = sdk.exchange_code_for_token_ongoing(contract, redirect_uri, code, verifier)?;
        self.client.run(flow, None)
    }

    /// Refreshes an ongoing postbox's token (SDK v4 flat format).
    pub fn refresh_token_ongoing(
        &self,
        contract: &Contract,
        redirect_uri: &str,
        token: &UserAccessToken,
    ) -> Result<UserAccessToken, Error> {
        let sdk = self.client.sdk().legacy();
        let flow = sdk.refresh_token_ongoing(contract, redirect_uri, token);
        self.client.run(flow, None)
    }

    /// Pushes `body` into a postbox, encrypted and streamed (a 1 GiB file is never
    /// held in memory; the request has a `Content-Length`). On `pending` with a
    /// token, the token is refreshed (the client's listener hears of it) and the
    /// body is rewound and pushed again under a new key.
    pub fn push_to_postbox<R: Read + Seek>(
        &self,
        postbox: &Postbox,
        auth: PostboxAuth,
        file_name: &str,
        descriptor: &FileDescriptor,
        mut body: R,
    ) -> Result<Authed<PostboxPush>, Error> {
        let sdk = self.client.sdk().legacy();
        let flow = sdk.push_to_postbox(postbox, auth, file_name, descriptor)?;
        self.client.run(flow, Some(&mut body))
    }
}
