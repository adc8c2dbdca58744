//! What the endpoint families share: the result type, body parsing and draining, the
//! server's own JWS and key set, the shared error answers, the library store, the
//! postbox records, and small encoders. It imports no endpoint family.

use crate::checks::ApiFailure;
use crate::state::{LibraryFile, PendingItem, Persisted, PostboxKind, PostboxRecord};
use crate::{Shared, now_ms, random_id};
use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use digime_crypto::PrivateKey;
use futures_util::StreamExt;
use serde_json::{Value, json};
use sha2::Digest;
use tokio::io::AsyncWriteExt;

/// What an endpoint answers.
pub(crate) type ApiResult = Result<Response, ApiFailure>;

/// Lifetime of preauthorization, reference, revoke and authorization codes.
pub(crate) const CODE_TTL_MS: u64 = 10 * 60 * 1000;
/// How long an expired code of an onboard page is remembered (its page then sends the
/// user back with `INVALID_CODE` instead of showing an error page).
pub(crate) const EXPIRED_CODE_MEMORY_MS: u64 = 24 * 3600 * 1000;

/// A 302 to `target` with `params` appended to its own query (the way every page and
/// the native app send the browser back to the app).
pub(crate) fn redirect(mut target: url::Url, params: &[(&str, String)]) -> Response {
    {
        let mut q = target.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    (
        axum::http::StatusCode::FOUND,
        [(axum::http::header::LOCATION, target.to_string())],
    )
        .into_response()
}

/// Whether a code that expires (or expired) at `expires_ms` is still remembered at
/// `now` (times from the state file may be anything: no overflow).
pub(crate) fn still_remembered(expires_ms: u64, now: u64) -> bool {
    expires_ms.saturating_add(EXPIRED_CODE_MEMORY_MS) > now
}

/// A name safe as one path component under the library (ids the sandbox made, or the
/// control API checked): no separators, no leading dot, at most 128 bytes.
pub(crate) fn safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
/// Lifetime of sessions (read sessions and establish-session sessions).
pub(crate) const SESSION_TTL_MS: u64 = 30 * 60 * 1000;
/// How long expired sessions are remembered (so they answer 410, not 404).
pub(crate) const EXPIRED_SESSION_MEMORY_MS: u64 = 24 * 3600 * 1000;
/// How long a pending item waits in a postbox, and the `expires` of every push answer
/// (in seconds: "seconds until the pushed data expires from the postbox").
pub(crate) const POSTBOX_ITEM_TTL_S: u64 = 30 * 86_400;
/// Largest JSON body accepted on the API.
const MAX_JSON_BODY: usize = 256 * 1024;
/// How much of a refused upload is read and dropped before answering.
pub(crate) const DRAIN_LIMIT: u64 = 64 << 20;

// ---------------------------------------------------------------------------
// Errors.

/// A storage failure.
pub(crate) fn internal(e: std::io::Error) -> ApiFailure {
    ApiFailure::new(500, "InternalError", format!("sandbox storage failed: {e}"))
}

/// Any other failure of the sandbox itself.
pub(crate) fn internal_msg(msg: &str) -> ApiFailure {
    ApiFailure::new(500, "InternalError", msg.to_owned())
}

/// An unknown session, or one of another client or user.
pub(crate) fn session_not_found() -> ApiFailure {
    ApiFailure::new(404, "SessionNotFound", "The session was not found")
}

/// A session past its expiry (never 401, which tells SDKs to refresh their token).
pub(crate) fn session_expired() -> ApiFailure {
    ApiFailure::new(410, "SessionExpired", "The session has expired")
}

/// An unknown postbox, or one the caller may not push to.
pub(crate) fn postbox_not_found(id: &str) -> ApiFailure {
    ApiFailure::new(
        404,
        "PostboxNotFound",
        format!("The postbox ({id}) was not found"),
    )
}

/// A user the control API does not know.
pub(crate) fn unknown_user() -> ApiFailure {
    ApiFailure::new(404, "NotFound", "No such user")
}

/// A body over `max` bytes.
pub(crate) fn too_large(max: u64) -> ApiFailure {
    ApiFailure::new(
        413,
        "PayloadTooLarge",
        format!("The request body is larger than {max} bytes"),
    )
}

/// The answer to a path the server does not have. The body is drained first (up to
/// [`DRAIN_LIMIT`]), so that the client reads the answer and keeps its connection.
pub(crate) async fn not_found(body: Body) -> Response {
    drain(body, DRAIN_LIMIT).await;
    ApiFailure::new(404, "NotFound", "The requested resource was not found").into_response()
}

/// The answer to a known path called with a method it does not take; the body is
/// drained first, as for [`not_found`].
pub(crate) async fn method_not_allowed(body: Body) -> Response {
    drain(body, DRAIN_LIMIT).await;
    ApiFailure::new(
        405,
        "MethodNotAllowed",
        "The method is not allowed for the requested resource",
    )
    .into_response()
}

// ---------------------------------------------------------------------------
// Request bodies.

/// A JSON object body (at most 256 KiB).
pub(crate) fn json_body(bytes: &[u8]) -> Result<Value, ApiFailure> {
    if bytes.len() > MAX_JSON_BODY {
        return Err(too_large(MAX_JSON_BODY as u64));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(ApiFailure::bad_params("the body must be a JSON object")),
    }
}

/// Reads and discards up to `limit` bytes of a refused upload, so that a client still
/// writing its body can read the error instead of hitting a closed connection.
pub(crate) async fn drain(body: Body, limit: u64) {
    drain_stream(&mut body.into_data_stream(), limit).await;
}

/// The whole of a body of at most `limit` bytes. A longer one is drained (up to
/// [`DRAIN_LIMIT`]) and refused with 413 `PayloadTooLarge`, so that the client reads
/// the answer instead of a reset; one that breaks off or is badly framed (a malformed
/// chunk) → 400 `ValidationErrors`.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiFailure> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiFailure::bad_params(&format!("the request body did not complete: {e}"))
        })?;
        if bytes.len() + chunk.len() > limit {
            drain_stream(&mut stream, DRAIN_LIMIT).await;
            return Err(too_large(limit as u64));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(bytes))
}

