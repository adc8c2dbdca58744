//! `{cloud}clouds/{storageId}/files/apps/{applicationId}{path}` (`docs/protocol.md`,
//! "Storage"): list a folder (GET `?recursive=`), upload a file (POST, encrypted as it
//! streams), download one (GET, decrypted as it streams) and delete files (DELETE),
//! each signed with a fresh storage JWT ([`super::storage_jwt`]).

use super::storage_jwt;
use crate::call::{ClientCall, ClientOperation};
use crate::config::{Config, Contract, FileFormat, StorageId};
use crate::error::Error;
use crate::file::FileDecoder;
use crate::read::{Compression, StreamResponse, decode_json, encode_path_segment, path_segment};
use crate::retry::RetryPolicy;
use crate::sdk::Sdk;
use crate::stream::Streamed;
use crate::upload::{TransformEncoder, Upload, UploadTransform};
use crate::wire::{self, Body};
use digime_crypto::PublicKey;
use digime_crypto::envelope::{self, Encryptor, Format};
use http::{HeaderValue, Method, Request, Response, header};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::SystemTime;

/// Checks the segments of a cloud path: each one not empty, not `.` or `..`, and
/// without whitespace or control characters (the service forbids spaces).
fn check_segments(path: &str, what: &str) -> Result<(), Error> {
    let inner = path.trim_start_matches('/');
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    if inner.is_empty() {
        return Ok(());
    }
    for segment in inner.split('/') {
        let bad = segment.is_empty()
            || segment == "."
            || segment == ".."
            || segment.chars().any(|c| c.is_whitespace() || c.is_control());
        if bad {
            return Err(Error::InvalidInput(format!(
                "storage {what} {path:?}: segment {segment:?} is empty, a dot path, or has whitespace"
            )));
        }
    }
    Ok(())
}

/// A folder as the cloud wants it: one leading and one trailing slash (`"a/b"` →
/// `/a/b/`, `""` → `/`).
pub fn folder_path(folder: &str) -> Result<String, Error> {
    if folder.starts_with("//") {
        return Err(Error::InvalidInput(format!("storage folder {folder:?}")));
    }
    check_segments(folder, "folder")?;
    let inner = folder.trim_matches('/');
    Ok(if inner.is_empty() {
        "/".into()
    } else {
        format!("/{inner}/")
    })
}

/// A file's path: a leading slash added, naming a file (not a folder).
pub fn file_path(path: &str) -> Result<String, Error> {
    if path.is_empty() || path.ends_with('/') {
        return Err(Error::InvalidInput(format!(
            "storage path {path:?} does not name a file"
        )));
    }
    check_segments(path, "path")?;
    Ok(if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    })
}

/// `{cloud}clouds/{storage}/files/apps/{app}{path}`, each segment percent-encoded.
fn file_url(config: &Config, storage: &StorageId, path: &str) -> Result<String, Error> {
    // The path's segments were checked by `folder_path` or `file_path`.
    let encoded: Vec<String> = path.split('/').map(encode_path_segment).collect();
    Ok(format!(
        "{}clouds/{}/files/apps/{}{}",
        config.cloud_base_url(),
        path_segment(storage.as_str(), "storage id")?,
        path_segment(config.application_id().as_str(), "application id")?,
        encoded.join("/")
    ))
}

fn cloud_request(
    sdk: &Sdk,
    contract: &Contract,
    now: SystemTime,
    method: Method,
    url: &str,
    body: Body,
) -> Result<Request<Body>, Error> {
    let jwt = storage_jwt(sdk.config(), contract, now)?;
    wire::request(method, url, Some(&jwt), body)
}

// ---------------------------------------------------------------------------------
// List.

/// A file in a storage, as listed: `path` (the folder, from the app's root, e.g.
/// `/invoices/2024/`) plus `name` is the file's path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageFile {
    /// The file id.
    pub id: String,
    /// The file name.
    pub name: String,
    /// The name it was uploaded with.
    pub original_name: String,
    /// The folder it was uploaded to (the app id's case kept), from the app's root.
    pub original_path: String,
    /// The folder, from the app's root.
    pub path: String,
    /// Anything else the service sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A folder's listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageFileList {
    /// The files.
    pub files: Vec<StorageFile>,
    /// How many there are.
    pub total: u64,
}

