//! The postbox era: every write flow of the official SDKs before the direct library
//! import, for integrations being ported (docs/protocol.md, "Postbox era").
//!
//! Scope:
//! * In: establishing a session (SDK v0.5–v4); the `digime://postbox/create` deep links,
//!   one-off and ongoing, with the ongoing postbox's pre-authorization (PKCE) and its
//!   flat-token code exchange and refresh (SDK v4); the callbacks of every era, parsed
//!   into typed values; and pushing a file into a postbox in each era's envelope,
//!   streamed, with the refresh-on-`pending` of SDK v4 (ongoing) and v8.
//! * Out: today's API (library pushes, reads: see the crate root), the native app that
//!   consumes the deep links, the pre-release envelope of SDK v0.3-postbox.1/.2, the
//!   base64-string `fileData` of SDK v0.5–v3 (pass the decoded bytes), `resultVersion`
//!   and `callbackURL` deep links of SDK v0.5–v3 (the SDK v4 form is built), and the
//!   junk `contenttype` header.
//!
//! Nothing here mixes with today's API: get a [`Legacy`] from [`crate::Sdk::legacy`] (or
//! the drivers' `client.legacy()`). The API base decides which server generation is
//! spoken to; configure it with [`crate::Config::with_base_url`]:
//!
//! | Era | Official SDK | API base | Push authenticated by |
//! |---|---|---|---|
//! | E0 | v0.5 – v3 | [`BASE_URL_V1_4`] (v0.5: `…/v1.0/`) | [`PostboxAuth::Headers`] |
//! | E1 | v4 | [`BASE_URL_V1_5`] | [`PostboxAuth::SessionJwt`] |
//! | E2 | v8 (v5–v7 added a `redirect_uri` claim, not built) | [`BASE_URL_V1_7`] | [`PostboxAuth::TokenJwt`] |
//!
//! # The flows
//!
//! E0 and E1 one-off: a session, a deep link, a callback, a push.
//!
//! ```text
//!  establish_session ──▶ create_postbox_url_once ──▶ native app ──▶ callback
//!  POST permission-access/session   (pure)          (creates the    parse_postbox_callback
//!                                                    postbox)              │
//!                                                                          ▼
//!                               push_to_postbox(Headers | SessionJwt { token: None })
//! ```
//!
//! E1 ongoing: the pre-authorization (a flow), the deep link, a callback with a code,
//! the flat-token exchange, pushes with the token.
//!
//! ```text
//!  establish_session ──▶ create_postbox_url_ongoing ───────────────▶ native app
//!                        POST oauth/authorize (no body, PKCE)             │
//!                        [GET jwks] verify ──▶ deep link + verifier       ▼
//!  push_to_postbox(SessionJwt { token }) ◀── exchange_code_for_token ◀── parse_ongoing_
//!                                             _ongoing (flat token)      postbox_callback
//! ```
//!
//! E2: today's authorization, whose callback also carries the postbox.
//!
//! ```text
//!  Sdk::authorize_url ──▶ browser ──▶ parse_saas_postbox_callback ──▶ Sdk::exchange_code_
//!                                                                     for_token
//!                                    push_to_postbox(TokenJwt { token }) ◀──┘
//! ```
//!
//! A push ([`PushToPostbox`]), in every era:
//!
//! ```text
//!  ┌────────┐ delivered, or pending without a token  ┌──────┐
//!  │ Push 1 ├───────────────────────────────────────▶│ Done │◀──────────────┐
//!  └─┬──┬───┘                                        └──────┘               │ any answer
//!    │  │ pending, with a token   ┌─────────┐ new token ┌────────────────────┴───┐
//!    │  └────────────────────────▶│ Refresh ├──────────▶│ Push 2: new key, IV,   │
//!    │ error (no retry,           └────┬────┘  Event::  │ boundary, nonce; the   │
//!    ▼ no 401 handling)                │ refused  Token-│ reader from its start  │
//!  Done(Err)                 Done(Err) ◀┘      Refreshed └────────────────────────┘
//! ```
//!
//! The body is `multipart/form-data` with one part `file` whose content is the
//! AES-256-CBC ciphertext of the caller's bytes. The core never holds the file: the
//! request's body is [`Body::Upload`](crate::wire::Body::Upload) through an
//! [`EncryptedUpload`], and the driver streams the caller's reader through it.
//!
//! Driven by hand, with canned answers:
//!
//! ```
//! use digime_protocol::legacy::{Postbox, PostboxAuth, PostboxStatus};
//! use digime_protocol::{flow::{Flow, Step}, *};
//! use std::time::SystemTime;
//!
//! let sdk = Sdk::new(Config::new("app123")?.with_base_url(legacy::BASE_URL_V1_4)?);
//! let postbox_key = PrivateKey::generate()?;
//! let postbox = Postbox::new("pbx-7f3a", &postbox_key.public_key().to_pkcs1_pem())?;
//! let auth = PostboxAuth::Headers { session_key: SessionKey::new("sk-123")? };
//! let mut push = sdk.legacy().push_to_postbox(
//!     &postbox, auth, "receipt-42.json", &FileDescriptor::new("application/json"))?;
//!
//! let Step::Send(req) = push.poll(SystemTime::now()) else { panic!() };
//! assert_eq!(req.uri(), "https://api.digi.me/v1.4/permission-access/postbox/pbx-7f3a");
//! assert_eq!(req.headers()["sessionkey"], "sk-123");
//! // The driver streams the file through the request's encoder ...
//! assert!(matches!(req.body(), wire::Body::Upload(u) if !u.is_plain()));
//! // ... and reports the answer.
//! push.handle_response(http::Response::builder().status(200)
//!     .body(br#"{"status":"pending","expires":200000}"#.to_vec())?);
//! let Step::Done(Ok(done)) = push.poll(SystemTime::now()) else { panic!() };
//! assert_eq!(done.value.status, PostboxStatus::Pending);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod callback;
mod link;
mod push;
mod session;
#[cfg(test)]
mod tests;

