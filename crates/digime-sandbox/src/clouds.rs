//! The storages and their files, as the state keeps them (a leaf: the storage calls of
//! the API base, the cloud base, the `reference` call and the `authorize` page all use
//! it). A storage belongs to one application; it is provisional until it is linked to
//! a user (the `authorize` page's `storageRef`) or made for one (`GET storage`). Its
//! files' bytes live in `{state dir}/cloud/{storageId}/{fileId}`, one blob per file,
//! named by the sandbox; their index (path, name, size, hash) is in the state, so no
//! request path ever becomes a path on disk.

use crate::Shared;
use crate::checks::ApiFailure;
use crate::common::safe_name;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Every storage, and which one is each user's for each application.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Clouds {
    /// storage id → storage
    #[serde(default)]
    pub storages: BTreeMap<String, StorageRecord>,
    /// user → application → the user's storage for it
    #[serde(default)]
    pub users: HashMap<String, BTreeMap<String, String>>,
}

/// A storage of one application.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StorageRecord {
    pub id: String,
    /// The application that owns it (its files are under `apps/{appId}`).
    pub app_id: String,
    /// `{contractId}_{applicationId}_0` of the contract that made it.
    pub kid: String,
    pub created_ms: u64,
    /// The user it was linked to or made for; `None` while provisional. Kept when the
    /// user is deleted, so that a storage of a deleted user is never linked to another.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Its files, by path under the app folder (`/folder/name`).
    #[serde(default)]
    pub files: BTreeMap<String, CloudFile>,
}

/// One stored file: where it is under the app folder, and its blob.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CloudFile {
    /// The blob's name (a new one on every upload).
    pub id: String,
    /// Its folder, with a leading and a trailing `/` (`/` = the app folder itself).
    pub folder: String,
    pub name: String,
    /// Bytes stored (the envelope, as uploaded).
    pub size: u64,
    /// SHA-256 of the stored bytes, hex.
    pub sha256: String,
    /// When it was uploaded, Unix ms.
    pub created_ms: u64,
}

/// The S-JWT `kid` of a contract: `{contractId}_{applicationId}_0`.
pub(crate) fn storage_kid(contract_id: &str, app_id: &str) -> String {
    format!("{contract_id}_{app_id}_0")
}

/// An unknown storage, or one of another application.
pub(crate) fn storage_not_found(id: &str) -> ApiFailure {
    ApiFailure::new(
        404,
        "StorageNotFound",
        format!("The storage ({id}) was not found"),
    )
}

impl Clouds {
    /// The storage `id` if it is the application's.
    pub(crate) fn of_app(&self, id: &str, app_id: &str) -> Option<&StorageRecord> {
        self.storages.get(id).filter(|s| s.app_id == app_id)
    }

    /// The storage `id` if `user` may have it as theirs for `app_id`: the application's,
    /// and provisional or already that user's. `user` is `None` for a user not made yet.
    pub(crate) fn linkable(
        &self,
        id: &str,
        app_id: &str,
        user: Option<&str>,
    ) -> Option<&StorageRecord> {
        self.of_app(id, app_id)
            .filter(|s| s.user_id.is_none() || s.user_id.as_deref() == user)
    }

    /// Makes storage `id` the user's for its application (it stays the application's;
    /// a storage the user had before for it is kept, no longer theirs).
    pub(crate) fn link(&mut self, id: &str, user: &str) {
        if let Some(s) = self.storages.get_mut(id) {
            s.user_id = Some(user.to_owned());
            self.users
                .entry(user.to_owned())
                .or_default()
                .insert(s.app_id.clone(), id.to_owned());
        }
    }

    /// The user's storage for `app_id`, if there is one.
    pub(crate) fn of_user(&self, user: &str, app_id: &str) -> Option<&StorageRecord> {
        let id = self.users.get(user)?.get(app_id)?;
        self.storages.get(id)
    }

    /// A deleted user: they have no storage any more. The storages stay the
    /// applications' (with their files), marked as that user's, so never linked again.
    pub(crate) fn forget_user(&mut self, user: &str) {
        self.users.remove(user);
    }
}

/// Where every storage's blobs live.
pub(crate) fn cloud_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("cloud")
}

/// Where the blobs of storage `id` live. Storage ids are made by the sandbox; one that
/// is no folder name could only come from an edited state file → 500.
pub(crate) fn storage_dir(shared: &Shared, id: &str) -> Result<PathBuf, ApiFailure> {
    if !safe_name(id) {
        return Err(crate::common::internal_msg(
            "the storage id is not a folder name",
        ));
    }
    Ok(cloud_dir(&shared.dir).join(id))
}

/// At start: removes what an interrupted upload or deletion left behind, i.e. every
/// blob the index does not name (partial files too) and the folders of storages the
/// state does not have. Best effort.
pub(crate) fn sweep(state_dir: &Path, clouds: &Clouds) {
    let Ok(dirs) = std::fs::read_dir(cloud_dir(state_dir)) else {
        return;
    };
    for dir in dirs.flatten() {
        let name = dir.file_name().to_string_lossy().into_owned();
        let Some(storage) = clouds.storages.get(&name) else {
            let _ = std::fs::remove_dir_all(dir.path());
            continue;
        };
        let Ok(blobs) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        let named: HashSet<&str> = storage.files.values().map(|f| f.id.as_str()).collect();
        for blob in blobs.flatten() {
            let blob_name = blob.file_name().to_string_lossy().into_owned();
            if !named.contains(blob_name.as_str()) {
                let _ = std::fs::remove_file(blob.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(id: &str, app: &str, user: Option<&str>) -> StorageRecord {
        StorageRecord {
            id: id.into(),
            app_id: app.into(),
            kid: storage_kid("c", app),
            created_ms: 0,
            user_id: user.map(str::to_owned),
            files: BTreeMap::new(),
        }
    }

    #[test]
    fn a_storage_is_linked_to_one_user_of_its_application() {
        let mut c = Clouds::default();
        c.storages.insert("s1".into(), storage("s1", "app", None));
        c.storages
            .insert("s2".into(), storage("s2", "app", Some("u2")));
        assert!(c.linkable("s1", "app", None).is_some());
        assert!(c.linkable("s1", "other", None).is_none());
        assert!(c.linkable("s2", "app", Some("u2")).is_some());
        assert!(c.linkable("s2", "app", Some("u1")).is_none());
        assert!(c.linkable("s2", "app", None).is_none());
        c.link("s1", "u1");
        assert_eq!(c.of_user("u1", "app").map(|s| s.id.as_str()), Some("s1"));
        assert!(c.linkable("s1", "app", Some("u3")).is_none());
        c.forget_user("u1");
        assert!(c.of_user("u1", "app").is_none());
        assert!(c.storages.contains_key("s1"));
    }
}
