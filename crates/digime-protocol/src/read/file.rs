//! GET and HEAD `permission-access/query/{session}/{file}` (`docs/protocol.md`,
//! "Files"): a file's headers (`X-Metadata`, `Last-Modified`), and the download that
//! streams, decrypts and decompresses its body ([`ReadFile`]).

use super::file_list::Schema;
use super::{StreamResponse, file_path, user_request};
use crate::auth::TokenFlow;
use crate::config::{Contract, SessionKey};
use crate::error::Error;
use crate::error::{TransportError, TransportErrorKind};
use crate::file::FileDecoder;
use crate::flow::{Flow, Step, misuse};
use crate::refresh::UserOperation;
use crate::refresh::{Attempted, OneCall, Refreshable, Refreshing};
use crate::retry::Outcome;
use crate::sdk::Sdk;
use crate::token::UserAccessToken;
use crate::wire::{self, Body};
use base64::Engine;
use digime_crypto::{CryptoError, random};
use http::{HeaderValue, header};
use http::{Method, Request, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::Duration;
use std::time::SystemTime;

/// Metadata of data synced from a service (docs/protocol.md, "Files").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MappedFileMetadata {
    /// Number of objects.
    pub object_count: u64,
    /// Object type, e.g. `media`.
    pub object_type: String,
    /// Service group, e.g. `social`.
    pub service_group: String,
    /// Service, e.g. `instagram`.
    pub service_name: String,
    /// Schema.
    pub schema: Schema,
    /// Object version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_version: Option<String>,
    /// Anything else the server sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An account in raw metadata (lower-case `accountid`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawAccount {
    /// The account id.
    pub accountid: String,
}

/// An object type in raw metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawObjectType {
    /// Name.
    pub name: String,
    /// References.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<Vec<String>>,
}

/// Metadata of data an app pushed (docs/protocol.md, "Files"); the keys are lower-case on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawFileMetadata {
    /// MIME type.
    pub mimetype: String,
    /// Accounts.
    pub accounts: Vec<RawAccount>,
    /// The pushing application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    /// The pushing contract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contractid: Option<String>,
    /// When it was stored, Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
    /// Object types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objecttypes: Option<Vec<RawObjectType>>,
    /// Partner id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partnerid: Option<String>,
    /// References.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Vec<String>>,
    /// Service groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servicegroups: Option<Vec<i64>>,
    /// Tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Anything else the server sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A file's metadata: mapped (from a service) or raw (pushed by an app). Mapped is
/// tried first, as the official SDK does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FileMetadata {
    /// Data synced from a service.
    Mapped(MappedFileMetadata),
    /// Data an app pushed.
    Raw(RawFileMetadata),
}

/// How a file's plaintext was compressed before encryption (`X-Metadata.compression`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Compression {
    /// Not compressed.
    #[default]
    None,
    /// A gzip stream (RFC 1952).
    Gzip,
    /// A raw Brotli stream.
    Brotli,
    /// Another value: the data is used as is, as the official SDK does.
    Unknown(String),
}

impl Compression {
    fn from_wire(v: Option<&str>) -> Self {
        match v {
            None => Compression::None,
            Some("gzip") => Compression::Gzip,
            Some("brotli") => Compression::Brotli,
            Some(other) => Compression::Unknown(other.to_owned()),
        }
    }

    /// The value as on the wire (`None` when absent).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Brotli => Some("brotli"),
            Compression::Unknown(s) => Some(s),
        }
    }
}

/// The decoded `X-Metadata` header: `{"metadata": …, "compression"?: …}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XMetadata {
    /// The file's metadata.
    pub metadata: FileMetadata,
    /// Its compression.
    pub compression: Compression,
}

