-- The web app's first schema. Times are Unix seconds; tokens are the SDK's
-- UserAccessToken JSON. Secrets a browser holds (session ids, states) are kept as
-- their SHA-256 only, so a copy of this file cannot be replayed as a browser.

-- AUTOINCREMENT: a deleted user's id is never given to another (a late write for
-- the deleted one then fails its foreign key instead of landing on someone else).
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

-- A signed-in browser's session; its CSRF token rides in every form it is shown. (A
-- signed-out browser has no row: its CSRF token is derived from its cookie.)
CREATE TABLE sessions (
    id_hash    BLOB PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf       TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_expiry ON sessions(expires_at);

-- An authorization sent to digi.me and not yet back: single use (deleted when the
-- browser returns), bound to the session that started it, and short-lived. `mode`:
-- a fresh authorization, one linked to the write contract's library, or a
-- reauthorization; `expect_user`: the digi.me user the new token must be (linked and
-- reauthorized ones).
CREATE TABLE pending_authorizations (
    state_hash    BLOB PRIMARY KEY,
    session_hash  BLOB NOT NULL REFERENCES sessions(id_hash) ON DELETE CASCADE,
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    contract      TEXT NOT NULL CHECK (contract IN ('write', 'read')),
    mode          TEXT NOT NULL CHECK (mode IN ('fresh', 'link', 'reauthorize')),
    expect_user   TEXT,
    code_verifier TEXT NOT NULL,
    expires_at    INTEGER NOT NULL
);
CREATE INDEX pending_expiry ON pending_authorizations(expires_at);

-- A user's token for one of the app's two contracts. `dead`: its refresh token no
-- longer works, and the user must reauthorize.
CREATE TABLE tokens (
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    contract   TEXT NOT NULL CHECK (contract IN ('write', 'read')),
    token      TEXT NOT NULL,
    dead       INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, contract)
);

-- What the user pushed into their library.
CREATE TABLE pushes (
    id        INTEGER PRIMARY KEY,
    user_id   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    file_name TEXT NOT NULL,
    mime_type TEXT NOT NULL,
    size      INTEGER NOT NULL,
    sha256    TEXT NOT NULL,
    pushed_at INTEGER NOT NULL
);
CREATE INDEX pushes_user ON pushes(user_id, id);

-- The files read from the user's library, kept on disk under the user's folder.
CREATE TABLE library_files (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    local_name   TEXT NOT NULL,
    mime_type    TEXT NOT NULL,
    size         INTEGER NOT NULL,
    updated_date INTEGER NOT NULL,
    read_at      INTEGER NOT NULL,
    UNIQUE (user_id, name)
);

-- How the last read of each user's library ended.
CREATE TABLE library_reads (
    user_id    INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    status     TEXT NOT NULL,
    files_read INTEGER NOT NULL,
    failed     INTEGER NOT NULL,
    read_at    INTEGER NOT NULL
);
