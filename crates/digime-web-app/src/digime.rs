//! The pages that talk to digi.me: connect (the write contract, then the read
//! contract linked to the same library), the way back, push, the library, and
//! deleting the user's data.
//!
//! Tokens: a refreshed token is written the moment the SDK issues it (the client's
//! listener), and again with the call's result, in the transaction that records it
//! (a push and its history row; a library read and its files). A call that ends with
//! [`digime_protocol::Error::needs_reauthorization`] marks the token dead; the home
//! page then offers to reconnect, which reauthorizes the same library.

use crate::App;
use crate::db::{self, Kind, User};
use crate::pages::{self, button, csrf_field, esc, page, when};
use crate::session::{CsrfOnly, Visitor, sign_in_page};
use axum::Extension;
use axum::body::Body;
use axum::extract::{Form, Multipart, Path, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use digime_async::Client;
use digime_protocol::auth::ReauthorizeOptions;
use digime_protocol::read_all::local_file_name;
use digime_protocol::{
    AuthorizeOptions, CallbackError, CodeVerifier, Contract, Error, FileDescriptor, FileMetadata,
    PullOptions, ReadAllEvent, ReadAllOptions, UserAccessToken, parse_callback,
};
use std::collections::HashMap;
use tokio::io::AsyncWriteExt;

impl App {
    fn contract(&self, kind: Kind) -> &Contract {
        match kind {
            Kind::Write => &self.write,
            Kind::Read => &self.read,
        }
    }

    /// A client whose refreshed tokens are stored as `user`'s, for `kind`, as soon as
    /// they are issued. (Clones share the connection pool and the refresh
    /// coordination, so two requests of one user never refresh one token twice.)
    fn client_for(&self, user: i64, kind: Kind) -> Client {
        let db = self.db.clone();
        self.client.clone().on_token_refreshed(move |token| {
            let stored = serde_json::to_string(token)
                .map_err(|e| e.to_string())
                .and_then(|json| {
                    db.call_now(|c| db::store_token(c, user, kind, &json))
                        .map_err(|e| e.to_string())
                });
            match stored {
                Ok(()) => tracing::info!(user, contract = kind.as_str(), "refreshed token stored"),
                Err(e) => tracing::error!(user, contract = kind.as_str(), error = %e, "a refreshed token could not be stored"),
            }
        })
    }

    /// The user's token for `kind`: `None` if never connected; `Err` a page to show.
    async fn token(&self, user: i64, kind: Kind) -> Result<Option<Held>, Response> {
        let stored = self
            .db
            .call(move |c| db::token(c, user, kind))
            .await
            .map_err(crate::internal)?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        let token = serde_json::from_str(&stored.json).map_err(crate::internal)?;
        Ok(Some(Held {
            token,
            dead: stored.dead,
        }))
    }

    /// What a failed call leaves: a token it refreshed is kept; a token digi.me no
    /// longer refreshes is marked dead and the user is sent home to reconnect.
    async fn failed(&self, user: i64, kind: Kind, what: &str, e: Error) -> Response {
        if let Some(t) = e.refreshed_token()
            && let Err(r) = self.store(user, kind, t.clone()).await
        {
            return r;
        }
        if e.needs_reauthorization() {
            tracing::info!(
                user,
                contract = kind.as_str(),
                "the token is dead: reconnect"
            );
            let marked = self.db.call(move |c| db::mark_dead(c, user, kind)).await;
            if let Err(e) = marked {
                return crate::internal(e);
            }
            return Redirect::to("/").into_response();
        }
        tracing::warn!(user, contract = kind.as_str(), error = %e, "{what} failed");
        let advice = if e.is_retryable() {
            " digi.me is busy or unreachable: try again in a moment."
        } else {
            ""
        };
        pages::error(
            StatusCode::BAD_GATEWAY,
            "digi.me did not answer as expected",
            &format!("{what} failed: {e}.{advice}"),
        )
    }

    async fn store(&self, user: i64, kind: Kind, token: UserAccessToken) -> Result<(), Response> {
        let json = serde_json::to_string(&token).map_err(crate::internal)?;
        self.db
            .call(move |c| db::store_token(c, user, kind, &json))
            .await
            .map_err(crate::internal)
    }
}

struct Held {
    token: UserAccessToken,
    dead: bool,
}

fn signed_in(v: &Visitor) -> Result<&User, Response> {
    v.user()
}

/// `GET /`: sign in, or where the user's digi.me connection stands.
pub async fn home(State(app): State<App>, Extension(v): Extension<Visitor>) -> Response {
    let Some(user) = &v.user else {
        return sign_in_page(&v, None).into_response();
    };
    let (write, read) = match (
        app.token(user.id, Kind::Write).await,
        app.token(user.id, Kind::Read).await,
    ) {
        (Ok(w), Ok(r)) => (w, r),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let state = |h: &Option<Held>| match h {
        None => "not connected",
        Some(h) if h.dead => "expired: reconnect",
        Some(_) => "connected",
    };
    let all_live = matches!((&write, &read), (Some(w), Some(r)) if !w.dead && !r.dead);
    let any_dead = [&write, &read]
        .iter()
        .any(|h| h.as_ref().is_some_and(|h| h.dead));
    let action = if all_live {
        r#"<p class="ok">Your digi.me library is connected.</p><p><a href="/upload">Push a file</a> · <a href="/library">Your library</a></p>"#.to_owned()
    } else if any_dead {
        format!(
            r#"<p class="error">digi.me no longer accepts this app's access to your library. Reconnect to go on with the same library.</p>{}"#,
            button("/connect", &v.csrf, "Reconnect digi.me", "")
        )
    } else {
        format!(
            "<p>Connect your digi.me library: you will be asked to let this app write into it, then to read it.</p>{}",
            button("/connect", &v.csrf, "Connect digi.me", "")
        )
    };
    let body = format!(
        "<table><tr><th>Writing into your library</th><td>{}</td></tr><tr><th>Reading your library</th><td>{}</td></tr></table>{action}",
        state(&write),
        state(&read)
    );
    Html(page(&format!("Hello, {}", user.name), v.nav(), &body)).into_response()
}

/// `POST /connect`: the next authorization the user needs.
pub async fn connect(
    State(app): State<App>,
    Extension(v): Extension<Visitor>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    if let Err(r) = v.check_csrf(&f.csrf) {
        return r;
    }
    match signed_in(&v) {
        Ok(user) => next_step(&app, &v, user.id).await,
        Err(r) => r,
    }
}

enum How {
    Authorize { link: Option<UserAccessToken> },
    Reauthorize(UserAccessToken),
}

/// Sends the browser on to the authorization it still needs: write, then read
/// (linked to the write contract's library); a dead token is reauthorized. When all
/// is connected, to the library.
async fn next_step(app: &App, v: &Visitor, user: i64) -> Response {
    let write = match app.token(user, Kind::Write).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let (kind, how) = match write {
        None => (Kind::Write, How::Authorize { link: None }),
        Some(w) if w.dead => (Kind::Write, How::Reauthorize(w.token)),
        Some(w) => match app.token(user, Kind::Read).await {
            Err(r) => return r,
            Ok(Some(r)) if r.dead => (Kind::Read, How::Reauthorize(r.token)),
            Ok(Some(_)) => return Redirect::to("/library").into_response(),
            Ok(None) => {
                // Linking needs a live access token of the write contract.
                let mut link = w.token;
                if link
                    .access_token
                    .is_expired_at(std::time::SystemTime::now())
                {
                    match app
                        .client_for(user, Kind::Write)
                        .refresh_token(&app.write, &link)
                        .await
                    {
                        Ok(t) => link = t,
                        Err(e) => {
                            return app
                                .failed(user, Kind::Write, "Renewing your connection", e)
                                .await;
                        }
                    }
                }
                (Kind::Read, How::Authorize { link: Some(link) })
            }
        },
    };
    begin(app, v, user, kind, how).await
}

/// Asks digi.me for the authorization URL, keeps the verifier server-side against a
/// fresh state bound to this session, and redirects the browser there.
async fn begin(app: &App, v: &Visitor, user: i64, kind: Kind, how: How) -> Response {
    let state = match digime_crypto::random::alphanumeric(32) {
        Ok(s) => s,
        Err(e) => return crate::internal(e),
    };
    let contract = app.contract(kind);
    let asked = match how {
        How::Authorize { link } => {
            let options = AuthorizeOptions {
                user_access_token: link,
                ..Default::default()
            };
            app.client
                .authorize_url(contract, &app.callback, &state, options)
                .await
        }
        How::Reauthorize(old) => {
            let options = ReauthorizeOptions {
                state: Some(state.clone()),
                ..Default::default()
            };
            app.client
                .reauthorize_url(contract, &app.callback, &old, options)
                .await
        }
    };
    let auth = match asked {
        Ok(a) => a,
        Err(e) => {
            // A refused link token is the write contract's.
            let of = if e.needs_reauthorization() {
                Kind::Write
            } else {
                kind
            };
            return app.failed(user, of, "Starting the authorization", e).await;
        }
    };
    let pending = db::Pending {
        user,
        kind,
        code_verifier: auth.code_verifier.expose().to_owned(),
        expires_at: db::now() + app.pending_ttl,
    };
    let (state_hash, session) = (
        digime_crypto::sha256(state.as_bytes()),
        v.session_hash.clone(),
    );
    let stored = app
        .db
        .call(move |c| db::insert_pending(c, &state_hash, &session, &pending))
        .await;
    if let Err(e) = stored {
        return crate::internal(e);
    }
    tracing::info!(user, contract = kind.as_str(), "authorization started");
    Redirect::to(&auth.url).into_response()
}

/// `GET /return`: digi.me sends the browser back. The answer counts only if its state
/// is one this session started, not yet used, and not expired.
pub async fn back(State(app): State<App>, Extension(v): Extension<Visitor>, uri: Uri) -> Response {
    let parsed = parse_callback(uri.query().unwrap_or(""));
    let state = match &parsed {
        Ok(cb) => cb.state.clone(),
        Err(CallbackError::Failed { state, .. }) => state.clone(),
        Err(_) => None,
    };
    let refuse = |message: &str| pages::error(StatusCode::BAD_REQUEST, "Not connected", message);
    let Some(state) = state else {
        return refuse("This is not an answer to an authorization this app asked for.");
    };
    let (state_hash, session) = (
        digime_crypto::sha256(state.as_bytes()),
        v.session_hash.clone(),
    );
    let pending = match app
        .db
        .call(move |c| db::take_pending(c, &state_hash, &session))
        .await
    {
        Ok(p) => p,
        Err(e) => return crate::internal(e),
    };
    let Some(pending) = pending.filter(|p| v.user.as_ref().is_some_and(|u| u.id == p.user)) else {
        tracing::warn!("a return with an unknown, used, or another browser's state was refused");
        return refuse(
            "This authorization is unknown, was already used, or was started in another browser. Start again from the home page.",
        );
    };
    if pending.expires_at <= db::now() {
        return refuse("The authorization took too long. Start again from the home page.");
    }
    let callback = match parsed.and_then(|cb| cb.verify_state(&state)) {
        Ok(cb) => cb,
        Err(CallbackError::Failed { code, .. }) => {
            tracing::info!(user = pending.user, contract = pending.kind.as_str(), %code, "authorization not given");
            return pages::error(
                StatusCode::BAD_REQUEST,
                "Not connected",
                &format!(
                    "digi.me was not connected ({code}). Nothing was shared. You can try again from the home page."
                ),
            );
        }
        Err(e) => return refuse(&format!("digi.me's answer could not be read: {e}.")),
    };
    let (user, kind) = (pending.user, pending.kind);
    let verifier = CodeVerifier::new(pending.code_verifier);
    match app
        .client
        .exchange_code_for_token(app.contract(kind), &callback.code, &verifier)
        .await
    {
        Ok(token) => {
            if let Err(r) = app.store(user, kind, token).await {
                return r;
            }
            tracing::info!(user, contract = kind.as_str(), "connected");
            next_step(&app, &v, user).await
        }
        Err(e) => app.failed(user, kind, "Connecting digi.me", e).await,
    }
}

/// `GET /upload`: the form, and what was pushed.
pub async fn upload_page(State(app): State<App>, Extension(v): Extension<Visitor>) -> Response {
    let user = match signed_in(&v) {
        Ok(u) => u.id,
        Err(r) => return r,
    };
    let pushes = match app.db.call(move |c| db::pushes(c, user)).await {
        Ok(p) => p,
        Err(e) => return crate::internal(e),
    };
    let rows: String = pushes
        .iter()
        .map(|p| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                esc(&p.file_name),
                esc(&p.mime_type),
                p.size,
                when(p.pushed_at),
                esc(&p.sha256[..16.min(p.sha256.len())])
            )
        })
        .collect();
    let history = if rows.is_empty() {
        "<p>Nothing pushed yet.</p>".to_owned()
    } else {
        format!(
            "<table><tr><th>File</th><th>Type</th><th>Bytes</th><th>Pushed</th><th>SHA-256</th></tr>{rows}</table>"
        )
    };
    let body = format!(
        r#"<form method="post" action="/push" enctype="multipart/form-data">{}
<label>File <input type="file" name="file" required></label><button>Push into my library</button></form>
<h2>Pushed</h2>{history}"#,
        csrf_field(&v.csrf)
    );
    Html(page("Push a file", v.nav(), &body)).into_response()
}