impl XMetadata {
    /// Decodes the header value: base64url (padding optional; the standard alphabet is
    /// accepted too, as the official SDK does) of a UTF-8 JSON object.
    pub fn parse(value: &[u8]) -> Result<XMetadata, Error> {
        let bad = |detail: String| Error::Decode {
            context: "X-Metadata",
            detail,
        };
        let text: Vec<u8> = value
            .iter()
            .filter(|&&b| b != b'=')
            .map(|&b| match b {
                b'+' => b'-',
                b'/' => b'_',
                b => b,
            })
            .collect();
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&text)
            .map_err(|e| bad(format!("not base64url: {e}")))?;
        #[derive(Deserialize)]
        struct Wire {
            metadata: FileMetadata,
            #[serde(default)]
            compression: Option<Value>,
        }
        let wire: Wire = serde_json::from_slice(&json)
            .map_err(|e| bad(format!("not the metadata shape: {e}")))?;
        let compression = match &wire.compression {
            None | Some(Value::Null) => Compression::None,
            Some(Value::String(s)) => Compression::from_wire(Some(s)),
            Some(_) => return Err(bad("compression is not a string".into())),
        };
        Ok(XMetadata {
            metadata: wire.metadata,
            compression,
        })
    }

    /// Encodes as the server does (unpadded base64url), for tests and emulators.
    pub fn encode(&self) -> String {
        let mut obj = Map::new();
        obj.insert(
            "metadata".into(),
            serde_json::to_value(&self.metadata).unwrap_or(Value::Null),
        );
        if let Some(c) = self.compression.as_str() {
            obj.insert("compression".into(), Value::String(c.to_owned()));
        }
        digime_crypto::b64url_encode(Value::Object(obj).to_string().as_bytes())
    }
}

/// What a file download's headers say: name, metadata, compression, `Last-Modified`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHead {
    /// The file name.
    pub name: String,
    /// Its metadata.
    pub metadata: FileMetadata,
    /// How its plaintext was compressed.
    pub compression: Compression,
    /// The `Last-Modified` header, verbatim (an HTTP date).
    pub last_modified: Option<String>,
}

/// A downloaded, decrypted and decompressed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileData {
    /// Name, metadata and `Last-Modified`.
    pub head: FileHead,
    /// The file's bytes (the SDK does not parse them).
    pub data: Vec<u8>,
}

/// Reads `X-Metadata` and `Last-Modified` from a download or `HEAD` response.
pub fn parse_file_head(name: &str, response: &Response<Vec<u8>>) -> Result<FileHead, Error> {
    let x = response
        .headers()
        .get("x-metadata")
        .ok_or_else(|| Error::Decode {
            context: "X-Metadata",
            detail: "the response has no X-Metadata header".into(),
        })?;
    let x = XMetadata::parse(x.as_bytes())?;
    let last_modified = response
        .headers()
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok(FileHead {
        name: name.to_owned(),
        metadata: x.metadata,
        compression: x.compression,
        last_modified,
    })
}

/// `HEAD permission-access/query/{sessionKey}/{fileName}` (docs/protocol.md, "Files"), or the headers half
/// of the `GET` (docs/protocol.md, "Files"), whose body [`crate::file::ReadFile`] then streams.
#[derive(Debug, Clone)]
pub struct ReadFileMetadata {
    session: SessionKey,
    name: String,
    download: bool,
}

impl ReadFileMetadata {
    pub(crate) fn head(session: SessionKey, name: String) -> Self {
        ReadFileMetadata {
            session,
            name,
            download: false,
        }
    }

    pub(crate) fn download(session: SessionKey, name: String) -> Self {
        ReadFileMetadata {
            session,
            name,
            download: true,
        }
    }
}

impl UserOperation for ReadFileMetadata {
    type Output = FileHead;
    fn method(&self) -> Method {
        if self.download {
            Method::GET
        } else {
            Method::HEAD
        }
    }
    fn build(
        &self,
        sdk: &Sdk,
        contract: &Contract,
        token: &UserAccessToken,
        now: SystemTime,
    ) -> Result<Request<Body>, Error> {
        let path = file_path(&self.session, &self.name)?;
        let req = user_request(sdk, contract, token, now, self.method(), &path, Body::Empty)?;
        if !self.download {
            return Ok(wire::accept_json(req));
        }
        let mut req = req;
        req.headers_mut().insert(
            header::ACCEPT,
            HeaderValue::from_static("application/octet-stream"),
        );
        req.extensions_mut().insert(StreamResponse);
        Ok(req)
    }
    // The official SDK reports only the metadata of a HEAD; `Last-Modified` is kept here
    // when the server sends it, since it costs nothing and tells when the file changed.
    fn parse(&self, response: Response<Vec<u8>>) -> Result<FileHead, Error> {
        parse_file_head(&self.name, &response)
    }
    fn refresh_on_any_401(&self) -> bool {
        true
    }
}

// ---------------------------------------------------------------------------------
// The download.

/// Where a [`ReadFile`] puts the plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Into a buffer of its own, returned in [`FileData::data`]. A connection lost in
    /// the middle of the body is retried as the GET retry policy allows.
    Buffer,
    /// To the driver, through the `out` argument of [`Flow::handle_body`], for the
    /// caller's sink ([`FileData::data`] stays empty). Once a byte has been handed
    /// out, a lost connection is an error rather than a retry.
    Stream,
}

