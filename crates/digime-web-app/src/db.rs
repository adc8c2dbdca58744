//! The app's SQLite database: one connection behind a mutex, used from blocking
//! threads, and the schema's migrations.
//!
//! Migrations are the numbered files of `migrations/`, applied in order, each in its
//! own transaction, and counted in SQLite's `user_version`. (Written here rather than
//! taken from `rusqlite_migration`, whose current release needs a newer Rust than the
//! workspace's 1.88.)

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::path::Path;
use std::sync::{Arc, Mutex};

const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_sign_in_failures.sql"),
];

/// Failed sign-ins a name may have within [`FAILURE_WINDOW`] seconds.
pub const MAX_FAILURES: i64 = 5;
/// How long failures count, and a refused name stays refused (15 minutes).
pub const FAILURE_WINDOW: i64 = 15 * 60;

/// The database, shared by every request.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
}

/// A database failure.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite refused.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file was written by a newer version of the app.
    #[error("the database is at schema version {0}, newer than this app's {1}")]
    TooNew(usize, usize),
    /// A blocking task panicked or was cancelled.
    #[error("database task failed: {0}")]
    Task(String),
}

impl Db {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection, on a blocking thread.
    pub async fn call<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while the lock was held cannot leave a transaction open (it is
            // rolled back on drop), so a poisoned lock is still a good connection.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
    }

    /// Runs `f` in one transaction, committed if it returns `Ok`.
    pub async fn transaction<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, DbError> + Send + 'static,
    {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })
        .await
    }

    /// Runs `f` on the connection on this thread (for the token listener, which the
    /// SDK calls synchronously; its statements are short).
    pub fn call_now<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }
}

fn migrate(conn: &mut Connection) -> Result<(), DbError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let version = usize::try_from(version).unwrap_or(usize::MAX);
    if version > MIGRATIONS.len() {
        return Err(DbError::TooNew(version, MIGRATIONS.len()));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "database migrated");
    }
    Ok(())
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Which of the app's two contracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Pushes into the library.
    Write,
    /// Reads the library.
    Read,
}

impl Kind {
    /// Its name in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Write => "write",
            Kind::Read => "read",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "write" => Some(Kind::Write),
            "read" => Some(Kind::Read),
            _ => None,
        }
    }
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub name: String,
}

/// A signed-in browser's session (no `Debug`: it holds the CSRF token).
#[derive(Clone)]
pub struct SessionRow {
    pub user: User,
    pub csrf: String,
}

pub fn session(conn: &Connection, id_hash: &[u8]) -> Result<Option<SessionRow>, DbError> {
    let row = conn
        .query_row(
            "SELECT s.csrf, u.id, u.name FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.id_hash = ?1 AND s.expires_at > ?2",
            params![id_hash, now()],
            |r| {
                Ok(SessionRow {
                    user: User {
                        id: r.get(1)?,
                        name: r.get(2)?,
                    },
                    csrf: r.get(0)?,
                })
            },
        )
        .optional()?;
    Ok(row)
}

pub fn insert_session(
    conn: &Connection,
    id_hash: &[u8],
    user: i64,
    csrf: &str,
    expires_at: i64,
) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO sessions (id_hash, user_id, csrf, expires_at) VALUES (?1, ?2, ?3, ?4)",
        params![id_hash, user, csrf, expires_at],
    )?;
    Ok(())
}

pub fn delete_session(conn: &Connection, id_hash: &[u8]) -> Result<(), DbError> {
    conn.execute("DELETE FROM sessions WHERE id_hash = ?1", params![id_hash])?;
    Ok(())
}

/// Removes expired sessions and pending authorizations; returns how many.
pub fn sweep(conn: &Connection) -> Result<usize, DbError> {
    let t = now();
    let a = conn.execute("DELETE FROM sessions WHERE expires_at <= ?1", params![t])?;
    let b = conn.execute(
        "DELETE FROM pending_authorizations WHERE expires_at <= ?1",
        params![t],
    )?;
    let c = conn.execute(
        "DELETE FROM sign_in_failures WHERE since <= ?1",
        params![t - FAILURE_WINDOW],
    )?;
    Ok(a + b + c)
}