fn mime_of(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("json") => "application/json",
        Some("pdf") => "application/pdf",
        Some("txt") => "text/plain",
        Some("csv") => "text/csv",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("xml") => "application/xml",
        _ => "application/octet-stream",
    }
}

/// An upload on disk, removed when dropped.
struct Upload(std::path::PathBuf);

impl Drop for Upload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn bad_upload(message: &str) -> Response {
    pages::error(StatusCode::BAD_REQUEST, "Not pushed", message)
}

/// `POST /push` (multipart: `csrf`, then `file`): the file goes to disk as it
/// arrives, then into the user's library; the history row and a refreshed token are
/// stored together.
pub async fn push(
    State(app): State<App>,
    Extension(v): Extension<Visitor>,
    mut form: Multipart,
) -> Response {
    let user = match signed_in(&v) {
        Ok(u) => u.id,
        Err(r) => return r,
    };
    // The CSRF token comes first, so nothing of a forged upload is stored.
    match form.next_field().await {
        Ok(Some(f)) if f.name() == Some("csrf") => match f.text().await {
            Ok(csrf) => {
                if let Err(r) = v.check_csrf(&csrf) {
                    return r;
                }
            }
            Err(e) => return bad_upload(&format!("The form did not arrive whole: {e}.")),
        },
        _ => {
            return v
                .check_csrf("")
                .err()
                .unwrap_or_else(|| bad_upload("No form."));
        }
    }
    let mut field = match form.next_field().await {
        Ok(Some(f)) if f.name() == Some("file") => f,
        Ok(_) => return bad_upload("Choose a file to push."),
        Err(e) => return bad_upload(&format!("The form did not arrive whole: {e}.")),
    };
    let file_name = field
        .file_name()
        .map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n))
        .filter(|n| !n.is_empty())
        .unwrap_or("upload")
        .chars()
        .take(255)
        .collect::<String>();
    let mime = match field.content_type() {
        Some(t) if !t.is_empty() && t != "application/octet-stream" => t.to_owned(),
        _ => mime_of(&file_name).to_owned(),
    };
    let Some(held) = (match app.token(user, Kind::Write).await {
        Ok(h) => h,
        Err(r) => return r,
    }) else {
        return Redirect::to("/").into_response();
    };
    if held.dead {
        return Redirect::to("/").into_response();
    }
    let temp = match digime_crypto::random::alphanumeric(24) {
        Ok(n) => Upload(app.uploads.join(format!("{n}.upload"))),
        Err(e) => return crate::internal(e),
    };
    let mut out = match tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp.0)
        .await
    {
        Ok(f) => f,
        Err(e) => return crate::internal(e),
    };
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut size = 0u64;
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                digest.update(&chunk);
                size += chunk.len() as u64;
                if let Err(e) = out.write_all(&chunk).await {
                    return crate::internal(e);
                }
            }
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return pages::error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Not pushed",
                    "That file is larger than this app accepts.",
                );
            }
            Err(e) => return bad_upload(&format!("The file did not arrive whole: {e}.")),
        }
    }
    if let Err(e) = out.flush().await {
        return crate::internal(e);
    }
    drop(out);
    if size == 0 {
        return bad_upload("That file is empty: choose a file to push.");
    }
    let body = match tokio::fs::File::open(&temp.0).await {
        Ok(f) => f,
        Err(e) => return crate::internal(e),
    };
    let mut descriptor = FileDescriptor::new(mime.clone());
    descriptor.reference = Some(vec![file_name.clone()]);
    let pushed = app
        .client_for(user, Kind::Write)
        .push_to_library(&app.write, &held.token, &descriptor, body)
        .await;
    drop(temp);
    let done = match pushed {
        Ok(done) => done,
        Err(e) => return app.failed(user, Kind::Write, "Pushing the file", e).await,
    };
    let sha256: String = digest
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let record = db::Push {
        file_name,
        mime_type: mime,
        size: size as i64,
        sha256,
        pushed_at: db::now(),
    };
    let refreshed = match done
        .refreshed_token
        .map(|t| serde_json::to_string(&t))
        .transpose()
    {
        Ok(r) => r,
        Err(e) => return crate::internal(e),
    };
    let stored = app
        .db
        .transaction(move |tx| {
            db::insert_push(tx, user, &record)?;
            if let Some(json) = refreshed {
                db::store_token(tx, user, Kind::Write, &json)?;
            }
            Ok(())
        })
        .await;
    match stored {
        Ok(()) => {
            tracing::info!(user, bytes = size, "file pushed");
            Redirect::to("/upload").into_response()
        }
        Err(e) => crate::internal(e),
    }
}

