//! Pushing a file into a postbox (docs/protocol.md, "Postbox era"): the envelope, the multipart body,
//! the request of each era, the response, and the push flow with its refresh on
//! `pending`.

use super::callback::PostboxId;
use crate::auth::TokenFlow;
use crate::config::{Contract, SessionKey};
use crate::error::Error;
use crate::flow::{Flow, Leg, Step, Sub, misuse};
use crate::push::FileDescriptor;
use crate::refresh::{Attempted, Refreshable, Refreshing};
use crate::retry::RetryPolicy;
use crate::sdk::Sdk;
use crate::token::UserAccessToken;
use crate::upload::{TransformEncoder, Upload, UploadTransform};
use crate::wire::{self, Body};
use base64::Engine;
use digime_crypto::cbc::{self, CbcEncryptor};
use digime_crypto::{PublicKey, random};
use http::{HeaderName, HeaderValue, Method, Request, Response, header};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;
use zeroize::Zeroizing;

/// A postbox to push into: its id and its RSA public key, both from the callback of
/// postbox creation (see [`super::parse_postbox_callback`]). Persist the id and
/// [`PublicKey::to_pkcs1_pem`] to push again later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Postbox {
    /// The postbox id (`postboxId`).
    pub id: PostboxId,
    /// The postbox public key (`publicKey`), which wraps each push's AES key.
    pub public_key: PublicKey,
}

impl Postbox {
    /// A postbox from the stored id and public key text (PKCS#1 PEM or bare base64, as
    /// [`PublicKey::from_postbox_key`] reads it).
    pub fn new(id: impl Into<String>, public_key: &str) -> Result<Self, Error> {
        Ok(Postbox {
            id: PostboxId::new(id)?,
            public_key: PublicKey::from_postbox_key(public_key)?,
        })
    }
}

/// How a push authenticates, by the era of the integration being ported.
#[derive(Debug, Clone)]
pub enum PostboxAuth {
    /// SDK v0.5–v3 (API `v1.0`/`v1.4`): the session key and the envelope in plain
    /// headers `sessionKey`, `symmetricalKey`, `iv`, `metadata`; no signature, no token.
    /// The server answers `pending`; nothing is refreshed.
    Headers {
        /// The key of the session the postbox was created in.
        session_key: SessionKey,
    },
    /// SDK v4 (API `v1.5`): a PS512 JWT with `session_key`, `redirect_uri` and the
    /// envelope. With the user's token (an ongoing postbox) the JWT also carries
    /// `access_token`, and a `pending` answer refreshes the token (SDK v4's flat format)
    /// and pushes once more.
    SessionJwt {
        /// The contract that signs the JWT.
        contract: Contract,
        /// The key of the session the postbox was created in.
        session_key: SessionKey,
        /// The `redirectUri` of the postbox creation (required even for one-off pushes).
        redirect_uri: String,
        /// The user's token, for an ongoing postbox.
        token: Option<UserAccessToken>,
    },
    /// SDK v8 (API `v1.7`): a PS512 JWT with the user's `access_token` and the
    /// envelope. A `pending` answer refreshes the token and pushes once more. (SDK
    /// v5–v7 on API `v1.6` also sent a `redirect_uri` claim, in the push and in the
    /// refresh; that variant is not built.)
    TokenJwt {
        /// The contract that signs the JWT.
        contract: Contract,
        /// The user's token.
        token: UserAccessToken,
    },
}

impl PostboxAuth {
    fn token(&self) -> Option<&UserAccessToken> {
        match self {
            PostboxAuth::Headers { .. } => None,
            PostboxAuth::SessionJwt { token, .. } => token.as_ref(),
            PostboxAuth::TokenJwt { token, .. } => Some(token),
        }
    }

