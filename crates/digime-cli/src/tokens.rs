//! Token files: the SDK's token JSON, written atomically with mode 0600, and written
//! back whenever a call refreshes the token (a refresh spends the old refresh token,
//! so a refreshed token that is not kept is a user who must authorize again).

use crate::exit::Failure;
use digime_protocol::UserAccessToken;
use digime_protocol::flow::Authed;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Writes `bytes` to `path` atomically (a temporary file in the same folder, synced,
/// then renamed over it), readable and writable by the owner alone on Unix.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or(std::io::ErrorKind::InvalidInput)?;
    let temp = dir.join(format!(
        ".{}.{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&temp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            Err(e)
        }
    }
}

/// Writes a token file.
pub fn write(path: &Path, token: &UserAccessToken) -> Result<(), Failure> {
    let json = serde_json::to_vec_pretty(token).map_err(|e| Failure::local(e.to_string()))?;
    write_private(path, &json)
        .map_err(|e| Failure::local(format!("token file {}: {e}", path.display())))
}

/// What `token show` tells: the user and the expiries, never a token.
pub fn describe(token: &UserAccessToken) -> serde_json::Value {
    json!({
        "user": token.user_id(),
        "accessTokenExpiry": token.access_token.expiry,
        "refreshTokenExpiry": token.refresh_token.expiry,
    })
}

struct Shared {
    path: PathBuf,
    token: Mutex<UserAccessToken>,
    /// The first refreshed token that could not be written.
    lost: Mutex<Option<String>>,
}

/// A token file in use by a command: the newest token, kept on disk as it changes.
#[derive(Clone)]
pub struct TokenFile(Arc<Shared>);

impl TokenFile {
    /// Reads a token file.
    pub fn open(path: &Path) -> Result<TokenFile, Failure> {
        let text = std::fs::read(path)
            .map_err(|e| Failure::input(format!("token file {}: {e}", path.display())))?;
        let token: UserAccessToken = serde_json::from_slice(&text).map_err(|e| {
            // Only where: serde_json's message may quote a value, and values are secrets.
            Failure::input(format!(
                "token file {}: not a digi.me token (line {}, column {})",
                path.display(),
                e.line(),
                e.column()
            ))
        })?;
        Ok(TokenFile(Arc::new(Shared {
            path: path.to_owned(),
            token: Mutex::new(token),
            lost: Mutex::new(None),
        })))
    }

    /// The newest token.
    pub fn get(&self) -> UserAccessToken {
        (self.0.token.lock().unwrap_or_else(PoisonError::into_inner)).clone()
    }

    /// Takes a refreshed token: kept in memory and written to the file.
    ///
    /// The client's listener and the call's answer both carry a refreshed token: it is
    /// written once, by whichever comes first.
    pub fn set(&self, token: UserAccessToken) {
        let mut held = self.0.token.lock().unwrap_or_else(PoisonError::into_inner);
        if *held == token {
            return;
        }
        let written = write(&self.0.path, &token);
        *held = token;
        drop(held);
        if let Err(e) = written {
            let mut lost = self.0.lost.lock().unwrap_or_else(PoisonError::into_inner);
            lost.get_or_insert(format!("{e:?}"));
        }
    }

    /// Writes `token` now, failing if it cannot be.
    pub fn store(&self, token: &UserAccessToken) -> Result<(), Failure> {
        write(&self.0.path, token)?;
        *self.0.token.lock().unwrap_or_else(PoisonError::into_inner) = token.clone();
        Ok(())
    }

    /// A listener for `Client::on_token_refreshed`.
    pub fn listener(&self) -> impl Fn(&UserAccessToken) + Send + Sync + 'static {
        let me = self.clone();
        move |t: &UserAccessToken| me.set(t.clone())
    }

    /// The value of a call's answer, keeping a refreshed token the answer carries
    /// (the client's listener has written it already, so it is not written again).
    pub fn spend<T>(
        &self,
        answer: Result<Authed<T>, digime_protocol::Error>,
    ) -> Result<T, Failure> {
        match answer {
            Ok(a) => {
                if let Some(t) = a.refreshed_token {
                    self.set(t);
                }
                Ok(a.value)
            }
            Err(e) => {
                if let Some(t) = e.refreshed_token() {
                    self.set(t.clone());
                }
                self.finish()?;
                Err(e.into())
            }
        }
    }

    /// Fails if a refreshed token could not be written.
    pub fn finish(&self) -> Result<(), Failure> {
        match &*self.0.lost.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(e) => Err(Failure::local(format!(
                "a refreshed token could not be written to {} ({e}); the old one is spent: authorize again",
                self.0.path.display()
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_file_is_written_whole_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Nothing else is left in the folder.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A token file that is not a token says where, never what it holds.
        let secret = dir.path().join("bad.json");
        std::fs::write(&secret, r#"{"accessToken": "at_SECRETSECRETSECRET"}"#).unwrap();
        let e = TokenFile::open(&secret).err().unwrap();
        assert!(!format!("{e:?}").contains("SECRET"), "{e:?}");
        // A file in a folder that does not exist is an error, not a panic.
        assert!(write_private(&dir.path().join("no/such/t.json"), b"x").is_err());
    }
}