/// GET `…{folder}?recursive=` (a [`ClientOperation`]): the files of a folder, and of
/// its subfolders with `recursive`.
#[derive(Debug, Clone)]
pub struct ListStorageFiles {
    app: String,
    storage: StorageId,
    folder: String,
    recursive: bool,
}

impl ListStorageFiles {
    /// Lists `folder` (normalised by [`folder_path`]) of `storage`, for the
    /// application of `config`.
    pub fn new(
        config: &Config,
        storage: StorageId,
        folder: &str,
        recursive: bool,
    ) -> Result<Self, Error> {
        Ok(ListStorageFiles {
            app: config.application_id().as_str().to_owned(),
            storage,
            folder: folder_path(folder)?,
            recursive,
        })
    }
}

impl ClientOperation for ListStorageFiles {
    type Output = StorageFileList;

    fn method(&self) -> Method {
        Method::GET
    }

    fn build(
        &self,
        sdk: &Sdk,
        contract: &Contract,
        now: SystemTime,
    ) -> Result<Request<Body>, Error> {
        let url = format!(
            "{}?recursive={}",
            file_url(sdk.config(), &self.storage, &self.folder)?,
            self.recursive
        );
        let req = cloud_request(sdk, contract, now, Method::GET, &url, Body::Empty)?;
        Ok(wire::accept_json(req))
    }

    fn parse(&self, response: Response<Vec<u8>>) -> Result<StorageFileList, Error> {
        let list = decode_json(response.body(), "list storage files")?;
        Ok(relative_paths(&self.app, list))
    }
}

/// Strips `/apps/{applicationId}` off the paths of a listing, as the official SDK
/// does: `originalPath` has the app id's case, `path` has it lower-cased.
fn relative_paths(app: &str, mut list: StorageFileList) -> StorageFileList {
    let original = format!("/apps/{app}");
    let lower = format!("/apps/{}", app.to_lowercase());
    for f in &mut list.files {
        if let Some(rest) = f.original_path.strip_prefix(&original) {
            f.original_path = rest.to_owned();
        }
        if let Some(rest) = f.path.strip_prefix(&lower) {
            f.path = rest.to_owned();
        }
    }
    list
}

// ---------------------------------------------------------------------------------
// Upload.

/// The caller's bytes in the file envelope, encrypted to `key` as they stream (an
/// [`UploadTransform`]).
#[derive(Debug, Clone)]
pub struct EnvelopeUpload {
    key: PublicKey,
}

impl EnvelopeUpload {
    /// Encrypts to `key`.
    pub fn new(key: PublicKey) -> Self {
        EnvelopeUpload { key }
    }
}

struct EnvelopeEncoder(Encryptor);

impl TransformEncoder for EnvelopeEncoder {
    fn encode(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        Ok(self.0.update(chunk, out)?)
    }
    fn finish(self: Box<Self>, out: &mut Vec<u8>) -> Result<(), Error> {
        Ok(self.0.finish(out)?)
    }
}

impl UploadTransform for EnvelopeUpload {
    fn body_len(&self, source_len: u64) -> u64 {
        envelope::encrypted_len(source_len, Format::Current)
    }
    fn encoder(&self) -> Result<Box<dyn TransformEncoder>, Error> {
        Ok(Box::new(EnvelopeEncoder(Encryptor::new(
            &self.key,
            Format::Current,
        )?)))
    }
    fn describe(&self) -> String {
        "file envelope".into()
    }
}

/// POST `…{folder}{fileName}` (a [`ClientOperation`]): the caller's upload, encrypted
/// to the contract's own public key as it streams ([`EnvelopeUpload`]); the same path
/// again replaces the file. Never retried (a POST).
#[derive(Debug, Clone)]
pub struct UploadStorageFile {
    storage: StorageId,
    path: String,
}