/// [`drain`] for a body whose stream was already taken.
pub(crate) async fn drain_stream(stream: &mut BodyDataStream, limit: u64) {
    let mut seen = 0u64;
    while let Some(Ok(chunk)) = stream.next().await {
        seen += chunk.len() as u64;
        if seen > limit {
            break;
        }
    }
}

// ---------------------------------------------------------------------------
// The server's JWS and key set.

/// A server JWS whose `jku` is the key set of the API base `base` (the base the client
/// talks to, e.g. `…/v1.5/`).
pub(crate) fn server_token_at(
    shared: &Shared,
    base: &str,
    claims: Value,
) -> Result<String, ApiFailure> {
    let header = json!({"alg": "PS512", "typ": "JWT", "kid": shared.kid, "jku": format!("{base}jwks/oauth")});
    digime_crypto::jws::sign(
        header.to_string().as_bytes(),
        claims.to_string().as_bytes(),
        &shared.signing_key,
    )
    .map_err(|_| internal_msg("signing failed"))
}

/// `GET {base}jwks/oauth`: the key set, the same on every API version.
pub(crate) async fn jwks(State(shared): State<Shared>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        shared.jwks.clone(),
    )
        .into_response()
}

/// The key set body, built once at start: `{kid, kty, alg, use, n, e, pem}` per key.
pub(crate) fn jwks_body(key: &digime_crypto::PublicKey, kid: &str) -> String {
    json!({"keys": [{
        "kid": kid,
        "kty": "RSA",
        "alg": "PS512",
        "use": "sig",
        "n": digime_crypto::b64url_encode(key.modulus()),
        "e": digime_crypto::b64url_encode(key.exponent()),
        "pem": key.to_pkcs1_pem(),
    }]})
    .to_string()
}

// ---------------------------------------------------------------------------
// Encoders.

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Text made safe for HTML content and attribute values.
pub(crate) fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

// ---------------------------------------------------------------------------
// The library store.

/// Turns a request body into the plaintext of a library file, piece by piece.
pub(crate) trait Upload {
    /// Appends the plaintext carried by `chunk` to `out`.
    fn update(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), ApiFailure>;
    /// Whether the rest of the body carries nothing more (it is still read).
    fn is_done(&self) -> bool {
        false
    }
    /// Whether the plaintext is the body itself (stored without a copy).
    fn is_verbatim(&self) -> bool {
        false
    }
    /// Appends the rest of the plaintext to `out`; the file's descriptor.
    fn finish(self, out: &mut Vec<u8>) -> Result<Value, ApiFailure>;
}

