//! A user's library as a contract sees it, and taking things out of it.
//!
//! * The account set: a user has the default accounts of the catalogue (computed, not
//!   stored) until they onboard or delete one; from then on the whole set is saved
//!   (`Persisted::accounts`), each account with the time it was added.
//! * Withdrawn permissions: a contract the user revoked an account from no longer sees
//!   that account, its mapped files, nor the pushed files whose descriptor names it.
//! * Deletions move files out of the library before the state change is saved, so that
//!   a disk failure leaves everything as it was (see [`move_out`]).

use crate::demo::{DemoLibrary, default_accounts};
use crate::state::{AccountRecord, LibraryFile, Persisted};
use crate::{Shared, random_id};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// The accounts of `user_id` (every contract's view), in the order they were added.
/// Empty for an unknown user.
pub(crate) fn account_set(shared: &Shared, st: &Persisted, user_id: &str) -> Vec<AccountRecord> {
    if let Some(set) = st.accounts.get(user_id) {
        return set.clone();
    }
    st.users.get(user_id).map_or_else(Vec::new, |u| {
        default_accounts(&u.id, u.created, shared.config.demo_data)
    })
}

/// The saved account set of `user_id`, made from the default one on first use;
/// `None` for an unknown user.
pub(crate) fn account_set_mut<'a>(
    shared: &Shared,
    st: &'a mut Persisted,
    user_id: &str,
) -> Option<&'a mut Vec<AccountRecord>> {
    if !st.accounts.contains_key(user_id) {
        let user = st.users.get(user_id)?;
        let defaults = default_accounts(&user.id, user.created, shared.config.demo_data);
        st.accounts.insert(user_id.to_owned(), defaults);
    }
    st.accounts.get_mut(user_id)
}

/// The accounts `client_id` lost permission to, if any.
pub(crate) fn revoked_for<'a>(
    st: &'a Persisted,
    user_id: &str,
    client_id: &str,
) -> Option<&'a BTreeSet<String>> {
    st.revoked
        .get(user_id)
        .and_then(|by_client| by_client.get(client_id))
        .filter(|revoked| !revoked.is_empty())
}

/// The accounts of `user_id` that `client_id` sees (every account with `None`).
pub(crate) fn visible_accounts(
    shared: &Shared,
    st: &Persisted,
    user_id: &str,
    client_id: Option<&str>,
) -> Vec<AccountRecord> {
    let mut set = account_set(shared, st, user_id);
    if let Some(client) = client_id
        && let Some(revoked) = revoked_for(st, user_id, client)
    {
        set.retain(|a| !revoked.contains(&a.id));
    }
    set
}

/// The library of `user_id` as `client_id` sees it (all of it with `None`); `None` for
/// an unknown user.
pub(crate) fn library_for(
    shared: &Shared,
    st: &Persisted,
    user_id: &str,
    client_id: Option<&str>,
) -> Option<DemoLibrary> {
    let user = st.users.get(user_id)?;
    let accounts = visible_accounts(shared, st, user_id, client_id);
    Some(DemoLibrary::of(
        &user.id,
        user.created,
        shared.config.demo_data,
        &accounts,
    ))
}

/// The account ids a file descriptor names (`accounts[].accountId`).
pub(crate) fn named_accounts(descriptor: &Value) -> Vec<&str> {
    descriptor
        .get("accounts")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.get("accountId").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a pushed file is hidden from `client_id`: its descriptor names an account
/// the user withdrew from that client.
pub(crate) fn hidden_from(st: &Persisted, file: &LibraryFile, client_id: &str) -> bool {
    // A lookup, no copy: this runs for every stored file of every list and download.
    revoked_for(st, &file.user_id, client_id).is_some_and(|revoked| {
        named_accounts(&file.descriptor)
            .iter()
            .any(|a| revoked.contains(*a))
    })
}

/// Where files removed from the library wait to be deleted: `{state dir}/trash`, on
/// the same file system as the library (a move is a rename). Emptied at start.
pub(crate) fn trash_dir(shared: &Shared) -> PathBuf {
    shared.dir.join("trash")
}

/// Files and directories moved out of the library by [`move_out`].
#[must_use = "restore the files or purge them"]
pub(crate) struct Moved(Vec<(PathBuf, PathBuf)>);

/// Moves `paths` (files or directories of the library; missing ones are skipped) into
/// the trash, all or none: if one move fails, those already made are undone and the
/// error is returned. Nothing is deleted yet: after the state change is saved the
/// caller [purges](Moved::purge) them; if the save fails it [restores](Moved::restore)
/// them.
pub(crate) fn move_out(shared: &Shared, paths: &[PathBuf]) -> std::io::Result<Moved> {
    let mut moved = Moved(Vec::new());
    let present: Vec<&PathBuf> = paths.iter().filter(|p| p.exists()).collect();
    if present.is_empty() {
        return Ok(moved);
    }
    let trash = trash_dir(shared);
    let made = std::fs::create_dir_all(&trash);
    for path in present {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let to = trash.join(format!("{name}-{}", random_id("")));
        let step = match &made {
            Ok(()) => std::fs::rename(path, &to),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        };
        if let Err(e) = step {
            moved.restore();
            return Err(e);
        }
        moved.0.push((path.clone(), to));
    }
    Ok(moved)
}

impl Moved {
    /// Puts everything back where it was (best effort: the moves were renames within
    /// one file system).
    pub(crate) fn restore(self) {
        for (from, to) in self.0.into_iter().rev() {
            let _ = std::fs::rename(&to, &from);
        }
    }

    /// Deletes what was moved. A failure leaves it in the trash, outside every
    /// library, until the next start empties the trash.
    pub(crate) async fn purge(self) {
        for (_, to) in self.0 {
            let gone = match tokio::fs::symlink_metadata(&to).await {
                Ok(m) if m.is_dir() => tokio::fs::remove_dir_all(&to).await,
                Ok(_) => tokio::fs::remove_file(&to).await,
                Err(e) => Err(e),
            };
            drop(gone);
        }
    }
}