/// The attempts of a download: each one GETs the file with the current token.
#[derive(Debug)]
pub struct Download {
    sdk: Sdk,
    contract: Contract,
    token: UserAccessToken,
    session: SessionKey,
    name: String,
    output: Output,
    /// Whether the token was refreshed (logged with the attempts made after).
    refreshed: bool,
}

impl Refreshable for Download {
    type Output = FileData;
    type Attempt = FileAttempt;

    fn attempt(&mut self) -> FileAttempt {
        let mut attempt = FileAttempt {
            sdk: self.sdk.clone(),
            contract: self.contract.clone(),
            token: self.token.clone(),
            session: self.session.clone(),
            name: self.name.clone(),
            output: self.output,
            buffer: Vec::new(),
            emitted: 0,
            body_retries: 0,
            phase: Phase::Finished,
            refreshed: self.refreshed,
        };
        attempt.phase = Phase::Head(attempt.head_call());
        attempt
    }

    fn refresh(&self) -> Option<TokenFlow> {
        Some(TokenFlow::refresh(
            self.sdk.clone(),
            self.contract.clone(),
            &self.token,
        ))
    }

    fn set_token(&mut self, token: UserAccessToken) {
        self.token = token;
        self.refreshed = true;
    }
}

/// Downloads, decrypts and decompresses one file (`GET …/query/{session}/{file}`),
/// refreshing the token once on any 401 ([`crate::refresh`]). Run it like any
/// [`Flow`]; it asks the driver to stream the body with [`Step::Receive`].
///
/// ```text
///  ┌──────────────┐ 2xx + X-Metadata  ┌───────────────────┐ end, padding ok ┌──────┐
///  │ GET          ├──────────────────▶│ Receive: chunks → ├────────────────▶│ Done │
///  └──────┬───────┘                   │ decrypt → inflate │                 └──────┘
///         │ error (401: refresh       └───┬──────────┬────┘
///         │ once, GET again)              │ bad data │ connection lost
///         ▼                               ▼          ▼ (nothing written yet, or a
///     Done(Err)                       Done(Err)   buffered read: back off, GET again)
/// ```
pub type ReadFile = Refreshing<Download>;

impl Refreshing<Download> {
    pub(crate) fn new(
        sdk: Sdk,
        contract: Contract,
        token: UserAccessToken,
        session: SessionKey,
        name: String,
        output: Output,
    ) -> Self {
        Refreshing::start(Download {
            sdk,
            contract,
            token,
            session,
            name,
            output,
            refreshed: false,
        })
    }

    /// The file name.
    pub fn name(&self) -> &str {
        &self.calls().name
    }

    /// The response headers, once they have arrived (the sink can be opened then).
    pub fn head(&self) -> Option<&FileHead> {
        self.current_attempt()?.head()
    }
}

// The GET is live for one phase at a time, and only one flow exists per download.
#[allow(clippy::large_enum_variant)]
enum Phase {
    Head(OneCall<ReadFileMetadata>),
    Body {
        head: FileHead,
        decoder: Option<FileDecoder>,
        receiving: bool,
        /// The body ended; output is still being drained.
        ending: bool,
        outcome: Option<Result<(), Error>>,
    },
    Backoff,
    Finished,
}

/// One attempt of a [`ReadFile`]: the GET, its body, and the GETs again after a body
/// that broke off, with one token.
pub struct FileAttempt {
    sdk: Sdk,
    contract: Contract,
    token: UserAccessToken,
    session: SessionKey,
    name: String,
    output: Output,
    buffer: Vec<u8>,
    emitted: u64,
    body_retries: u32,
    phase: Phase,
    /// Made after the download's token was refreshed (for the logs).
    refreshed: bool,
}

impl std::fmt::Debug for FileAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileAttempt")
            .field("name", &self.name)
            .field("emitted", &self.emitted)
            .field("body_retries", &self.body_retries)
            .finish_non_exhaustive()
    }
}

type AttemptStep = Step<Attempted<FileData>>;

impl FileAttempt {
    fn head_call(&self) -> OneCall<ReadFileMetadata> {
        OneCall::new(
            self.sdk.clone(),
            self.contract.clone(),
            self.token.clone(),
            ReadFileMetadata::download(self.session.clone(), self.name.clone()),
        )
        .after_refresh(self.refreshed)
    }