/// The body is the file, as sent; its descriptor came with the request headers.
pub(crate) struct Verbatim(pub(crate) Value);

impl Upload for Verbatim {
    fn update(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), ApiFailure> {
        out.extend_from_slice(chunk);
        Ok(())
    }
    fn is_verbatim(&self) -> bool {
        true
    }
    fn finish(self, _out: &mut Vec<u8>) -> Result<Value, ApiFailure> {
        Ok(self.0)
    }
}

/// Whose a stored file is.
pub(crate) struct Owner {
    pub(crate) user_id: String,
    pub(crate) app_id: String,
    pub(crate) contract_id: String,
}

/// Where a stored file goes.
pub(crate) enum Destination {
    /// Straight into the user's library.
    Library,
    /// Into a postbox, pending until the user imports it.
    Postbox(String),
}

/// Why storing stopped.
enum Stop {
    /// The body was refused: the rest of it is drained, then the error answered.
    Refused(ApiFailure),
    /// Answered at once (the body is too large, broke, or the disk failed).
    Now(ApiFailure),
}

/// Stores an upload as a library file: streams the body through `upload` into
/// `library/{user}/{id}.partial` while hashing it, syncs it, renames it into place,
/// then records it at `destination` and saves the state. Any failure leaves nothing
/// behind: the partial or final file is removed and the state change undone. A body
/// over `max` bytes gets 413 at once; a refused one is drained (up to
/// [`DRAIN_LIMIT`]) before the answer.
pub(crate) async fn store_upload(
    shared: &Shared,
    body: Body,
    max: u64,
    upload: impl Upload,
    owner: Owner,
    destination: Destination,
) -> Result<(), ApiFailure> {
    let id = random_id("file_");
    let user_dir = shared.library_dir().join(&owner.user_id);
    tokio::fs::create_dir_all(&user_dir)
        .await
        .map_err(internal)?;
    let partial = user_dir.join(format!("{id}.partial"));
    let final_path = user_dir.join(&id);
    let mut stream = body.into_data_stream();
    let written = write_partial(&mut stream, max, upload, &partial).await;
    let written = match written {
        Ok(w) => tokio::fs::rename(&partial, &final_path)
            .await
            .map(|()| w)
            .map_err(|e| Stop::Now(internal(e))),
        Err(stop) => Err(stop),
    };
    let (size, sha256, descriptor) = match written {
        Ok(w) => w,
        Err(stop) => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(match stop {
                Stop::Refused(f) => {
                    drain_stream(&mut stream, DRAIN_LIMIT).await;
                    f
                }
                Stop::Now(f) => f,
            });
        }
    };
    let now = now_ms();
    let file = LibraryFile {
        id,
        user_id: owner.user_id,
        app_id: owner.app_id,
        contract_id: owner.contract_id,
        descriptor,
        size,
        sha256,
        created: now,
        generated: None,
    };
    let recorded = {
        let mut st = shared.lock();
        record(&mut st, file, &destination, now).and_then(|()| {
            shared.save(&st).map_err(|e| {
                unrecord(&mut st, &destination);
                internal(e)
            })
        })
    };
    if recorded.is_err() {
        let _ = tokio::fs::remove_file(&final_path).await;
    }
    recorded
}

fn record(
    st: &mut Persisted,
    file: LibraryFile,
    destination: &Destination,
    now: u64,
) -> Result<(), ApiFailure> {
    match destination {
        // The user may have been deleted while the body was coming in.
        Destination::Library if !st.users.contains_key(&file.user_id) => {
            return Err(ApiFailure::invalid_token("access_token", false));
        }
        Destination::Library => st.files.push(file),
        Destination::Postbox(id) => st
            .postboxes
            .get_mut(id)
            .ok_or_else(|| postbox_not_found(id))?
            .pending
            .push(PendingItem {
                file,
                pushed_ms: now,
                expires_ms: now + POSTBOX_ITEM_TTL_S * 1000,
            }),
    }
    Ok(())
}

fn unrecord(st: &mut Persisted, destination: &Destination) {
    match destination {
        Destination::Library => {
            st.files.pop();
        }
        Destination::Postbox(id) => {
            if let Some(p) = st.postboxes.get_mut(id) {
                p.pending.pop();
            }
        }
    }
}