    fn set_token(&mut self, new: UserAccessToken) {
        match self {
            PostboxAuth::Headers { .. } => {}
            PostboxAuth::SessionJwt { token, .. } => *token = Some(new),
            PostboxAuth::TokenJwt { token, .. } => *token = new,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        let empty_token = |t: &UserAccessToken| t.access_token.value.is_empty();
        match self {
            PostboxAuth::Headers { .. } => Ok(()),
            PostboxAuth::SessionJwt {
                redirect_uri,
                token,
                ..
            } => {
                if redirect_uri.is_empty() {
                    return Err(Error::InvalidInput("redirect_uri cannot be empty".into()));
                }
                if token.as_ref().is_some_and(empty_token) {
                    return Err(Error::InvalidInput("the user access token is empty".into()));
                }
                Ok(())
            }
            PostboxAuth::TokenJwt { token, .. } if empty_token(token) => {
                Err(Error::InvalidInput("the user access token is empty".into()))
            }
            PostboxAuth::TokenJwt { .. } => Ok(()),
        }
    }
}

/// What the server did with a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostboxStatus {
    /// Imported into the user's library now (a valid access token came with it).
    Delivered,
    /// Kept in the postbox until the user next opens the native app.
    Pending,
}

/// The answer to a push: `{"status":"delivered"|"pending","expires":N}`.
#[derive(Debug, Clone, PartialEq)]
pub struct PostboxPush {
    /// Delivered or pending.
    pub status: PostboxStatus,
    /// `expires`, as the server sent it: its unit and meaning (a duration or a time)
    /// are not established, so it is kept opaque.
    pub expires: serde_json::Number,
}

/// Parses a push response body, strictly: a JSON object whose `status` is
/// `"delivered"` or `"pending"` and whose `expires` is a number (other members are
/// ignored).
pub fn parse_push_response(body: &[u8]) -> Result<PostboxPush, Error> {
    let decode = |detail: &str| Error::Decode {
        context: "postbox push",
        detail: detail.to_owned(),
    };
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return Err(decode("body is not a JSON object"));
    };
    let status = match obj.get("status").and_then(Value::as_str) {
        Some("delivered") => PostboxStatus::Delivered,
        Some("pending") => PostboxStatus::Pending,
        Some(other) => return Err(decode(&format!("unknown status {other:?}"))),
        None => return Err(decode("no status string")),
    };
    match obj.get("expires") {
        Some(Value::Number(n)) => Ok(PostboxPush {
            status,
            expires: n.clone(),
        }),
        _ => Err(decode("no numeric expires")),
    }
}

// ---------------------------------------------------------------------------------
// The envelope (docs/protocol.md, "Postbox era").

/// The symmetric half of a push's envelope: one AES-256 key and one IV that encrypt
/// both the file and its metadata (docs/protocol.md, "Postbox era").
pub struct Envelope {
    key: Zeroizing<[u8; cbc::KEY_LEN]>,
    iv: [u8; cbc::IV_LEN],
}

impl Envelope {
    /// A fresh random key and IV (what every push does).
    pub fn generate() -> Result<Self, Error> {
        let mut key = Zeroizing::new([0u8; cbc::KEY_LEN]);
        random::fill(&mut key[..])?;
        let mut iv = [0u8; cbc::IV_LEN];
        random::fill(&mut iv)?;
        Ok(Envelope { key, iv })
    }

    /// A given key and IV: for test vectors only. A real push must never reuse either.
    pub fn from_key_and_iv(key: [u8; cbc::KEY_LEN], iv: [u8; cbc::IV_LEN]) -> Self {
        Envelope {
            key: Zeroizing::new(key),
            iv,
        }
    }