    /// The response headers, once they have arrived.
    pub fn head(&self) -> Option<&FileHead> {
        match &self.phase {
            Phase::Body { head, .. } => Some(head),
            _ => None,
        }
    }

    fn finish(&mut self, result: Result<Attempted<FileData>, Error>) -> AttemptStep {
        self.phase = Phase::Finished;
        Step::Done(result)
    }

    fn target<'a>(&'a mut self, out: &'a mut Vec<u8>) -> &'a mut Vec<u8> {
        match self.output {
            Output::Buffer => &mut self.buffer,
            Output::Stream => out,
        }
    }

    /// A file read into memory must stay within [`crate::Config::max_buffered_file_bytes`].
    fn within_buffer_cap(&self) -> Result<(), Error> {
        let cap = self.sdk.config().max_buffered_file_bytes;
        if self.output == Output::Buffer && self.buffer.len() as u64 > cap {
            return Err(Error::Transport(TransportError::new(
                TransportErrorKind::ResponseTooLarge,
                format!("the file is over {cap} bytes: read it to a writer instead"),
            )));
        }
        Ok(())
    }

    /// Waits `delay`, then GETs the file again from the start.
    fn back_off(&mut self, delay: Duration) -> AttemptStep {
        self.body_retries += 1;
        self.buffer.clear();
        self.phase = Phase::Backoff;
        Step::Sleep(delay)
    }

    /// Whether a body that broke off can be fetched again.
    fn may_retry_body(&self, error: &TransportError, now: SystemTime) -> Option<Duration> {
        if self.output == Output::Stream && self.emitted > 0 {
            return None;
        }
        let jitter = random::below(u64::MAX).unwrap_or(0);
        self.sdk.config().retry.delay(
            &Method::GET,
            self.body_retries + 1,
            Outcome::Transport(error),
            now,
            jitter,
        )
    }
}

impl Flow for FileAttempt {
    type Output = Attempted<FileData>;

    fn poll(&mut self, now: SystemTime) -> AttemptStep {
        loop {
            match &mut self.phase {
                Phase::Head(call) => match call.poll(now) {
                    Step::Done(Ok(Attempted::Final(head))) => {
                        let decoder = FileDecoder::new(
                            self.contract.key(),
                            self.sdk.config().file_format(),
                            &head.compression,
                        );
                        self.phase = Phase::Body {
                            head,
                            decoder: Some(decoder),
                            receiving: true,
                            ending: false,
                            outcome: None,
                        };
                        return Step::Receive;
                    }
                    Step::Done(Ok(Attempted::Refresh(r))) => {
                        let error = r.err().unwrap_or_else(|| misuse("a refresh without error"));
                        return self.finish(Ok(Attempted::Refresh(Err(error))));
                    }
                    Step::Done(Err(e)) => return self.finish(Err(e)),
                    Step::Event(e) => return Step::Event(e),
                    Step::Send(r) => return Step::Send(r),
                    Step::Sleep(d) => return Step::Sleep(d),
                    Step::Receive => return self.finish(Err(misuse("a head call never streams"))),
                },
                Phase::Body {
                    head,
                    receiving,
                    outcome,
                    ..
                } => {
                    if *receiving {
                        return self.finish(Err(misuse("poll before the body was handed over")));
                    }
                    match outcome.take() {
                        Some(Ok(())) => {
                            let head = head.clone();
                            let data = std::mem::take(&mut self.buffer);
                            return self.finish(Ok(Attempted::Final(FileData { head, data })));
                        }
                        Some(Err(Error::Transport(t))) => match self.may_retry_body(&t, now) {
                            Some(delay) => return self.back_off(delay),
                            None => return self.finish(Err(Error::Transport(t))),
                        },
                        // A body that ended cleanly but short (a proxy that cut it): the
                        // envelope's length is not whole, or, cut on a block boundary,
                        // its last block is not padded. Fetched again like a body that
                        // broke off, while nothing was handed out (a file corrupt at
                        // the source fails the same way each time, then is reported).
                        Some(Err(
                            e @ Error::Decryption(
                                CryptoError::InvalidFileSize { .. } | CryptoError::BadPadding,
                            ),
                        )) => {
                            let cut = TransportError::new(TransportErrorKind::Reset, e.to_string());
                            match self.may_retry_body(&cut, now) {
                                Some(delay) => return self.back_off(delay),
                                None => return self.finish(Err(e)),
                            }
                        }
                        Some(Err(e)) => return self.finish(Err(e)),
                        None => return self.finish(Err(misuse("no body outcome"))),
                    }
                }
                Phase::Backoff => self.phase = Phase::Head(self.head_call()),
                Phase::Finished => return Step::Done(Err(misuse("poll after Done"))),
            }
        }
    }

