//! The cloud base, `/cloud/v1/`: the files of a storage, under
//! `clouds/{storageId}/files/apps/{applicationId}{path}`, with a storage JWT (the S
//! flavour: `kid`, `sub`, `iss`, `aud`, `iat`, `exp`, no nonce). List, upload (streamed
//! to disk), download (streamed from disk) and delete; the bytes are stored as they
//! came, the envelope the client made (only the holder of the contract key reads them).
//! And the control API's view of the storages, to check that what is stored is
//! ciphertext.

use crate::checks::ApiFailure;
use crate::clouds::{CloudFile, storage_dir, storage_kid, storage_not_found};
use crate::common::{DRAIN_LIMIT, drain, drain_stream, hex, internal, internal_msg};
use crate::state::RegisteredContract;
use crate::{Shared, now_ms, random_id};
use axum::Router;
use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use digime_crypto::envelope::Format;
use digime_crypto::jws::Compact;
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use sha2::Digest;
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

/// The prefix of every cloud path.
const PREFIX: &str = "/cloud/v1/";
/// Longest lifetime (`exp - iat`) of a storage JWT, and how far in the future its
/// `iat` may be.
const MAX_LIFETIME_S: u64 = 300;
/// Longest path segment (a file system's name limit).
const MAX_SEGMENT: usize = 255;

/// The routes of the cloud base.
pub(crate) fn routes() -> Router<Shared> {
    Router::new().route(
        "/cloud/v1/{*rest}",
        any(cloud).layer(DefaultBodyLimit::disable()),
    )
}

/// The control routes of the storages.
pub(crate) fn control_routes() -> Router<Shared> {
    Router::new()
        .route("/_sandbox/clouds", get(control_storages))
        .route("/_sandbox/clouds/{storage}/files", get(control_files))
}

fn bad(detail: &str) -> ApiFailure {
    ApiFailure::bad_params(detail)
}

fn file_not_found(path: &str) -> ApiFailure {
    ApiFailure::new(
        404,
        "FileNotFound",
        format!("The file ({path}) was not found"),
    )
}

// ---------------------------------------------------------------------------
// The storage JWT.

/// Verifies `Authorization: Bearer <S-JWT>`: a compact JWS whose header is exactly
/// `{"alg":"PS512","typ":"at+jwt","kid"}`, `kid` the `{contractId}_{applicationId}_0`
/// of a registered contract (else 400 `InvalidClient`), signed with that contract's
/// key (else 406), whose `sub` and `iss` are the kid's application and contract,
/// `aud` `cloud`, `iat` at most five minutes ahead, `exp` after now and at most 300 s
/// after `iat` (else 401 `InvalidToken`). Anything malformed → 406 `ValidationErrors`.
pub(crate) fn verify_storage_jwt(
    shared: &Shared,
    headers: &HeaderMap,
) -> Result<RegisteredContract, ApiFailure> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(ApiFailure::validation)?;
    let (scheme, token) = auth.split_once(' ').ok_or_else(ApiFailure::validation)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiFailure::validation());
    }
    let compact = Compact::parse(token.trim()).map_err(|_| ApiFailure::validation())?;
    let Some(Value::Object(head)) = compact
        .header()
        .ok()
        .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
    else {
        return Err(ApiFailure::validation());
    };
    let kid = head.get("kid").and_then(Value::as_str);
    let exact = head.len() == 3
        && head.get("alg").and_then(Value::as_str) == Some("PS512")
        && head.get("typ").and_then(Value::as_str) == Some("at+jwt");
    let (true, Some(kid)) = (exact, kid) else {
        return Err(ApiFailure::validation());
    };
    let Some(Value::Object(claims)) = compact
        .payload()
        .ok()
        .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
    else {
        return Err(ApiFailure::validation());
    };
    // Ids with underscores could make two contracts' kids alike: the one whose key
    // verifies is the caller.
    let named: Vec<&RegisteredContract> = shared
        .contracts
        .values()
        .filter(|c| storage_kid(&c.contract_id, &c.app_id) == kid)
        .collect();
    if named.is_empty() {
        return Err(ApiFailure::new(
            400,
            "InvalidClient",
            format!("The kid ({kid}) is invalid"),
        ));
    }
    let contract = named
        .into_iter()
        .find(|c| compact.verify(&c.key).is_ok())
        .cloned()
        .ok_or_else(ApiFailure::validation)?;
    check_claims(&claims, &contract, now_ms() / 1000)?;
    Ok(contract)
}