/// The seconds until `name` may try to sign in again, if it had too many failures.
pub fn sign_in_refused_for(conn: &Connection, name: &str) -> Result<Option<i64>, DbError> {
    let row: Option<(i64, i64)> = conn
        .query_row(
            "SELECT failures, since FROM sign_in_failures WHERE name = ?1",
            params![name.to_ascii_lowercase()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let left = row.and_then(|(failures, since)| {
        let left = since + FAILURE_WINDOW - now();
        (failures >= MAX_FAILURES && left > 0).then_some(left)
    });
    Ok(left)
}

/// Counts a failed sign-in of `name` (a new window if the last one ended).
pub fn sign_in_failed(conn: &Connection, name: &str) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO sign_in_failures (name, failures, since) VALUES (?1, 1, ?2)
         ON CONFLICT (name) DO UPDATE SET
             failures = CASE WHEN since <= ?2 - ?3 THEN 1 ELSE failures + 1 END,
             since = CASE WHEN since <= ?2 - ?3 THEN ?2 ELSE since END",
        params![name.to_ascii_lowercase(), now(), FAILURE_WINDOW],
    )?;
    Ok(())
}

/// Forgets the failures of `name` (it signed in).
pub fn sign_in_succeeded(conn: &Connection, name: &str) -> Result<(), DbError> {
    conn.execute(
        "DELETE FROM sign_in_failures WHERE name = ?1",
        params![name.to_ascii_lowercase()],
    )?;
    Ok(())
}

/// Creates a user; `None` if the name is taken.
pub fn insert_user(
    conn: &Connection,
    name: &str,
    password_hash: &str,
) -> Result<Option<i64>, DbError> {
    match conn.execute(
        "INSERT INTO users (name, password_hash, created_at) VALUES (?1, ?2, ?3)",
        params![name, password_hash, now()],
    ) {
        Ok(_) => Ok(Some(conn.last_insert_rowid())),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The user of that name and their password hash.
pub fn user_by_name(conn: &Connection, name: &str) -> Result<Option<(User, String)>, DbError> {
    Ok(conn
        .query_row(
            "SELECT id, name, password_hash FROM users WHERE name = ?1",
            params![name],
            |r| {
                Ok((
                    User {
                        id: r.get(0)?,
                        name: r.get(1)?,
                    },
                    r.get(2)?,
                ))
            },
        )
        .optional()?)
}

pub fn delete_user(conn: &Connection, user: i64) -> Result<(), DbError> {
    conn.execute("DELETE FROM users WHERE id = ?1", params![user])?;
    Ok(())
}

/// What an authorization on its way is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A new authorization (a new library, for the write contract).
    Fresh,
    /// The read contract, linked to the write contract's library.
    Link,
    /// A reauthorization of a dead token.
    Reauthorize,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Fresh => "fresh",
            Mode::Link => "link",
            Mode::Reauthorize => "reauthorize",
        }
    }

    fn parse(s: &str) -> Option<Mode> {
        [Mode::Fresh, Mode::Link, Mode::Reauthorize]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// An authorization on its way.
pub struct Pending {
    pub user: i64,
    pub kind: Kind,
    pub mode: Mode,
    /// The digi.me user the new token must be.
    pub expect_user: Option<String>,
    pub code_verifier: String,
    pub expires_at: i64,
}

pub fn insert_pending(
    conn: &Connection,
    state_hash: &[u8],
    session_hash: &[u8],
    p: &Pending,
) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO pending_authorizations
         (state_hash, session_hash, user_id, contract, mode, expect_user, code_verifier, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            state_hash,
            session_hash,
            p.user,
            p.kind.as_str(),
            p.mode.as_str(),
            p.expect_user,
            p.code_verifier,
            p.expires_at
        ],
    )?;
    Ok(())
}