    fn handle_response(&mut self, response: Response<Vec<u8>>) {
        if let Phase::Head(call) = &mut self.phase {
            call.handle_response(response);
        }
    }

    fn handle_transport_error(&mut self, error: TransportError) {
        match &mut self.phase {
            Phase::Head(call) => call.handle_transport_error(error),
            Phase::Body {
                receiving, outcome, ..
            } => {
                // A sink that failed on the last write still spoils a finished body.
                let sink = error.kind == TransportErrorKind::Sink;
                if *receiving || sink {
                    *receiving = false;
                    if outcome.is_none() || sink {
                        *outcome = Some(Err(Error::Transport(error)));
                    }
                }
            }
            _ => {}
        }
    }

    fn handle_body(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> bool {
        let mut decoder = match &mut self.phase {
            Phase::Body {
                decoder, receiving, ..
            } if *receiving => match decoder.take() {
                Some(d) => d,
                None => return false,
            },
            _ => return false,
        };
        let before = out.len();
        let result = decoder.update(chunk, self.target(out));
        let result = result.and_then(|()| self.within_buffer_cap());
        self.emitted += (out.len() - before) as u64;
        if let Phase::Body {
            decoder: slot,
            outcome,
            receiving,
            ..
        } = &mut self.phase
        {
            match result {
                Ok(()) => {
                    *slot = Some(decoder);
                    return true;
                }
                Err(e) => {
                    *outcome = Some(Err(e));
                    *receiving = false;
                }
            }
        }
        false
    }

    fn handle_body_end(&mut self, out: &mut Vec<u8>) {
        let mut decoder = match &mut self.phase {
            Phase::Body {
                decoder, receiving, ..
            } if *receiving => match decoder.take() {
                Some(d) => d,
                None => return self.end_body(Err(misuse("body ended twice"))),
            },
            _ => return,
        };
        let before = out.len();
        let result = decoder.end_input(self.target(out));
        let result = result.and_then(|()| self.within_buffer_cap());
        self.emitted += (out.len() - before) as u64;
        if let Err(e) = result {
            return self.end_body(Err(e));
        }
        if decoder.has_pending() {
            if let Phase::Body {
                decoder: slot,
                ending,
                ..
            } = &mut self.phase
            {
                *slot = Some(decoder);
                *ending = true;
            }
            return;
        }
        self.finish_body(decoder, out);
    }

    fn handle_body_drain(&mut self, out: &mut Vec<u8>) -> bool {
        let (mut decoder, ending) = match &mut self.phase {
            Phase::Body {
                decoder,
                receiving,
                ending,
                ..
            } if *receiving && decoder.as_ref().is_some_and(FileDecoder::has_pending) => {
                match decoder.take() {
                    Some(d) => (d, *ending),
                    None => return false,
                }
            }
            _ => return false,
        };
        let before = out.len();
        let result = decoder.drain(self.target(out));
        let result = result.and_then(|()| self.within_buffer_cap());
        self.emitted += (out.len() - before) as u64;
        if let Err(e) = result {
            self.end_body(Err(e));
            return false;
        }
        let more = decoder.has_pending();
        if !more && ending {
            self.finish_body(decoder, out);
            return false;
        }
        if let Phase::Body { decoder: slot, .. } = &mut self.phase {
            *slot = Some(decoder);
        }
        more
    }
}

impl FileAttempt {
    /// The body is over: this is its outcome (unless it already has one).
    fn end_body(&mut self, result: Result<(), Error>) {
        if let Phase::Body {
            outcome, receiving, ..
        } = &mut self.phase
        {
            *receiving = false;
            if outcome.is_none() {
                *outcome = Some(result);
            }
        }
    }

    /// Checks the decoder's end (nothing is pending: this appends at most a little).
    fn finish_body(&mut self, decoder: FileDecoder, out: &mut Vec<u8>) {
        let before = out.len();
        let r = decoder.finish(self.target(out));
        self.emitted += (out.len() - before) as u64;
        let r = r.and_then(|()| self.within_buffer_cap());
        self.end_body(r);
    }
}