/// Streams the body through `upload` into `path`: `(size, sha256, descriptor)` of the
/// plaintext.
async fn write_partial(
    stream: &mut BodyDataStream,
    max: u64,
    mut upload: impl Upload,
    path: &std::path::Path,
) -> Result<(u64, String, Value), Stop> {
    let disk = |e: std::io::Error| Stop::Now(internal(e));
    let mut file = tokio::fs::File::create(path).await.map_err(disk)?;
    let mut hasher = sha2::Sha256::new();
    let mut size = 0u64;
    let mut total = 0u64;
    let mut plain = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            Stop::Now(ApiFailure::bad_params(&format!(
                "the upload did not complete: {e}"
            )))
        })?;
        total += chunk.len() as u64;
        if total > max {
            return Err(Stop::Now(too_large(max)));
        }
        if upload.is_done() {
            continue;
        }
        let plain: &[u8] = if upload.is_verbatim() {
            &chunk
        } else {
            plain.clear();
            upload.update(&chunk, &mut plain).map_err(Stop::Refused)?;
            &plain
        };
        hasher.update(plain);
        size += plain.len() as u64;
        file.write_all(plain).await.map_err(disk)?;
    }
    plain.clear();
    let descriptor = upload.finish(&mut plain).map_err(Stop::Refused)?;
    hasher.update(&plain);
    size += plain.len() as u64;
    file.write_all(&plain).await.map_err(disk)?;
    file.sync_all().await.map_err(disk)?;
    Ok((size, hex(&hasher.finalize()), descriptor))
}

// ---------------------------------------------------------------------------
// Postbox records (made by a consent on the web or by the native app).

/// A fresh RSA-2048 key pair for a postbox, made off the async runtime.
pub(crate) async fn postbox_key() -> Result<PrivateKey, ApiFailure> {
    tokio::task::spawn_blocking(PrivateKey::generate)
        .await
        .map_err(|e| internal_msg(&e.to_string()))?
        .map_err(|e| internal_msg(&e.to_string()))
}

/// The callback form of a public key: bare standard base64 of the PKCS#1 DER.
fn public_key_text(key: &PrivateKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.public_key().to_pkcs1_der())
}

/// Makes a postbox with `key`: `(id, public key text)`; `None` if the key does not
/// encode.
pub(crate) fn new_postbox(
    st: &mut Persisted,
    key: &PrivateKey,
    client_id: &str,
    user_id: &str,
    kind: PostboxKind,
    session_key: Option<String>,
    now: u64,
) -> Option<(String, String)> {
    let pem = key.to_pkcs1_pem().ok()?.to_string();
    let id = random_id("pbx_");
    let public_key = public_key_text(key);
    st.postboxes.insert(
        id.clone(),
        PostboxRecord {
            id: id.clone(),
            client_id: client_id.to_owned(),
            user_id: user_id.to_owned(),
            kind,
            session_key,
            private_key_pem: pem,
            public_key: public_key.clone(),
            created_ms: now,
            pending: Vec::new(),
        },
    );
    Some((id, public_key))
}

/// The SaaS postbox of a user and client, if there is one.
pub(crate) fn saas_postbox_of<'a>(
    st: &'a Persisted,
    user_id: &str,
    client_id: &str,
) -> Option<&'a PostboxRecord> {
    st.postboxes
        .values()
        .find(|p| p.kind == PostboxKind::Saas && p.user_id == user_id && p.client_id == client_id)
}

/// The postbox a web consent hands out: the existing one of this user and client, or
/// a new one with `key`. `(id, public key)`; `None` when there is none and no key.
pub(crate) fn saas_postbox(
    st: &mut Persisted,
    client_id: &str,
    user_id: &str,
    key: Option<PrivateKey>,
    now: u64,
) -> Option<(String, String)> {
    if let Some(p) = saas_postbox_of(st, user_id, client_id) {
        return Some((p.id.clone(), p.public_key.clone()));
    }
    new_postbox(st, &key?, client_id, user_id, PostboxKind::Saas, None, now)
}

/// Percent-decoding without `+` → space (`decodeURIComponent`); `None` for a broken
/// escape or bytes that are not UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            // `from_str_radix` takes a sign (`%+f`): only two hex digits are an escape.
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether the request's `content-type` is `media` (parameters ignored, any case).
pub(crate) fn media_type_is(headers: &axum::http::HeaderMap, media: &str) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(media))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        assert_eq!(hex(&[]), "");
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    #[test]
    fn html_escape_covers_markup_and_quotes() {
        assert_eq!(
            html_escape(r#"<a href="x">&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }
}