impl UploadStorageFile {
    /// Uploads `file_name` into `folder` (normalised by [`folder_path`]) of `storage`.
    pub fn new(storage: StorageId, folder: &str, file_name: &str) -> Result<Self, Error> {
        if file_name.contains('/') {
            return Err(Error::InvalidInput(format!(
                "storage file name {file_name:?} has a slash"
            )));
        }
        let path = file_path(&format!("{}{file_name}", folder_path(folder)?))?;
        Ok(UploadStorageFile { storage, path })
    }

    /// The file's path in the storage, from the app's root.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl ClientOperation for UploadStorageFile {
    type Output = ();

    fn method(&self) -> Method {
        Method::POST
    }

    fn retry_policy(&self, sdk: &Sdk) -> RetryPolicy {
        sdk.config().retry.unprocessed_only()
    }

    fn build(
        &self,
        sdk: &Sdk,
        contract: &Contract,
        now: SystemTime,
    ) -> Result<Request<Body>, Error> {
        let url = file_url(sdk.config(), &self.storage, &self.path)?;
        let upload = Upload::transformed(EnvelopeUpload::new(contract.key().public_key()));
        let mut req = cloud_request(sdk, contract, now, Method::POST, &url, Body::Upload(upload))?;
        req.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        Ok(wire::accept_json(req))
    }

    fn parse(&self, response: Response<Vec<u8>>) -> Result<(), Error> {
        wire::json_or_empty(response.body(), "upload storage file")
    }
}

// ---------------------------------------------------------------------------------
// Download.

/// The GET of a storage download (a [`ClientOperation`] whose 2xx body the driver
/// streams). Never retried, as the official SDK never retries it.
#[derive(Debug, Clone)]
pub struct StorageDownload {
    storage: StorageId,
    path: String,
}

impl ClientOperation for StorageDownload {
    type Output = ();

    fn method(&self) -> Method {
        Method::GET
    }

    fn retry_policy(&self, sdk: &Sdk) -> RetryPolicy {
        sdk.config().retry.unprocessed_only()
    }

    fn build(
        &self,
        sdk: &Sdk,
        contract: &Contract,
        now: SystemTime,
    ) -> Result<Request<Body>, Error> {
        let url = file_url(sdk.config(), &self.storage, &self.path)?;
        let mut req = cloud_request(sdk, contract, now, Method::GET, &url, Body::Empty)?;
        req.headers_mut().insert(
            header::ACCEPT,
            HeaderValue::from_static("application/octet-stream"),
        );
        req.extensions_mut().insert(StreamResponse);
        Ok(req)
    }

    fn parse(&self, _: Response<Vec<u8>>) -> Result<(), Error> {
        Ok(())
    }
}

/// Downloads a storage file and decrypts it with the contract's key as it streams
/// (`GET …{path}`). Unlike the official SDK, the status is checked before the body
/// is decrypted: a 404 is [`Error::Api`], never an empty file. Output only counts once
/// the flow is `Done(Ok)`: the envelope has no MAC.
pub type DownloadStorageFile = Streamed<ClientCall<StorageDownload>, FileDecoder>;

/// The flow of [`DownloadStorageFile`] for `path` (checked by [`file_path`]).
pub(crate) fn download(
    sdk: Sdk,
    contract: Contract,
    storage: StorageId,
    path: &str,
) -> Result<DownloadStorageFile, Error> {
    let path = file_path(path)?;
    let decoder = FileDecoder::new(contract.key(), FileFormat::Current, &Compression::None);
    let request = ClientCall::new(sdk, contract, StorageDownload { storage, path });
    Ok(Streamed::new(request, decoder))
}

// ---------------------------------------------------------------------------------
// Delete.

/// DELETE `…{path}` (a [`ClientOperation`]): a file path deletes that file, a folder
/// path (ending in `/`) everything in it, `/` everything of the application. Any 2xx
/// answer is success. Never retried (chosen, as for the user's deletions: a retry
/// after a lost answer would find nothing there and report a 404).
#[derive(Debug, Clone)]
pub struct DeleteStorageFiles {
    storage: StorageId,
    path: String,
}