/// `GET /library`: the files read so far, and a button to read again.
pub async fn library_page(State(app): State<App>, Extension(v): Extension<Visitor>) -> Response {
    let user = match signed_in(&v) {
        Ok(u) => u.id,
        Err(r) => return r,
    };
    let listed = app
        .db
        .call(move |c| Ok((db::library(c, user)?, db::library_read(c, user)?)))
        .await;
    let (files, last) = match listed {
        Ok(l) => l,
        Err(e) => return crate::internal(e),
    };
    let last = match last {
        Some(r) => format!(
            "<p>Last read {}: sync {}, {} files read, {} failed.</p>",
            when(r.read_at),
            esc(&r.status),
            r.files_read,
            r.failed
        ),
        None => "<p>Your library has not been read yet.</p>".to_owned(),
    };
    let rows: String = files
        .iter()
        .map(|f| {
            format!(
                r#"<tr><td><a href="/library/files/{}" download>{}</a></td><td>{}</td><td>{}</td></tr>"#,
                f.id,
                esc(&f.name),
                esc(&f.mime_type),
                f.size
            )
        })
        .collect();
    let table = if rows.is_empty() {
        String::new()
    } else {
        format!("<table><tr><th>File</th><th>Type</th><th>Bytes</th></tr>{rows}</table>")
    };
    let body = format!(
        "{last}{}{table}",
        button("/library/read", &v.csrf, "Read my library", "")
    );
    Html(page("Your library", v.nav(), &body)).into_response()
}