    /// The `iv` claim or header: 32 lowercase hex characters.
    pub fn iv_hex(&self) -> String {
        self.iv.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The `metadata` claim or header: standard padded base64 of AES-256-CBC(K, IV,
    /// compact JSON of the descriptor).
    pub fn encrypt_metadata(&self, descriptor: &FileDescriptor) -> Result<String, Error> {
        let json =
            serde_json::to_vec(descriptor).map_err(|e| Error::InvalidInput(e.to_string()))?;
        let sealed = cbc::encrypt(&self.key, &self.iv, &json)?;
        Ok(base64::engine::general_purpose::STANDARD.encode(sealed))
    }

    /// The `symmetrical_key` claim (`symmetricalKey` header): standard padded base64 of
    /// RSA-OAEP-SHA1(postbox key, K). Randomised: differs on every call.
    pub fn wrap_key(&self, postbox_key: &PublicKey) -> Result<String, Error> {
        let wrapped = postbox_key.encrypt_oaep_sha1(&self.key[..])?;
        Ok(base64::engine::general_purpose::STANDARD.encode(wrapped))
    }

    /// A streaming encryptor of the file under this key and IV.
    pub fn file_encryptor(&self) -> Result<CbcEncryptor, Error> {
        Ok(CbcEncryptor::new(&self.key, &self.iv)?)
    }
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Envelope([redacted])")
    }
}

// ---------------------------------------------------------------------------------
// The multipart body (docs/protocol.md, "Postbox era").

/// A fresh boundary: 26 `-` and 24 random decimal digits, as the official SDK's
/// form-data library draws them.
pub fn random_boundary() -> Result<String, Error> {
    let mut b = "-".repeat(26);
    for _ in 0..24 {
        let d = random::below(10)? as u8;
        b.push((b'0' + d) as char);
    }
    Ok(b)
}

/// The part's `filename`: the text after the last `/`, with `"`, CR and LF
/// percent-encoded as browsers do (the official SDK inserts it raw, which lets a name
/// break the part header).
pub fn part_file_name(file_name: &str) -> String {
    let last = file_name.rsplit('/').next().unwrap_or(file_name);
    let mut out = String::with_capacity(last.len());
    for c in last.chars() {
        match c {
            '"' => out.push_str("%22"),
            '\r' => out.push_str("%0D"),
            '\n' => out.push_str("%0A"),
            c => out.push(c),
        }
    }
    out
}

/// The MIME type the official SDK's form-data library guesses from a file name's
/// extension (case-insensitive), `application/octet-stream` when unknown. It says
/// nothing about the ciphertext; the real type is the descriptor's `mimeType`.
pub fn guess_mime_type(file_name: &str) -> &'static str {
    let last = file_name.rsplit('/').next().unwrap_or(file_name);
    let Some((_, ext)) = last.rsplit_once('.') else {
        return "application/octet-stream";
    };
    match ext.to_ascii_lowercase().as_str() {
        "json" => "application/json",
        "txt" | "text" | "log" => "text/plain",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "md" | "markdown" => "text/markdown",
        "ics" => "text/calendar",
        "vcf" => "text/vcard",
        "yaml" | "yml" => "text/yaml",
        "xml" => "application/xml",
        "js" | "mjs" => "application/javascript",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "tar" => "application/x-tar",
        "rtf" => "application/rtf",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls" => "application/vnd.ms-excel",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "ppt" => "application/vnd.ms-powerpoint",
        "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "bmp" => "image/bmp",
        "svg" => "image/svg+xml",
        "webp" => "image/webp",
        "tif" | "tiff" => "image/tiff",
        "ico" => "image/x-icon",
        "heic" => "image/heic",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "ogg" => "audio/ogg",
        "m4a" => "audio/mp4",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "webm" => "video/webm",
        "avi" => "video/x-msvideo",
        _ => "application/octet-stream",
    }
}

/// The bytes before the ciphertext: the opening delimiter and the part's headers.
pub fn multipart_prefix(boundary: &str, file_name: &str) -> Vec<u8> {
    format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\nContent-Type: {}\r\n\r\n",
        part_file_name(file_name),
        guess_mime_type(file_name)
    )
    .into_bytes()
}

/// The bytes after the ciphertext: CRLF and the closing delimiter.
pub fn multipart_suffix(boundary: &str) -> Vec<u8> {
    format!("\r\n--{boundary}--\r\n").into_bytes()
}

// ---------------------------------------------------------------------------------
// The streamed body.

struct UploadParts {
    key: Zeroizing<[u8; cbc::KEY_LEN]>,
    iv: [u8; cbc::IV_LEN],
    prefix: Vec<u8>,
    suffix: Vec<u8>,
}

/// The body of a postbox push, an [`UploadTransform`]: the upload goes out as
/// `prefix ‖ AES-256-CBC(K, IV, the caller's bytes) ‖ suffix` (the multipart body).
/// The request carries it as [`Body::Upload`]; the driver streams the caller's reader
/// through a fresh encoder per send ([`crate::upload`]). With a reader of `n` bytes
/// the body is exactly [`EncryptedUpload::encoded_len`]`(n)` bytes long.
#[derive(Clone)]
pub struct EncryptedUpload {
    parts: Arc<UploadParts>,
}

