//! `GET /library`, `POST /library/read` and `GET /library/files/{id}`.
//!
//! A read runs in the background, one per user, with read-all into the user's folder:
//! each file goes to `LOCAL~partial` (the `~` names are free for the app, see
//! [`local_file_name`]) and is renamed when whole; files still there and unchanged
//! are not read again. It ends with one transaction that records the files, how the
//! read ended, and the token. The library page reloads itself while a read runs.

use crate::App;
use crate::db::{self, Kind};
use crate::pages::{self, button, esc, page_with_head, when};
use crate::session::{CsrfForm, CsrfOnly, SignedIn, Visitor};
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use digime_protocol::read_all::local_file_name;
use digime_protocol::{
    Error, FileHead, FileMetadata, PullOptions, ReadAllEvent, ReadAllOptions, UserAccessToken,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// The longest one read runs; what it read by then is kept, and the next read goes
/// on from there.
const READ_AT_MOST: Duration = Duration::from_secs(600);

impl App {
    pub(super) fn is_reading(&self, user: i64) -> bool {
        let reading = self.reading.lock().unwrap_or_else(|p| p.into_inner());
        reading.contains(&user)
    }
}

/// `GET /library`: the files read so far, and a button to read again (or, while a
/// read runs, a page that reloads itself).
pub async fn library_page(
    State(app): State<App>,
    Extension(v): Extension<Visitor>,
    SignedIn(me): SignedIn,
) -> Response {
    let user = me.id;
    let listed = app
        .db
        .call(move |c| Ok((db::library(c, user)?, db::library_read(c, user)?)))
        .await;
    let (files, last) = match listed {
        Ok(l) => l,
        Err(e) => return crate::internal(e),
    };
    let reading = app.is_reading(user);
    let status = if reading {
        "<p class=\"ok\">Reading your library… This page reloads by itself.</p>".to_owned()
    } else {
        let last = match last {
            Some(r) => format!(
                "<p>Last read {}: {}; {} files read, {} failed.</p>",
                when(r.read_at),
                esc(&r.status),
                r.files_read,
                r.failed
            ),
            None => "<p>Your library has not been read yet.</p>".to_owned(),
        };
        last + &button("/library/read", &v.csrf, "Read my library", "")
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
    let head = if reading {
        r#"<meta http-equiv="refresh" content="1">"#
    } else {
        ""
    };
    Html(page_with_head(
        "Your library",
        v.nav(),
        head,
        &format!("{status}{table}"),
    ))
    .into_response()
}

/// One read at a time per user; released when the read ends, however it ends.
struct Reading(App, i64);

impl Drop for Reading {
    fn drop(&mut self) {
        let mut reading = self.0.reading.lock().unwrap_or_else(|p| p.into_inner());
        reading.remove(&self.1);
    }
}

/// `POST /library/read`: starts a read in the background (unless one runs), and
/// shows the library page.
pub async fn read_library(
    State(app): State<App>,
    SignedIn(me): SignedIn,
    _: CsrfForm<CsrfOnly>,
) -> Response {
    let user = me.id;
    let token = match app.token(user, Kind::Read).await {
        Ok(Some(h)) if !h.dead => h.token,
        Ok(_) => return Redirect::to("/").into_response(),
        Err(r) => return r,
    };
    let started = {
        let mut reading = app.reading.lock().unwrap_or_else(|p| p.into_inner());
        reading.insert(user)
    };
    if started {
        let guard = Reading(app.clone(), user);
        tokio::spawn(async move {
            let app = guard.0.clone();
            read(&app, user, token).await;
            drop(guard);
        });
    }
    Redirect::to("/library").into_response()
}

/// A file read whole: its server name, local name, type, size, and `updatedDate`.
struct Read {
    name: String,
    local: String,
    mime: String,
    size: i64,
    updated_date: i64,
}

/// Reads the user's library and records how it went; never fails (a failure is the
/// read's status).
async fn read(app: &App, user: i64, token: UserAccessToken) {
    let dir = app.files.join(user.to_string());
    let mut files = Vec::new();
    let mut failed = 0i64;
    let mut latest = token.clone();
    let status = match already_read(app, user, &dir).await {
        Err(e) => {
            tracing::error!(user, error = %e, "a read could not start");
            "failed: the app could not store files".to_owned()
        }
        Ok(already) => {
            let ended = read_into(
                app,
                user,
                &dir,
                already,
                &mut latest,
                &mut files,
                &mut failed,
            )
            .await;
            match ended {
                Ok(status) => status,
                Err(e) => {
                    let settled = app.settle(user, Kind::Read, &latest, &e).await;
                    let dead = settled.unwrap_or_else(|db| {
                        tracing::error!(user, error = %db, "the outcome of a read could not be kept");
                        false
                    });
                    if dead {
                        // The token is dead: it is not stored again below.
                        latest = token.clone();
                        "digi.me no longer accepts this app's access: reconnect from the home page"
                            .to_owned()
                    } else {
                        format!("failed: {e}")
                    }
                }
            }
        }
    };
    let refreshed = (latest != token)
        .then(|| serde_json::to_string(&latest).ok())
        .flatten();
    let from = token.refresh_token.value.expose().to_owned();
    let files_read = files.len() as i64;
    // The files, how the read ended, and the token it ended with: one transaction.
    let stored = app
        .db
        .transaction(move |tx| {
            for f in files {
                let file = db::LibraryFile {
                    id: 0,
                    name: f.name,
                    local_name: f.local,
                    mime_type: f.mime,
                    size: f.size,
                    updated_date: f.updated_date,
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
            if let Some(json) = refreshed {
                db::replace_token(tx, user, Kind::Read, &from, &json)?;
            }
            Ok(())
        })
        .await;
    match stored {
        Ok(()) => tracing::info!(user, files_read, failed, "library read"),
        Err(e) => tracing::error!(user, error = %e, "a library read could not be recorded"),
    }
}

/// The files the user's folder still holds, by server name, with the `updatedDate`
/// they were read at (read again only once they change).
async fn already_read(
    app: &App,
    user: i64,
    dir: &std::path::Path,
) -> Result<HashMap<String, i64>, String> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| e.to_string())?;
    // On the database's blocking thread: a library can list 100,000 files, each
    // looked for on disk.
    let dir = dir.to_owned();
    app.db
        .call(move |c| {
            let known = db::library(c, user)?;
            Ok(known
                .into_iter()
                .filter(|f| dir.join(&f.local_name).is_file())
                .map(|f| (f.name, f.updated_date))
                .collect())
        })
        .await
        .map_err(|e| e.to_string())
}

/// The read itself: a session, then read-all into `dir`; `Ok` the status to show.
/// `token` ends as the last token the calls used.
async fn read_into(
    app: &App,
    user: i64,
    dir: &std::path::Path,
    already_read: HashMap<String, i64>,
    token: &mut UserAccessToken,
    files: &mut Vec<Read>,
    failed: &mut i64,
) -> Result<String, Error> {
    let client = app.client_for(user, Kind::Read);
    let session = client
        .read_session(&app.read, token, &PullOptions::default())
        .await?;
    if let Some(t) = session.refreshed_token {
        *token = t;
    }
    let key = session.value.key;
    let options = ReadAllOptions {
        poll_interval: app.poll,
        max_duration: READ_AT_MOST,
        already_read,
        ..Default::default()
    };
    let open = |head: &FileHead| tokio::fs::File::create(partial(dir, &head.name));
    let mut refreshed = None;
    let summary = client
        .read_all_files_to(&app.read, token, &key, options, open, |event| match event {
            ReadAllEvent::File(head) => {
                let local = local_file_name(&head.name);
                let kept = std::fs::rename(partial(dir, &head.name), dir.join(&local))
                    .and_then(|()| std::fs::metadata(dir.join(&local)));
                match kept {
                    Ok(meta) => files.push(Read {
                        mime: match &head.metadata {
                            FileMetadata::Raw(raw) => raw.mimetype.clone(),
                            _ => "application/json".to_owned(),
                        },
                        name: head.name,
                        local,
                        size: meta.len() as i64,
                        updated_date: 0,
                    }),
                    Err(e) => {
                        tracing::error!(user, error = %e, "a read file could not be kept");
                        *failed += 1;
                    }
                }
            }
            ReadAllEvent::FileError { entry, error } => {
                let _ = std::fs::remove_file(partial(dir, &entry.name));
                tracing::warn!(user, error = %error, "a file of the library could not be read");
                *failed += 1;
            }
            ReadAllEvent::TokenRefreshed(t) => refreshed = Some(t),
            _ => {}
        })
        .await;
    if let Some(t) = refreshed {
        *token = t;
    }
    let summary = summary?;
    // The last list gives each file's updatedDate, for the next read to compare with
    // (without it, the next read reads these files again).
    match client.read_file_list(&app.read, token, &key).await {
        Ok(list) => {
            if let Some(t) = list.refreshed_token {
                *token = t;
            }
            let dates: HashMap<String, i64> = (list.value.file_list.into_iter())
                .map(|e| (e.name, e.updated_date))
                .collect();
            for f in files.iter_mut() {
                f.updated_date = dates.get(&f.name).copied().unwrap_or(0);
            }
        }
        Err(e) => {
            if let Some(t) = e.refreshed_token() {
                *token = t.clone();
            }
            tracing::warn!(user, error = %e, "the last file list failed");
        }
    }
    Ok(if summary.timed_out {
        format!(
            "sync {}, stopped after {} minutes: read again for the rest",
            summary.status.state,
            READ_AT_MOST.as_secs() / 60
        )
    } else {
        format!("sync {}", summary.status.state)
    })
}

fn partial(dir: &std::path::Path, name: &str) -> PathBuf {
    dir.join(format!("{}~partial", local_file_name(name)))
}

/// `GET /library/files/{id}`: one of the user's files, as an attachment (never
/// rendered by the browser as this site's page, whatever its type).
pub async fn download(
    State(app): State<App>,
    SignedIn(me): SignedIn,
    Path(id): Path<i64>,
) -> Response {
    let user = me.id;
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
    let path = app.files.join(user.to_string()).join(&file.local_name);
    let opened = match tokio::fs::File::open(&path).await {
        Ok(f) => f.metadata().await.map(|m| (f, m.len())),
        Err(e) => Err(e),
    };
    let Ok((body, len)) = opened else {
        return pages::error(
            StatusCode::NOT_FOUND,
            "Not found",
            "That file is no longer here: read your library again.",
        );
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
    let mut response = Body::from_stream(tokio_util::io::ReaderStream::new(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(d) = HeaderValue::from_str(&format!("attachment; filename=\"{ascii}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, d);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}