/// The longest a library read keeps its request waiting; what it has read by then is
/// kept, and the next read goes on from there.
const READ_AT_MOST: std::time::Duration = std::time::Duration::from_secs(120);

/// One read at a time per user; released on drop.
struct Reading<'a>(&'a App, i64);

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.0
            .reading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.1);
    }
}

/// `POST /library/read`: reads the library with read-all into the user's folder
/// (each file to a `.partial` file renamed when whole; unchanged files are not read
/// again), then records the files, how the read ended, and the token, in one
/// transaction.
pub async fn read_library(
    State(app): State<App>,
    Extension(v): Extension<Visitor>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    if let Err(r) = v.check_csrf(&f.csrf) {
        return r;
    }
    let user = match signed_in(&v) {
        Ok(u) => u.id,
        Err(r) => return r,
    };
    let held = match app.token(user, Kind::Read).await {
        Ok(Some(h)) if !h.dead => h,
        Ok(_) => return Redirect::to("/").into_response(),
        Err(r) => return r,
    };
    if !app
        .reading
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(user)
    {
        return pages::error(
            StatusCode::CONFLICT,
            "Already reading",
            "Your library is being read. Wait a moment, then reload the library page.",
        );
    }
    let _reading = Reading(&app, user);
    let dir = app.files.join(user.to_string());
    if let Err(e) = tokio::fs::create_dir_all(&dir).await {
        return crate::internal(e);
    }
    let known = match app.db.call(move |c| db::library(c, user)).await {
        Ok(k) => k,
        Err(e) => return crate::internal(e),
    };
    // Files still on disk are read again only if they changed.
    let already_read: HashMap<String, i64> = known
        .into_iter()
        .filter(|f| dir.join(&f.local_name).is_file())
        .map(|f| (f.name, f.updated_date))
        .collect();
    let client = app.client_for(user, Kind::Read);
    let mut token = held.token;
    let session = match client
        .read_session(&app.read, &token, &PullOptions::default())
        .await
    {
        Ok(s) => s,
        Err(e) => {
            return app
                .failed(user, Kind::Read, "Reading your library", e)
                .await;
        }
    };
    if let Some(t) = session.refreshed_token {
        token = t;
    }
    let options = ReadAllOptions {
        poll_interval: app.poll,
        max_duration: READ_AT_MOST,
        already_read,
        ..Default::default()
    };
    let open = |head: &digime_protocol::FileHead| {
        let path = dir.join(format!("{}.partial", local_file_name(&head.name)));
        tokio::fs::File::create(path)
    };
    let mut read = Vec::new();
    let mut failed = 0i64;
    let mut refreshed = None;
    let summary = client
        .read_all_files_to(
            &app.read,
            &token,
            &session.value.key,
            options,
            open,
            |event| match event {
                ReadAllEvent::File(head) => {
                    let local = local_file_name(&head.name);
                    let partial = dir.join(format!("{local}.partial"));
                    let done = std::fs::rename(&partial, dir.join(&local))
                        .and_then(|()| std::fs::metadata(dir.join(&local)));
                    match done {
                        Ok(meta) => {
                            let mime = match &head.metadata {
                                FileMetadata::Raw(raw) => raw.mimetype.clone(),
                                _ => "application/json".to_owned(),
                            };
                            read.push((head.name, local, mime, meta.len() as i64));
                        }
                        Err(e) => {
                            tracing::error!(user, error = %e, "a read file could not be kept");
                            failed += 1;
                        }
                    }
                }
                ReadAllEvent::FileError { entry, error } => {
                    let _ = std::fs::remove_file(
                        dir.join(format!("{}.partial", local_file_name(&entry.name))),
                    );
                    tracing::warn!(user, error = %error, "a file of the library could not be read");
                    failed += 1;
                }
                ReadAllEvent::TokenRefreshed(t) => refreshed = Some(t),
                _ => {}
            },
        )
        .await;
    if let Some(t) = refreshed {
        token = t;
    }
    let (status, outcome) = match summary {
        Ok(s) if s.timed_out => (
            format!(
                "{}, stopped after {} s: read again for the rest",
                s.status.state,
                READ_AT_MOST.as_secs()
            ),
            Ok(()),
        ),
        Ok(s) => (s.status.state.to_string(), Ok(())),
        Err(e) => ("failed".to_owned(), Err(e)),
    };
    // The last list gives each file's updatedDate, for the next read to compare with.
    let dates: HashMap<String, i64> = match client
        .read_file_list(&app.read, &token, &session.value.key)
        .await
    {
        Ok(list) => {
            if let Some(t) = list.refreshed_token {
                token = t;
            }
            list.value
                .file_list
                .into_iter()
                .map(|e| (e.name, e.updated_date))
                .collect()
        }
        Err(_) => HashMap::new(),
    };
    let files_read = read.len() as i64;
    let json = match serde_json::to_string(&token) {
        Ok(j) => j,
        Err(e) => return crate::internal(e),
    };
    let stored = app
        .db
        .transaction(move |tx| {
            for (name, local_name, mime_type, size) in read {
                let updated_date = dates.get(&name).copied().unwrap_or(0);
                let file = db::LibraryFile {
                    id: 0,
                    name,
                    local_name,
                    mime_type,
                    size,
                    updated_date,
                };
                db::upsert_library_file(tx, user, &file)?;
            }
            let r = db::LibraryRead {
                status,
                files_read,
                failed,
                read_at: db::now(),
            };
            db::store_library_read(tx, user, &r)?;
            db::store_token(tx, user, Kind::Read, &json)?;
            Ok(())
        })
        .await;
    if let Err(e) = stored {
        return crate::internal(e);
    }
    tracing::info!(user, files_read, failed, "library read");
    match outcome {
        Ok(()) => Redirect::to("/library").into_response(),
        Err(e) => {
            app.failed(user, Kind::Read, "Reading your library", e)
                .await
        }
    }
}