impl DeleteStorageFiles {
    /// Deletes `path` of `storage`: a file (`/a/x.json`), a folder (`/a/`) or the
    /// application's root (`/`). A leading slash is added when missing.
    pub fn new(storage: StorageId, path: &str) -> Result<Self, Error> {
        if path.is_empty() {
            return Err(Error::InvalidInput(
                "storage path cannot be empty (use \"/\" for everything)".into(),
            ));
        }
        let path = if path.ends_with('/') {
            folder_path(path)?
        } else {
            file_path(path)?
        };
        Ok(DeleteStorageFiles { storage, path })
    }
}

impl ClientOperation for DeleteStorageFiles {
    type Output = ();

    fn method(&self) -> Method {
        Method::DELETE
    }

    fn retry_policy(&self, sdk: &Sdk) -> RetryPolicy {
        sdk.config().retry.unprocessed_only()
    }

    fn build(
        &self,
        sdk: &Sdk,
        contract: &Contract,
        now: SystemTime,
    ) -> Result<Request<Body>, Error> {
        let url = file_url(sdk.config(), &self.storage, &self.path)?;
        cloud_request(sdk, contract, now, Method::DELETE, &url, Body::Empty)
    }

    fn parse(&self, _: Response<Vec<u8>>) -> Result<(), Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_and_paths_are_normalised_and_checked() {
        assert_eq!(folder_path("").unwrap(), "/");
        assert_eq!(folder_path("/").unwrap(), "/");
        assert_eq!(folder_path("folder").unwrap(), "/folder/");
        assert_eq!(folder_path("/a/b").unwrap(), "/a/b/");
        assert_eq!(file_path("a/x.json").unwrap(), "/a/x.json");
        for bad in ["a//b", "//a", "a/../b", "a b", "./a", "a/\n"] {
            assert!(folder_path(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "/a/", "a/../x", "x y.json"] {
            assert!(file_path(bad).is_err(), "{bad:?}");
        }
        let storage = StorageId::new("st 1").unwrap();
        let up = UploadStorageFile::new(storage.clone(), "/folder/sub", "x.json").unwrap();
        assert_eq!(up.path(), "/folder/sub/x.json");
        assert!(UploadStorageFile::new(storage.clone(), "/", "a/b").is_err());
        assert!(DeleteStorageFiles::new(storage.clone(), "").is_err());
        assert_eq!(
            DeleteStorageFiles::new(storage.clone(), "/").unwrap().path,
            "/"
        );
        assert_eq!(DeleteStorageFiles::new(storage, "a/").unwrap().path, "/a/");
    }

    #[test]
    fn urls_are_on_the_cloud_base_and_encoded() {
        let config = Config::new("My-App").unwrap();
        let storage = StorageId::new("st 1").unwrap();
        assert_eq!(
            file_url(&config, &storage, "/in voices/x.json").unwrap(),
            "https://cloud.digi.me/v1/clouds/st%201/files/apps/My-App/in%20voices/x.json"
        );
    }

    #[test]
    fn listings_are_made_relative_to_the_app() {
        let list: StorageFileList = serde_json::from_str(
            r#"{"files":[{"id":"f-01","name":"report.pdf","originalName":"report.pdf",
               "originalPath":"/apps/MyApp-ID/invoices/2024/","path":"/apps/myapp-id/invoices/2024/",
               "size":3}],"total":1}"#,
        )
        .unwrap();
        let list = relative_paths("MyApp-ID", list);
        assert_eq!(list.files[0].original_path, "/invoices/2024/");
        assert_eq!(list.files[0].path, "/invoices/2024/");
        assert_eq!(list.files[0].extra["size"], 3);
        assert!(
            serde_json::from_str::<StorageFileList>(r#"{"files":[{"id":"x"}],"total":1}"#).is_err()
        );
    }
}