/// The claims of a storage JWT of `contract`, at `now` (Unix s).
fn check_claims(
    claims: &Map<String, Value>,
    contract: &RegisteredContract,
    now: u64,
) -> Result<(), ApiFailure> {
    let invalid = |detail: &str| {
        ApiFailure::new(
            401,
            "InvalidToken",
            format!("The token is invalid: {detail}"),
        )
    };
    let s = |name: &str| claims.get(name).and_then(Value::as_str);
    if s("sub") != Some(contract.app_id.as_str()) || s("iss") != Some(&contract.contract_id) {
        return Err(invalid(
            "sub and iss must be the application and contract of the kid",
        ));
    }
    if s("aud") != Some("cloud") {
        return Err(invalid("aud must be cloud"));
    }
    let (Some(iat), Some(exp)) = (
        claims.get("iat").and_then(Value::as_u64),
        claims.get("exp").and_then(Value::as_u64),
    ) else {
        return Err(invalid("iat and exp must be Unix times in seconds"));
    };
    if iat > now.saturating_add(MAX_LIFETIME_S) {
        return Err(invalid("iat is in the future"));
    }
    if exp <= now {
        return Err(ApiFailure::new(401, "InvalidToken", "The token is expired"));
    }
    if exp < iat || exp - iat > MAX_LIFETIME_S {
        return Err(invalid("exp must be at most 300 s after iat"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Paths.

/// What a request path addresses under the app folder.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// `…/apps/{appId}` itself (no path).
    AppRoot,
    /// A path ending in `/`: its segments (none for `/`).
    Folder(Vec<String>),
    /// A file: its folder's segments and its name.
    File(Vec<String>, String),
}

impl Target {
    /// Whether a deletion of this target, [`Target::shown`] as `shown`, deletes the
    /// file at `key`.
    fn covers(&self, shown: &str, key: &str, f: &CloudFile) -> bool {
        match self {
            Target::AppRoot => true,
            Target::Folder(_) => f.folder.starts_with(shown),
            Target::File(..) => key == shown,
        }
    }

    /// The path as the index writes it (`""` for the app root).
    fn shown(&self) -> String {
        match self {
            Target::AppRoot => String::new(),
            Target::Folder(segments) => Target::folder_text(segments),
            Target::File(segments, name) => format!("{}{name}", Target::folder_text(segments)),
        }
    }

    /// The folder as the index keeps it: `/`, `/a/`, `/a/b/`.
    fn folder_text(segments: &[String]) -> String {
        let mut out = String::from("/");
        for s in segments {
            out.push_str(s);
            out.push('/');
        }
        out
    }
}

/// A checked request path, `clouds/{storageId}/files/apps/{appId}{path}` (the app id is
/// the caller's).
#[derive(Debug)]
struct CloudPath {
    storage: String,
    target: Target,
}

/// One segment of a file path: non-empty, not `.` or `..`, no space, no control
/// character, no `/` (encoded), at most 255 bytes.
fn segment(raw: &str) -> Result<String, ApiFailure> {
    let s =
        crate::common::percent_decode(raw).ok_or_else(|| bad("a path segment is badly encoded"))?;
    if s.is_empty() {
        return Err(bad("a path segment is empty"));
    }
    if s == "." || s == ".." {
        return Err(bad("a path segment is . or .."));
    }
    if s.chars().any(|c| c == ' ' || c == '/' || c.is_control()) {
        return Err(bad(
            "a path segment has a space, a slash or a control character",
        ));
    }
    if s.len() > MAX_SEGMENT {
        return Err(bad("a path segment is longer than 255 bytes"));
    }
    Ok(s)
}

/// Takes a request path apart; `None` when it is not a cloud file path at all (404
/// `NotFound`). The file path itself is checked later, after the caller and the
/// storage (a bad one → 400). A storage or app id that does not decode is kept as it
/// came: it names no storage (404) and is no JWT's `sub` (403).
fn split_path(path: &str) -> Option<(String, String, &str)> {
    let rest = path.strip_prefix(PREFIX)?.strip_prefix("clouds/")?;
    let (storage, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("files/apps/")?;
    let (app, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let decoded = |raw: &str| crate::common::percent_decode(raw).unwrap_or_else(|| raw.to_owned());
    Some((decoded(storage), decoded(app), tail))
}

/// The target of the path after the app id: empty (the app root), or `/` and segments.
fn target(tail: &str) -> Result<Target, ApiFailure> {
    if tail.is_empty() {
        return Ok(Target::AppRoot);
    }
    let inner = tail
        .strip_prefix('/')
        .ok_or_else(|| bad("the path must start with /"))?;
    if inner.is_empty() {
        return Ok(Target::Folder(Vec::new()));
    }
    let (body, folder) = match inner.strip_suffix('/') {
        Some(b) => (b, true),
        None => (inner, false),
    };
    let mut segments = body
        .split('/')
        .map(segment)
        .collect::<Result<Vec<_>, _>>()?;
    if folder {
        return Ok(Target::Folder(segments));
    }
    let name = segments.pop().unwrap_or_default();
    Ok(Target::File(segments, name))
}

// ---------------------------------------------------------------------------
// The calls.

/// Every request under `/cloud/v1/`: checks the caller (the storage JWT), the storage
/// (the caller application's, else 404 `StorageNotFound`), the app id of the path (the
/// JWT's `sub`, else 403 `InsufficientScope`) and the path, then lists (`GET` of a
/// folder), downloads (`GET` of a file), uploads (`POST` of a file) or deletes.
async fn cloud(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match handle(&shared, &method, &uri, &headers, body).await {
        Ok(r) => r,
        Err(f) => f.into_response(),
    }
}

async fn handle(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiFailure> {
    let Some((storage, app, tail)) = split_path(uri.path()) else {
        drain(body, DRAIN_LIMIT).await;
        return Err(ApiFailure::new(
            404,
            "NotFound",
            "The requested resource was not found",
        ));
    };
    if !matches!(*method, Method::GET | Method::POST | Method::DELETE) {
        drain(body, DRAIN_LIMIT).await;
        return Err(ApiFailure::new(
            405,
            "MethodNotAllowed",
            "The method is not allowed for the requested resource",
        ));
    }
    let checked = check_call(shared, headers, &storage, &app, tail);
    let (contract, target) = match checked {
        Ok(x) => x,
        Err(f) => {
            drain(body, DRAIN_LIMIT).await;
            return Err(f);
        }
    };
    let path = CloudPath { storage, target };
    match (method.clone(), &path.target) {
        (Method::GET, Target::Folder(_)) => list(shared, &contract, &path, uri.query()),
        (Method::GET, Target::File(..)) => download(shared, &path).await,
        (Method::GET, Target::AppRoot) => Err(bad("a folder (ending in /) or a file is required")),
        (Method::POST, Target::File(..)) => upload(shared, &contract, &path, headers, body).await,
        (Method::POST, _) => {
            drain(body, DRAIN_LIMIT).await;
            Err(bad(
                "an upload needs a file path (a folder and a file name)",
            ))
        }
        _ => delete(shared, &path).await,
    }
}

/// The caller, the storage, the app id, the path: the contract and the target.
fn check_call(
    shared: &Shared,
    headers: &HeaderMap,
    storage: &str,
    app: &str,
    tail: &str,
) -> Result<(RegisteredContract, Target), ApiFailure> {
    let contract = verify_storage_jwt(shared, headers)?;
    if shared
        .lock()
        .cloud
        .of_app(storage, &contract.app_id)
        .is_none()
    {
        return Err(storage_not_found(storage));
    }
    if app != contract.app_id {
        return Err(ApiFailure::insufficient_scope());
    }
    Ok((contract, target(tail)?))
}

/// A file's listing entry (also the answer of its upload).
fn entry(app_id: &str, f: &CloudFile) -> Value {
    json!({
        "id": f.id,
        "name": f.name,
        "originalName": f.name,
        "originalPath": format!("/apps/{app_id}{}", f.folder),
        "path": format!("/apps/{}{}", app_id.to_lowercase(), f.folder),
    })
}

/// `GET …{folder}?recursive=true|false` → 200 `{"files": [entry], "total"}`: the files
/// in the folder (and, recursive, in every folder under it), by folder then name.
fn list(
    shared: &Shared,
    contract: &RegisteredContract,
    path: &CloudPath,
    query: Option<&str>,
) -> Result<Response, ApiFailure> {
    let values: Vec<String> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(k, _)| k == "recursive")
        .map(|(_, v)| v.into_owned())
        .collect();
    let recursive = match values.as_slice() {
        [v] if v == "true" => true,
        [v] if v == "false" => false,
        _ => return Err(bad("recursive must be given once, true or false")),
    };
    let Target::Folder(segments) = &path.target else {
        return Err(internal_msg("not a folder"));
    };
    let folder = Target::folder_text(segments);
    let st = shared.lock();
    // Never deleted, but the control API's reset forgets every storage.
    let storage = st
        .cloud
        .storages
        .get(&path.storage)
        .ok_or_else(|| storage_not_found(&path.storage))?;
    let mut files: Vec<&CloudFile> = storage
        .files
        .values()
        .filter(|f| {
            if recursive {
                f.folder.starts_with(&folder)
            } else {
                f.folder == folder
            }
        })
        .collect();
    files.sort_by(|a, b| (&a.folder, &a.name).cmp(&(&b.folder, &b.name)));
    let list: Vec<Value> = files.iter().map(|f| entry(&contract.app_id, f)).collect();
    drop(st);
    let total = list.len();
    Ok(axum::Json(json!({"files": list, "total": total})).into_response())
}

/// Streams the body into `partial`, hashing it; `(size, sha256)` once it is synced. A
/// body that breaks off → 400, a disk failure → 500.
async fn write_blob(
    stream: &mut BodyDataStream,
    partial: &std::path::Path,
) -> Result<(u64, String), ApiFailure> {
    let mut file = tokio::fs::File::create(partial).await.map_err(internal)?;
    let mut hasher = sha2::Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| bad(&format!("the upload did not complete: {e}")))?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        file.write_all(&chunk).await.map_err(internal)?;
    }
    file.sync_all().await.map_err(internal)?;
    Ok((size, hex(&hasher.finalize())))
}

/// A body length that is an envelope's (≥ 288 and a multiple of 16).
fn envelope_len(len: u64) -> Result<(), ApiFailure> {
    if Format::Current.is_valid_len(len) {
        Ok(())
    } else {
        Err(bad(&format!(
            "the body ({len} bytes) is not an encrypted file: its length must be at least 288 and a multiple of 16"
        )))
    }
}

/// `POST …{folder}{name}`, `content-type: application/octet-stream`, the envelope as
/// the body (either framing, any size) → 201 with the file's entry. The body is
/// streamed to a partial file, synced, checked (its length), renamed into place, and
/// only then indexed (replacing a file of the same path, whose blob is then removed).
/// Any failure leaves nothing behind.
async fn upload(
    shared: &Shared,
    contract: &RegisteredContract,
    path: &CloudPath,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiFailure> {
    let refuse = |f: ApiFailure, body: Body| async move {
        drain(body, DRAIN_LIMIT).await;
        Err(f)
    };
    let Target::File(segments, name) = &path.target else {
        return refuse(internal_msg("not a file"), body).await;
    };
    if !crate::common::media_type_is(headers, "application/octet-stream") {
        return refuse(bad("content-type must be application/octet-stream"), body).await;
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared
        && let Err(f) = envelope_len(len)
    {
        return refuse(f, body).await;
    }
    let dir = match storage_dir(shared, &path.storage) {
        Ok(d) => d,
        Err(f) => return refuse(f, body).await,
    };
    if let Err(e) = tokio::fs::create_dir_all(&dir).await {
        return refuse(internal(e), body).await;
    }
    let id = random_id("file_");
    let partial = dir.join(format!("{id}.partial"));
    let blob = dir.join(&id);
    let mut stream = body.into_data_stream();
    let written = match write_blob(&mut stream, &partial).await {
        Ok((size, sha)) => match envelope_len(size) {
            Ok(()) => tokio::fs::rename(&partial, &blob)
                .await
                .map(|()| (size, sha))
                .map_err(internal),
            Err(f) => Err(f),
        },
        Err(f) => Err(f),
    };
    let (size, sha256) = match written {
        Ok(w) => w,
        Err(f) => {
            let _ = tokio::fs::remove_file(&partial).await;
            drain_stream(&mut stream, DRAIN_LIMIT).await;
            return Err(f);
        }
    };
    let folder = Target::folder_text(segments);
    let key = path.target.shown();
    let file = CloudFile {
        id,
        folder,
        name: name.clone(),
        size,
        sha256,
        created_ms: now_ms(),
    };
    let answer = entry(&contract.app_id, &file);
    let indexed = {
        let mut st = shared.lock();
        match st.cloud.storages.get_mut(&path.storage) {
            // Forgotten meanwhile (the control API's reset).
            None => Err(storage_not_found(&path.storage)),
            Some(s) => {
                let old = s.files.insert(key.clone(), file);
                match shared.save(&st) {
                    Ok(()) => Ok(old),
                    Err(e) => {
                        if let Some(s) = st.cloud.storages.get_mut(&path.storage) {
                            match old {
                                Some(old) => s.files.insert(key, old),
                                None => s.files.remove(&key),
                            };
                        }
                        Err(internal(e))
                    }
                }
            }
        }
    };
    match indexed {
        Ok(old) => {
            if let Some(old) = old {
                let _ = tokio::fs::remove_file(dir.join(&old.id)).await;
            }
            Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
        }
        Err(f) => {
            let _ = tokio::fs::remove_file(&blob).await;
            Err(f)
        }
    }
}

/// A file of the storage on disk, streamed in 64 KiB chunks with its length; `None`
/// when it is gone.
async fn file_body(blob: PathBuf) -> Result<Option<(u64, Body)>, ApiFailure> {
    let file = match tokio::fs::File::open(&blob).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(internal(e)),
    };
    let len = file.metadata().await.map_err(internal)?.len();
    let stream = futures_util::stream::unfold(Some(file), |state| async move {
        use tokio::io::AsyncReadExt;
        let mut file = state?;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok(Some((len, Body::from_stream(stream))))
}

/// 200 `application/octet-stream` with `content-length`, the bytes streamed.
fn octets(len: u64, body: Body) -> Response {
    let mut out = HeaderMap::new();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    (StatusCode::OK, out, body).into_response()
}

/// `GET …{path}` of a file → 200, the stored bytes; missing → 404 `FileNotFound`.
async fn download(shared: &Shared, path: &CloudPath) -> Result<Response, ApiFailure> {
    let key = path.target.shown();
    let file = shared
        .lock()
        .cloud
        .storages
        .get(&path.storage)
        .ok_or_else(|| storage_not_found(&path.storage))?
        .files
        .get(&key)
        .cloned()
        .ok_or_else(|| file_not_found(&key))?;
    let dir = storage_dir(shared, &path.storage)?;
    // Replaced or deleted since the index was read: the file is not there any more.
    let (len, body) = file_body(dir.join(&file.id))
        .await?
        .ok_or_else(|| file_not_found(&key))?;
    Ok(octets(len, body))
}

/// `DELETE …{path}`: a file, everything under a folder (a path ending in `/`), or
/// everything of the app (no path) → 200 `{"deleted": n}`; nothing there → 404
/// `FileNotFound`. The index is saved first, then the blobs are removed.
async fn delete(shared: &Shared, path: &CloudPath) -> Result<Response, ApiFailure> {
    let dir = storage_dir(shared, &path.storage)?;
    let gone: Vec<CloudFile> = {
        let mut st = shared.lock();
        let s = st
            .cloud
            .storages
            .get_mut(&path.storage)
            .ok_or_else(|| storage_not_found(&path.storage))?;
        let shown = path.target.shown();
        let keys: Vec<String> = s
            .files
            .iter()
            .filter(|(k, f)| path.target.covers(&shown, k, f))
            .map(|(k, _)| k.clone())
            .collect();
        if keys.is_empty() {
            return Err(file_not_found(&shown));
        }
        let removed: Vec<(String, CloudFile)> = keys
            .into_iter()
            .filter_map(|k| s.files.remove(&k).map(|f| (k, f)))
            .collect();
        if let Err(e) = shared.save(&st) {
            if let Some(s) = st.cloud.storages.get_mut(&path.storage) {
                s.files.extend(removed);
            }
            return Err(internal(e));
        }
        removed.into_iter().map(|(_, f)| f).collect()
    };
    for f in &gone {
        let _ = tokio::fs::remove_file(dir.join(&f.id)).await;
    }
    Ok(axum::Json(json!({"deleted": gone.len()})).into_response())
}

// ---------------------------------------------------------------------------
// Control API.

/// `GET /_sandbox/clouds` → `{"storages": [{"id", "appId", "kid", "userId", "created",
/// "files", "bytes"}]}`.
async fn control_storages(State(shared): State<Shared>) -> Response {
    let st = shared.lock();
    let list: Vec<Value> = st
        .cloud
        .storages
        .values()
        .map(|s| {
            // The user whose storage it is now (not one who had it before).
            let user = s
                .user_id
                .as_deref()
                .filter(|u| st.cloud.of_user(u, &s.app_id).is_some_and(|m| m.id == s.id));
            json!({
                "id": s.id, "appId": s.app_id, "kid": s.kid, "userId": user,
                "created": s.created_ms, "files": s.files.len(),
                "bytes": s.files.values().map(|f| f.size).sum::<u64>(),
            })
        })
        .collect();
    axum::Json(json!({ "storages": list })).into_response()
}

/// `GET /_sandbox/clouds/{storageId}/files` → `{"files": [{"path", "folder", "name",
/// "id", "size", "sha256", "created"}]}` (`path` under the app folder, `sha256` of the
/// stored bytes); with `?path=/folder/name` → those stored bytes, as they are.
async fn control_files(
    State(shared): State<Shared>,
    Path(storage): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiFailure> {
    let not_found = |what: &str| ApiFailure::new(404, "NotFound", format!("No such {what}"));
    let s = shared
        .lock()
        .cloud
        .storages
        .get(&storage)
        .cloned()
        .ok_or_else(|| not_found("storage"))?;
    let wanted = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "path")
        .map(|(_, v)| v.into_owned());
    let Some(wanted) = wanted else {
        let files: Vec<Value> = s
            .files
            .iter()
            .map(|(k, f)| {
                json!({"path": k, "folder": f.folder, "name": f.name, "id": f.id,
                       "size": f.size, "sha256": f.sha256, "created": f.created_ms})
            })
            .collect();
        return Ok(axum::Json(json!({ "files": files })).into_response());
    };
    let f = s.files.get(&wanted).ok_or_else(|| not_found("file"))?;
    let dir = storage_dir(&shared, &storage)?;
    let (len, body) = file_body(dir.join(&f.id))
        .await?
        .ok_or_else(|| not_found("file"))?;
    Ok(octets(len, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn paths_are_taken_apart() {
        let (s, a, t) = split_path("/cloud/v1/clouds/stg_1/files/apps/My-App/a/b.json").unwrap();
        assert_eq!(
            (s.as_str(), a.as_str(), t),
            ("stg_1", "My-App", "/a/b.json")
        );
        let (_, a, t) = split_path("/cloud/v1/clouds/stg_1/files/apps/My-App").unwrap();
        assert_eq!((a.as_str(), t), ("My-App", ""));
        assert!(split_path("/cloud/v1/clouds/stg_1/files/x").is_none());
        assert!(split_path("/cloud/v1/other").is_none());
        assert_eq!(target("").unwrap(), Target::AppRoot);
        assert_eq!(target("/").unwrap(), Target::Folder(vec![]));
        assert_eq!(target("/a/b/").unwrap(), Target::Folder(seg(&["a", "b"])));
        assert_eq!(
            target("/a/b%20c.json").map_err(|f| f.code),
            Err("ValidationErrors")
        );
        assert_eq!(
            target("/a/x%2Ey").unwrap(),
            Target::File(seg(&["a"]), "x.y".into())
        );
        for bad in [
            "//", "/a//b", "/../x", "/./x", "/a/%2F", "/a/%zz", "/a/%0a", "/a/ x", "x",
        ] {
            assert!(target(bad).is_err(), "{bad}");
        }
        assert!(target(&format!("/{}", "a".repeat(256))).is_err());
        assert!(target(&format!("/{}", "a".repeat(255))).is_ok());
    }

    #[test]
    fn folders_are_written_with_both_slashes() {
        assert_eq!(Target::folder_text(&[]), "/");
        assert_eq!(Target::folder_text(&seg(&["a", "b"])), "/a/b/");
    }
}