/// `GET /library/files/{id}`: one of the user's files, as an attachment (never
/// rendered by the browser as this site's page, whatever its type).
pub async fn download(
    State(app): State<App>,
    Extension(v): Extension<Visitor>,
    Path(id): Path<i64>,
) -> Response {
    let user = match signed_in(&v) {
        Ok(u) => u.id,
        Err(r) => return r,
    };
    let file = match app.db.call(move |c| db::library_file(c, user, id)).await {
        Ok(Some(f)) => f,
        Ok(None) => {
            return pages::error(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no such file in your library.",
            );
        }
        Err(e) => return crate::internal(e),
    };
    let opened =
        tokio::fs::File::open(app.files.join(user.to_string()).join(&file.local_name)).await;
    let body = match opened {
        Ok(f) => Body::from_stream(tokio_util::io::ReaderStream::new(f)),
        Err(_) => {
            return pages::error(
                StatusCode::NOT_FOUND,
                "Not found",
                "That file is no longer here: read your library again.",
            );
        }
    };
    let ascii: String = file
        .local_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-~".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let disposition = format!("attachment; filename=\"{ascii}\"");
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(d) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, d);
    }
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(file.size.max(0) as u64),
    );
    response
}

/// `GET /delete`: what deleting means, and the button.
pub async fn delete_page(Extension(v): Extension<Visitor>) -> Response {
    if let Err(r) = signed_in(&v) {
        return r;
    }
    let body = format!(
        r#"<p>This deletes your digi.me library (every file and account in it, for every app), then everything this app keeps about you: your account, tokens, history and files.</p>
<form method="post" action="/delete">{}<label><input type="checkbox" name="confirm" value="yes" required> Yes, delete my data</label><button class="danger">Delete my data</button></form>"#,
        csrf_field(&v.csrf)
    );
    Html(page("Delete my data", v.nav(), &body)).into_response()
}