/// Takes (deletes and returns) the pending authorization of this state, if this
/// session started it: whatever happens next, the state cannot be used again.
pub fn take_pending(
    conn: &Connection,
    state_hash: &[u8],
    session_hash: &[u8],
) -> Result<Option<Pending>, DbError> {
    let row = conn
        .query_row(
            "DELETE FROM pending_authorizations WHERE state_hash = ?1 AND session_hash = ?2
             RETURNING user_id, contract, mode, expect_user, code_verifier, expires_at",
            params![state_hash, session_hash],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            },
        )
        .optional()?;
    Ok(row.and_then(
        |(user, kind, mode, expect_user, code_verifier, expires_at)| {
            Some(Pending {
                user,
                kind: Kind::parse(&kind)?,
                mode: Mode::parse(&mode)?,
                expect_user,
                code_verifier,
                expires_at,
            })
        },
    ))
}

/// A stored token.
pub struct StoredToken {
    /// The SDK's token JSON.
    pub json: String,
    /// Its refresh token no longer works.
    pub dead: bool,
}

pub fn token(conn: &Connection, user: i64, kind: Kind) -> Result<Option<StoredToken>, DbError> {
    Ok(conn
        .query_row(
            "SELECT token, dead FROM tokens WHERE user_id = ?1 AND contract = ?2",
            params![user, kind.as_str()],
            |r| {
                Ok(StoredToken {
                    json: r.get(0)?,
                    dead: r.get(1)?,
                })
            },
        )
        .optional()?)
}

/// Stores a live token (replacing the last).
pub fn store_token(conn: &Connection, user: i64, kind: Kind, json: &str) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO tokens (user_id, contract, token, dead, updated_at) VALUES (?1, ?2, ?3, 0, ?4)
         ON CONFLICT (user_id, contract) DO UPDATE SET token = ?3, dead = 0, updated_at = ?4",
        params![user, kind.as_str(), json, now()],
    )?;
    Ok(())
}

/// Replaces the stored token with `json`, a token refreshed from the one whose
/// refresh token is `from_refresh`, only if that one is still the stored one (or
/// `json` already is): a call that ends after another call stored a newer token, or
/// after the user reconnected, does not put its older token back. Whether it did.
pub fn replace_token(
    conn: &Connection,
    user: i64,
    kind: Kind,
    from_refresh: &str,
    json: &str,
) -> Result<bool, DbError> {
    let n = conn.execute(
        "UPDATE tokens SET token = ?4, dead = 0, updated_at = ?5
         WHERE user_id = ?1 AND contract = ?2 AND dead = 0
           AND (json_extract(token, '$.refreshToken.value') = ?3 OR token = ?4)",
        params![user, kind.as_str(), from_refresh, json, now()],
    )?;
    Ok(n > 0)
}

/// Marks the stored token dead if it is one of those whose refresh tokens are
/// `refresh` (the ones the failed call used), not one stored since.
pub fn mark_dead(
    conn: &Connection,
    user: i64,
    kind: Kind,
    refresh: &[&str],
) -> Result<(), DbError> {
    for value in refresh {
        conn.execute(
            "UPDATE tokens SET dead = 1, updated_at = ?4
             WHERE user_id = ?1 AND contract = ?2 AND json_extract(token, '$.refreshToken.value') = ?3",
            params![user, kind.as_str(), value, now()],
        )?;
    }
    Ok(())
}

/// Forgets the user's tokens (their digi.me library was deleted).
pub fn delete_tokens(conn: &Connection, user: i64) -> Result<(), DbError> {
    conn.execute("DELETE FROM tokens WHERE user_id = ?1", params![user])?;
    Ok(())
}

/// A pushed file.
pub struct Push {
    pub file_name: String,
    pub mime_type: String,
    pub size: i64,
    pub sha256: String,
    pub pushed_at: i64,
}

pub fn insert_push(conn: &Connection, user: i64, p: &Push) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO pushes (user_id, file_name, mime_type, size, sha256, pushed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            user,
            p.file_name,
            p.mime_type,
            p.size,
            p.sha256,
            p.pushed_at
        ],
    )?;
    Ok(())
}