pub use callback::{
    OngoingPostboxCallback, PostboxCallback, PostboxId, PostboxResult, SaasPostboxCallback,
    parse_ongoing_postbox_callback, parse_postbox_callback, parse_saas_postbox_callback,
};
pub use link::{
    CREATE_POSTBOX_LINK, CreatePostboxOngoing, OncePostboxUrl, OngoingPostboxUrl,
    token_from_flat_claims,
};
pub use push::{
    EncryptedUpload, EncryptedUploadEncoder, Envelope, Postbox, PostboxAttempt, PostboxAuth,
    PostboxPush, PostboxPushes, PostboxStatus, PushToPostbox, guess_mime_type, multipart_prefix,
    multipart_suffix, parse_push_response, part_file_name, random_boundary,
};
pub use session::{EstablishSession, LegacySession, parse_session_response};

use crate::auth::{AuthorizationCode, Scope};
use crate::auth::{AuthorizeFlow, TokenFlow};
use crate::config::{Contract, ContractId, SessionKey};
use crate::error::Error;
use crate::push::FileDescriptor;
use crate::sdk::Sdk;
use crate::token::UserAccessToken;
use digime_crypto::CodeVerifier;

/// The API base of SDK v1–v3 (E0).
pub const BASE_URL_V1_4: &str = "https://api.digi.me/v1.4/";
/// The API base of SDK v4 (E1).
pub const BASE_URL_V1_5: &str = "https://api.digi.me/v1.5/";
/// The API base of SDK v8 (E2), also today's.
pub const BASE_URL_V1_7: &str = "https://api.digi.me/v1.7/";

impl Sdk {
    /// The postbox-era flows ([`Legacy`]), on this SDK's configuration and key cache.
    pub fn legacy(&self) -> Legacy {
        Legacy { sdk: self.clone() }
    }
}

/// The postbox-era flows; see the [module docs](self). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Legacy {
    sdk: Sdk,
}