impl EncryptedUpload {
    fn new(envelope: &Envelope, prefix: Vec<u8>, suffix: Vec<u8>) -> Self {
        EncryptedUpload {
            parts: Arc::new(UploadParts {
                key: envelope.key.clone(),
                iv: envelope.iv,
                prefix,
                suffix,
            }),
        }
    }

    /// A fresh encoder of the whole body, from its first byte.
    pub fn encoder(&self) -> Result<EncryptedUploadEncoder, Error> {
        Ok(EncryptedUploadEncoder {
            parts: self.parts.clone(),
            prefix_sent: false,
            cipher: CbcEncryptor::new(&self.parts.key, &self.parts.iv)?,
        })
    }

    /// The length of the body made from `plaintext_len` bytes of the caller's reader.
    pub fn encoded_len(&self, plaintext_len: u64) -> u64 {
        cbc::encrypted_len(plaintext_len)
            .saturating_add(self.parts.prefix.len() as u64)
            .saturating_add(self.parts.suffix.len() as u64)
    }
}

impl UploadTransform for EncryptedUpload {
    fn body_len(&self, source_len: u64) -> u64 {
        self.encoded_len(source_len)
    }

    fn encoder(&self) -> Result<Box<dyn TransformEncoder>, Error> {
        Ok(Box::new(EncryptedUpload::encoder(self)?))
    }

    fn describe(&self) -> String {
        format!(
            "postbox multipart, {} + {} framing bytes",
            self.parts.prefix.len(),
            self.parts.suffix.len()
        )
    }
}

impl fmt::Debug for EncryptedUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedUpload")
            .field("prefix_len", &self.parts.prefix.len())
            .field("suffix_len", &self.parts.suffix.len())
            .finish_non_exhaustive()
    }
}

/// Turns the caller's bytes into the body of one send (see [`EncryptedUpload`]).
pub struct EncryptedUploadEncoder {
    parts: Arc<UploadParts>,
    prefix_sent: bool,
    cipher: CbcEncryptor,
}

impl EncryptedUploadEncoder {
    fn prefix(&mut self, out: &mut Vec<u8>) {
        if !self.prefix_sent {
            self.prefix_sent = true;
            out.extend_from_slice(&self.parts.prefix);
        }
    }

    /// Appends the body bytes that `chunk` (the next bytes of the caller's reader)
    /// completes to `out`: the prefix first, then whole AES blocks.
    pub fn encode(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        self.prefix(out);
        Ok(self.cipher.update(chunk, out)?)
    }

    /// The reader is exhausted: appends the last, padded block and the suffix.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        self.prefix(out);
        self.cipher.finish(out)?;
        out.extend_from_slice(&self.parts.suffix);
        Ok(())
    }
}

impl TransformEncoder for EncryptedUploadEncoder {
    fn encode(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        EncryptedUploadEncoder::encode(self, chunk, out)
    }

    fn finish(self: Box<Self>, out: &mut Vec<u8>) -> Result<(), Error> {
        EncryptedUploadEncoder::finish(*self, out)
    }
}

impl fmt::Debug for EncryptedUploadEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedUploadEncoder")
            .field("prefix_sent", &self.prefix_sent)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------
// The request of one attempt.

/// The key, IV and boundary of one attempt.
pub(crate) struct Material {
    pub(crate) envelope: Envelope,
    pub(crate) boundary: String,
}

impl Material {
    fn fresh() -> Result<Self, Error> {
        Ok(Material {
            envelope: Envelope::generate()?,
            boundary: random_boundary()?,
        })
    }
}

fn header_value(name: &str, value: &str) -> Result<HeaderValue, Error> {
    HeaderValue::from_str(value)
        .map_err(|_| Error::InvalidInput(format!("{name} is not a valid header value")))
}