pub fn pushes(conn: &Connection, user: i64) -> Result<Vec<Push>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT file_name, mime_type, size, sha256, pushed_at FROM pushes
         WHERE user_id = ?1 ORDER BY id DESC LIMIT 200",
    )?;
    let rows = stmt.query_map(params![user], |r| {
        Ok(Push {
            file_name: r.get(0)?,
            mime_type: r.get(1)?,
            size: r.get(2)?,
            sha256: r.get(3)?,
            pushed_at: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A file read from the library.
pub struct LibraryFile {
    pub id: i64,
    pub name: String,
    pub local_name: String,
    pub mime_type: String,
    pub size: i64,
    pub updated_date: i64,
}

const LIBRARY_COLUMNS: &str = "id, name, local_name, mime_type, size, updated_date";

fn library_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LibraryFile> {
    Ok(LibraryFile {
        id: r.get(0)?,
        name: r.get(1)?,
        local_name: r.get(2)?,
        mime_type: r.get(3)?,
        size: r.get(4)?,
        updated_date: r.get(5)?,
    })
}

pub fn library(conn: &Connection, user: i64) -> Result<Vec<LibraryFile>, DbError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {LIBRARY_COLUMNS} FROM library_files WHERE user_id = ?1
         ORDER BY updated_date DESC, name"
    ))?;
    let rows = stmt.query_map(params![user], library_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn library_file(conn: &Connection, user: i64, id: i64) -> Result<Option<LibraryFile>, DbError> {
    let sql = format!("SELECT {LIBRARY_COLUMNS} FROM library_files WHERE user_id = ?1 AND id = ?2");
    Ok(conn
        .query_row(&sql, params![user, id], library_row)
        .optional()?)
}

pub fn upsert_library_file(conn: &Connection, user: i64, f: &LibraryFile) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO library_files (user_id, name, local_name, mime_type, size, updated_date, read_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (user_id, name) DO UPDATE SET local_name = ?3, mime_type = ?4, size = ?5,
             updated_date = ?6, read_at = ?7",
        params![user, f.name, f.local_name, f.mime_type, f.size, f.updated_date, now()],
    )?;
    Ok(())
}

/// How the last library read ended.
pub struct LibraryRead {
    pub status: String,
    pub files_read: i64,
    pub failed: i64,
    pub read_at: i64,
}

pub fn store_library_read(conn: &Connection, user: i64, r: &LibraryRead) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO library_reads (user_id, status, files_read, failed, read_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (user_id) DO UPDATE SET status = ?2, files_read = ?3, failed = ?4, read_at = ?5",
        params![user, r.status, r.files_read, r.failed, r.read_at],
    )?;
    Ok(())
}

pub fn library_read(conn: &Connection, user: i64) -> Result<Option<LibraryRead>, DbError> {
    Ok(conn
        .query_row(
            "SELECT status, files_read, failed, read_at FROM library_reads WHERE user_id = ?1",
            params![user],
            |r| {
                Ok(LibraryRead {
                    status: r.get(0)?,
                    files_read: r.get(1)?,
                    failed: r.get(2)?,
                    read_at: r.get(3)?,
                })
            },
        )
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("t.sqlite3")).unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        migrate(&mut conn).unwrap();
        (dir, conn)
    }

    #[test]
    fn migrations_run_once_and_a_newer_schema_is_refused() {
        let (_dir, mut conn) = db();
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v as usize, MIGRATIONS.len());
        conn.pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(migrate(&mut conn), Err(DbError::TooNew(99, _))));
    }

    #[test]
    fn a_database_of_the_first_schema_migrates_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            insert_user(&conn, "old", "h").unwrap().unwrap();
        }
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn).unwrap();
        assert!(user_by_name(&conn, "old").unwrap().is_some());
        assert_eq!(sign_in_refused_for(&conn, "old").unwrap(), None);
    }

    #[test]
    fn a_name_with_too_many_failed_sign_ins_waits_out_the_window() {
        let (_dir, conn) = db();
        for _ in 0..MAX_FAILURES - 1 {
            sign_in_failed(&conn, "Ann").unwrap();
        }
        assert_eq!(sign_in_refused_for(&conn, "ann").unwrap(), None);
        sign_in_failed(&conn, "ANN").unwrap();
        let left = sign_in_refused_for(&conn, "ann").unwrap().unwrap();
        assert!(
            left > FAILURE_WINDOW - 5 && left <= FAILURE_WINDOW,
            "{left}"
        );
        // Once the window is over, the name may try again, and a failure starts anew.
        conn.execute(
            "UPDATE sign_in_failures SET since = since - ?1",
            params![FAILURE_WINDOW],
        )
        .unwrap();
        assert_eq!(sign_in_refused_for(&conn, "ann").unwrap(), None);
        sign_in_failed(&conn, "ann").unwrap();
        let failures: i64 = conn
            .query_row("SELECT failures FROM sign_in_failures", [], |r| r.get(0))
            .unwrap();
        assert_eq!(failures, 1);
        assert_eq!(sweep(&conn).unwrap(), 0);
        sign_in_succeeded(&conn, "ann").unwrap();
        assert_eq!(sign_in_refused_for(&conn, "ann").unwrap(), None);
    }

    #[test]
    fn a_pending_authorization_is_taken_once_and_only_by_its_session() {
        let (_dir, conn) = db();
        let user = insert_user(&conn, "ann", "h").unwrap().unwrap();
        assert!(
            insert_user(&conn, "ANN", "h").unwrap().is_none(),
            "names are unique, any case"
        );
        insert_session(&conn, b"s1", user, "c", now() + 60).unwrap();
        insert_session(&conn, b"s2", user, "c", now() + 60).unwrap();
        let p = Pending {
            user,
            kind: Kind::Read,
            mode: Mode::Link,
            expect_user: Some("u".into()),
            code_verifier: "v".into(),
            expires_at: now() + 60,
        };
        insert_pending(&conn, b"state", b"s1", &p).unwrap();
        assert!(take_pending(&conn, b"state", b"s2").unwrap().is_none());
        let taken = take_pending(&conn, b"state", b"s1").unwrap().unwrap();
        assert_eq!(
            (taken.kind, taken.code_verifier.as_str()),
            (Kind::Read, "v")
        );
        assert!(take_pending(&conn, b"state", b"s1").unwrap().is_none());
    }

    #[test]
    fn a_refreshed_token_replaces_only_the_one_it_was_refreshed_from() {
        let (_dir, conn) = db();
        let user = insert_user(&conn, "bo", "h").unwrap().unwrap();
        let tok = |r: &str| format!(r#"{{"refreshToken":{{"value":"{r}"}}}}"#);
        store_token(&conn, user, Kind::Write, &tok("r1")).unwrap();
        assert!(replace_token(&conn, user, Kind::Write, "r1", &tok("r2")).unwrap());
        assert!(
            replace_token(&conn, user, Kind::Write, "r1", &tok("r2")).unwrap(),
            "again: a no-op"
        );
        // A late call that started from r1 does not put its r1-refresh over r2's.
        assert!(!replace_token(&conn, user, Kind::Write, "r1", &tok("r3")).unwrap());
        assert!(!replace_token(&conn, user, Kind::Read, "r2", &tok("r3")).unwrap());
        assert_eq!(
            token(&conn, user, Kind::Write).unwrap().unwrap().json,
            tok("r2")
        );
        // A failed call marks dead only the token it used.
        mark_dead(&conn, user, Kind::Write, &["r1"]).unwrap();
        assert!(!token(&conn, user, Kind::Write).unwrap().unwrap().dead);
        mark_dead(&conn, user, Kind::Write, &["r1", "r2"]).unwrap();
        assert!(token(&conn, user, Kind::Write).unwrap().unwrap().dead);
        assert!(
            !replace_token(&conn, user, Kind::Write, "r2", &tok("r4")).unwrap(),
            "dead stays dead"
        );
        // A new authorization revives it.
        store_token(&conn, user, Kind::Write, &tok("r5")).unwrap();
        assert!(!token(&conn, user, Kind::Write).unwrap().unwrap().dead);
        // Deleting the user deletes what is theirs.
        delete_user(&conn, user).unwrap();
        assert!(token(&conn, user, Kind::Write).unwrap().is_none());
    }
}