#[derive(serde::Deserialize)]
pub struct DeleteForm {
    csrf: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /delete`: the user's digi.me library first (with a live token), then the
/// app's own rows and files; then a signed-out session.
pub async fn delete(
    State(app): State<App>,
    Extension(v): Extension<Visitor>,
    Form(f): Form<DeleteForm>,
) -> Response {
    if let Err(r) = v.check_csrf(&f.csrf) {
        return r;
    }
    let user = match signed_in(&v) {
        Ok(u) => u.id,
        Err(r) => return r,
    };
    if f.confirm != "yes" {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Not deleted",
            "Tick the box to confirm.",
        );
    }
    let (write, read) = match (
        app.token(user, Kind::Write).await,
        app.token(user, Kind::Read).await,
    ) {
        (Ok(w), Ok(r)) => (w, r),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let live = [(Kind::Write, write), (Kind::Read, read)]
        .into_iter()
        .filter_map(|(k, h)| h.map(|h| (k, h)))
        .collect::<Vec<_>>();
    if !live.is_empty() {
        let Some((kind, held)) = live.into_iter().find(|(_, h)| !h.dead) else {
            return pages::error(
                StatusCode::CONFLICT,
                "Not deleted",
                "digi.me no longer accepts this app's access to your library: reconnect from the home page first, so it can be deleted.",
            );
        };
        if let Err(e) = app
            .client_for(user, kind)
            .delete_user(app.contract(kind), &held.token)
            .await
        {
            return app
                .failed(user, kind, "Deleting your digi.me library", e)
                .await;
        }
        tracing::info!(user, "digi.me library deleted");
    }
    if let Err(e) = app.db.call(move |c| db::delete_user(c, user)).await {
        return crate::internal(e);
    }
    match tokio::fs::remove_dir_all(app.files.join(user.to_string())).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::error!(user, error = %e, "the user's files could not all be removed"),
    }
    tracing::info!(user, "user deleted");
    // The session went with the user; the browser gets a new one on its next request.
    let expired =
        HeaderValue::from_static("digime_app_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
    let body = page(
        "Your data is deleted",
        None,
        r#"<p class="ok">Your digi.me library and everything this app kept about you are deleted.</p><p><a href="/">Back to the start</a></p>"#,
    );
    (StatusCode::OK, [(header::SET_COOKIE, expired)], Html(body)).into_response()
}