/// Builds one push request: a fresh envelope and boundary, the era's authentication.
fn build_push(
    sdk: &Sdk,
    postbox: &Postbox,
    auth: &PostboxAuth,
    file_name: &str,
    descriptor: &FileDescriptor,
    material: Material,
    now: SystemTime,
) -> Result<Request<Body>, Error> {
    let Material { envelope, boundary } = material;
    let iv = envelope.iv_hex();
    let metadata = envelope.encrypt_metadata(descriptor)?;
    let symmetrical_key = envelope.wrap_key(&postbox.public_key)?;
    let config = sdk.config();
    let url = config.api(&format!(
        "permission-access/postbox/{}",
        crate::read::path_segment(postbox.id.as_str(), "postbox id")?
    ));
    let bearer = match auth {
        PostboxAuth::Headers { .. } => None,
        PostboxAuth::SessionJwt {
            contract,
            session_key,
            redirect_uri,
            token,
        } => {
            let mut claims = Map::new();
            if let Some(t) = token {
                claims.insert("access_token".into(), t.access_token.value.expose().into());
            }
            claims.insert("iv".into(), iv.as_str().into());
            claims.insert("metadata".into(), metadata.as_str().into());
            claims.insert("redirect_uri".into(), redirect_uri.as_str().into());
            claims.insert("session_key".into(), session_key.as_str().into());
            claims.insert("symmetrical_key".into(), symmetrical_key.as_str().into());
            Some(wire::sign_request_jwt(config, contract, now, claims)?)
        }
        PostboxAuth::TokenJwt { contract, token } => {
            let mut claims = Map::new();
            claims.insert(
                "access_token".into(),
                token.access_token.value.expose().into(),
            );
            claims.insert("iv".into(), iv.as_str().into());
            claims.insert("metadata".into(), metadata.as_str().into());
            claims.insert("symmetrical_key".into(), symmetrical_key.as_str().into());
            Some(wire::sign_request_jwt(config, contract, now, claims)?)
        }
    };
    let upload = EncryptedUpload::new(
        &envelope,
        multipart_prefix(&boundary, file_name),
        multipart_suffix(&boundary),
    );
    // Fail here, before any IO, rather than in the driver.
    drop(upload.encoder()?);
    let mut req = wire::accept_json(wire::request(
        Method::POST,
        &url,
        bearer.as_deref(),
        Body::Upload(Upload::transformed(upload)),
    )?);
    let headers = req.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header_value(
            "the boundary",
            &format!("multipart/form-data; boundary={boundary}"),
        )?,
    );
    if let PostboxAuth::Headers { session_key } = auth {
        headers.insert(HeaderName::from_static("sessionkey"), {
            // The only credential of an E0 push: hidden from `Debug`.
            let mut v = header_value("the session key", session_key.as_str())?;
            v.set_sensitive(true);
            v
        });
        headers.insert(
            HeaderName::from_static("symmetricalkey"),
            header_value("symmetricalKey", &symmetrical_key)?,
        );
        headers.insert(HeaderName::from_static("iv"), header_value("iv", &iv)?);
        headers.insert(
            HeaderName::from_static("metadata"),
            header_value("metadata", &metadata)?,
        );
    }
    Ok(req)
}

// ---------------------------------------------------------------------------------
// The flow.

/// The attempts of a postbox push: each one a fresh envelope (key, IV, boundary and
/// nonce) over the caller's reader from its start, with the current token.
pub struct PostboxPushes {
    sdk: Sdk,
    postbox: Postbox,
    auth: PostboxAuth,
    file_name: String,
    descriptor: FileDescriptor,
    /// Given keys, IVs and boundaries for the next attempts, last first (tests only;
    /// always empty otherwise).
    materials: Vec<Material>,
}

impl fmt::Debug for PostboxPushes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostboxPushes")
            .field("postbox", &self.postbox.id)
            .field("file_name", &self.file_name)
            .finish_non_exhaustive()
    }
}

impl Refreshable for PostboxPushes {
    type Output = PostboxPush;
    type Attempt = PostboxAttempt;

    fn attempt(&mut self) -> PostboxAttempt {
        let request = match self.materials.pop() {
            Some(m) => Ok(m),
            None => Material::fresh(),
        }
        .map(|material| {
            let (sdk, postbox, auth) = (self.sdk.clone(), self.postbox.clone(), self.auth.clone());
            let (file_name, descriptor) = (self.file_name.clone(), self.descriptor.clone());
            move |now| {
                build_push(
                    &sdk,
                    &postbox,
                    &auth,
                    &file_name,
                    &descriptor,
                    material,
                    now,
                )
            }
        });
        PostboxAttempt {
            leg: Leg::new("PushToPostbox", Method::POST, RetryPolicy::never()),
            build: Some(request.map(|b| Box::new(b) as BuildPush)),
            can_refresh: self.auth.token().is_some(),
        }
    }

