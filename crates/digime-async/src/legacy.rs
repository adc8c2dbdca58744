//! The postbox era of the older official SDKs (`digime_protocol::legacy`), through
//! [`Client::legacy`]; the same operations as `digime_blocking::legacy`, async.
//!
//! ```no_run
//! use digime_async::Client;
//! use digime_protocol::legacy::{self, PostboxAuth};
//! use digime_protocol::{Config, Contract, FileDescriptor};
//!
//! # async fn demo(token: digime_protocol::UserAccessToken) -> Result<(), digime_protocol::Error> {
//! let client = Client::new(Config::new("my-application-id")?);
//! let contract = Contract::from_pem("my-write-contract", &std::fs::read_to_string("key.pem").unwrap())?;
//! # let callback_url = "";
//! let callback = legacy::parse_saas_postbox_callback(callback_url)?.verify_state("state-123")?;
//! let file = tokio::fs::File::open("receipt.json").await.unwrap();
//! let pushed = client
//!     .legacy()
//!     .push_to_postbox(
//!         &callback.postbox,
//!         PostboxAuth::TokenJwt { contract, token },
//!         "receipt.json",
//!         &FileDescriptor::new("application/json"),
//!         file,
//!     )
//!     .await?;
//! if let Some(new_token) = pushed.refreshed_token { /* persist it */ }
//! # Ok(()) }
//! ```

use crate::{Client, Upload};
use digime_protocol::auth::{AuthorizationCode, Scope};
use digime_protocol::flow::Authed;
use digime_protocol::legacy::{
    LegacySession, OncePostboxUrl, OngoingPostboxUrl, Postbox, PostboxAuth, PostboxPush,
};
use digime_protocol::{
    CodeVerifier, Contract, ContractId, Error, FileDescriptor, SessionKey, UserAccessToken,
};

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
    pub async fn establish_session(
        &self,
        contract_id: &ContractId,
        scope: Option<&Scope>,
    ) -> Result<LegacySession, Error> {
        let sdk = self.client.sdk().legacy();
        self.client
            .run(sdk.establish_session(contract_id, scope)?)
            .await
    }

    /// The one-off `digime://postbox/create` deep link (no IO, so not async).
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
    pub async fn create_postbox_url_ongoing(
        &self,
        contract: &Contract,
        session_key: &SessionKey,
        redirect_uri: &str,
        state: Option<&str>,
    ) -> Result<OngoingPostboxUrl, Error> {
        let sdk = self.client.sdk().legacy();
        let flow = sdk.create_postbox_url_ongoing(contract, session_key, redirect_uri, state)?;
        self.client.run(flow).await
    }

    /// Exchanges an ongoing postbox's code for the user's token (SDK v4 flat format).
    pub async fn exchange_code_for_token_ongoing(
        &self,
        contract: &Contract,
        redirect_uri: &str,
        code: &AuthorizationCode,
        verifier: &CodeVerifier,
    ) -> Result<UserAccessToken, Error> {
        let sdk = self.client.sdk().legacy();
        let flow = sdk.exchange_code_for_token_ongoing(contract, redirect_uri, code, verifier)?;
        self.client.run(flow).await
    }

    /// Refreshes an ongoing postbox's token (SDK v4 flat format).
    pub async fn refresh_token_ongoing(
        &self,
        contract: &Contract,
        redirect_uri: &str,
        token: &UserAccessToken,
    ) -> Result<UserAccessToken, Error> {
        let sdk = self.client.sdk().legacy();
        let flow = sdk.refresh_token_ongoing(contract, redirect_uri, token);
        self.client.run(flow).await
    }

    /// Pushes `body` into a postbox, encrypted and streamed (the request has a
    /// `Content-Length`). On `pending` with a token, the token is refreshed (the
    /// client's listener hears of it) and the body is rewound and pushed again under
    /// a new key.
    pub async fn push_to_postbox(
        &self,
        postbox: &Postbox,
        auth: PostboxAuth,
        file_name: &str,
        descriptor: &FileDescriptor,
        body: impl Upload,
    ) -> Result<Authed<PostboxPush>, Error> {
        let sdk = self.client.sdk().legacy();
        let flow = sdk.push_to_postbox(postbox, auth, file_name, descriptor)?;
        self.client.run_with_upload(flow, body).await
    }
}