impl Legacy {
    /// Establishes a session (SDK v0.5–v4): `POST {base}permission-access/session`,
    /// unauthenticated. `scope` limits reads only; postbox flows leave it out.
    pub fn establish_session(
        &self,
        contract_id: &ContractId,
        scope: Option<&Scope>,
    ) -> Result<EstablishSession, Error> {
        let body = session::session_body(&self.sdk, contract_id, scope)?;
        Ok(EstablishSession::new(self.sdk.clone(), body))
    }

    /// The deep link that creates a one-off postbox in the native app (SDK v4 form):
    /// `digime://postbox/create?callbackUrl=…&sessionKey=…&appId=…&sdkVersion=…`,
    /// `sdkVersion` being [`crate::Agent::version`], and the state to keep. The app
    /// calls `callback_url` back, with a fresh `state` parameter added to it, which
    /// [`parse_postbox_callback`] checks. `callback_url` must be absolute and have no
    /// `state` parameter of its own.
    pub fn create_postbox_url_once(
        &self,
        session_key: &SessionKey,
        callback_url: &str,
    ) -> Result<OncePostboxUrl, Error> {
        link::once_postbox_url(self.sdk.config(), session_key, callback_url)
    }

    /// Pre-authorizes an ongoing postbox (SDK v4) and yields its deep link and the PKCE
    /// verifier to keep. The app calls `redirect_uri` back with the postbox and a code
    /// ([`parse_ongoing_postbox_callback`]); `state`, when given, is echoed there.
    pub fn create_postbox_url_ongoing(
        &self,
        contract: &Contract,
        session_key: &SessionKey,
        redirect_uri: &str,
        state: Option<&str>,
    ) -> Result<CreatePostboxOngoing, Error> {
        link::check_url("redirect URI", redirect_uri)?;
        let (redirect, session_key) = (redirect_uri.to_owned(), session_key.clone());
        let make_url = Box::new(move |config: &crate::Config, code: &str| {
            link::ongoing_postbox_url(config, code, &redirect, &session_key)
        });
        Ok(CreatePostboxOngoing::new(AuthorizeFlow::bare(
            self.sdk.clone(),
            contract.clone(),
            redirect_uri.to_owned(),
            state.map(str::to_owned),
            make_url,
        )))
    }

    /// Exchanges the code of an ongoing postbox's callback for the user's token (SDK
    /// v4: a `redirect_uri` claim, the flat token payload).
    pub fn exchange_code_for_token_ongoing(
        &self,
        contract: &Contract,
        redirect_uri: &str,
        code: &AuthorizationCode,
        verifier: &CodeVerifier,
    ) -> Result<TokenFlow, Error> {
        if redirect_uri.is_empty() {
            return Err(Error::InvalidInput("redirect_uri cannot be empty".into()));
        }
        Ok(self
            .sdk
            .exchange_code_for_token(contract, code, verifier)?
            .with_payload(
                link::flat_token_claims(redirect_uri),
                token_from_flat_claims,
            ))
    }

    /// Refreshes an ongoing postbox's token (SDK v4 format). A push does this by itself
    /// on `pending`.
    pub fn refresh_token_ongoing(
        &self,
        contract: &Contract,
        redirect_uri: &str,
        token: &UserAccessToken,
    ) -> TokenFlow {
        self.sdk.refresh_token(contract, token).with_payload(
            link::flat_token_claims(redirect_uri),
            token_from_flat_claims,
        )
    }

    /// Pushes a file into a postbox. The descriptor and the credentials are checked
    /// here, before any IO; the file is the driver's to stream.
    pub fn push_to_postbox(
        &self,
        postbox: &Postbox,
        auth: PostboxAuth,
        file_name: &str,
        descriptor: &FileDescriptor,
    ) -> Result<PushToPostbox, Error> {
        descriptor.validate()?;
        auth.validate()?;
        Ok(PushToPostbox::new(
            self.sdk.clone(),
            postbox.clone(),
            auth,
            file_name.to_owned(),
            descriptor.clone(),
        ))
    }
}