    fn refresh(&self) -> Option<TokenFlow> {
        match &self.auth {
            PostboxAuth::Headers { .. } | PostboxAuth::SessionJwt { token: None, .. } => None,
            PostboxAuth::SessionJwt {
                contract,
                redirect_uri,
                token: Some(token),
                ..
            } => Some(
                TokenFlow::refresh(self.sdk.clone(), contract.clone(), token).with_payload(
                    super::link::flat_token_claims(redirect_uri),
                    super::token_from_flat_claims,
                ),
            ),
            PostboxAuth::TokenJwt { contract, token } => Some(TokenFlow::refresh(
                self.sdk.clone(),
                contract.clone(),
                token,
            )),
        }
    }

    fn set_token(&mut self, token: UserAccessToken) {
        self.auth.set_token(token);
    }
}

type BuildPush = Box<dyn FnOnce(SystemTime) -> Result<Request<Body>, Error> + Send>;

/// One push of a [`PushToPostbox`]: never retried (each attempt is one envelope; a lost
/// answer is [`Error::OutcomeUnknown`]), no 401 handling; a
/// `pending` answer asks for a refresh when the push carries a token.
pub struct PostboxAttempt {
    leg: Leg,
    build: Option<Result<BuildPush, Error>>,
    can_refresh: bool,
}

impl fmt::Debug for PostboxAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostboxAttempt").finish_non_exhaustive()
    }
}

impl Flow for PostboxAttempt {
    type Output = Attempted<PostboxPush>;

    fn poll(&mut self, now: SystemTime) -> Step<Attempted<PostboxPush>> {
        let build = &mut self.build;
        match self.leg.poll(now, |now| match build.take() {
            Some(Ok(build)) => build(now),
            Some(Err(e)) => Err(e),
            None => Err(misuse("a postbox push is sent once per attempt")),
        }) {
            Sub::Send(r) => Step::Send(r),
            Sub::Sleep(d) => Step::Sleep(d),
            Sub::Done(Err(e)) => Step::Done(Err(e)),
            Sub::Done(Ok(resp)) if !wire::is_success(&resp) => {
                Step::Done(Err(wire::error_from_response(&resp, now)))
            }
            Sub::Done(Ok(resp)) => Step::Done(parse_push_response(resp.body()).map(|push| {
                if push.status == PostboxStatus::Pending && self.can_refresh {
                    Attempted::Refresh(Ok(push))
                } else {
                    Attempted::Final(push)
                }
            })),
        }
    }

    fn handle_response(&mut self, response: Response<Vec<u8>>) {
        self.leg.handle(Ok(response));
    }

    fn handle_transport_error(&mut self, error: crate::error::TransportError) {
        self.leg.handle(Err(error));
    }
}

/// Pushes a file into a postbox, streamed from the caller's reader by the driver
/// ([`Body::Upload`] through an [`EncryptedUpload`]). Never retried (a POST), no 401
/// handling; a `pending` answer to a push made with the user's token refreshes the
/// token once ([`crate::Event::TokenRefreshed`], through [`crate::refresh`]), rebuilds
/// the whole envelope (new key, IV, boundary and nonce) and pushes once more from the
/// start of the reader. The new token is in the result, or in
/// [`Error::AfterRefresh`] if the second push fails.
pub type PushToPostbox = Refreshing<PostboxPushes>;

impl Refreshing<PostboxPushes> {
    pub(crate) fn new(
        sdk: Sdk,
        postbox: Postbox,
        auth: PostboxAuth,
        file_name: String,
        descriptor: FileDescriptor,
    ) -> Self {
        Refreshing::start(PostboxPushes {
            sdk,
            postbox,
            auth,
            file_name,
            descriptor,
            materials: Vec::new(),
        })
    }

    /// Test hook: the key, IV and boundary of the next attempts, in order.
    #[cfg(test)]
    pub(crate) fn with_materials(self, mut materials: Vec<Material>) -> Self {
        let mut calls = self.into_calls();
        materials.reverse();
        calls.materials = materials;
        Refreshing::start(calls)
    }
}
