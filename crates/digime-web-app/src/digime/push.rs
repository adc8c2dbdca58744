//! `GET /upload` and `POST /push`: a file streamed to disk as it arrives, then into
//! the user's library with the write contract; its history row and a refreshed token
//! are stored in one transaction.

use crate::App;
use crate::db::{self, Kind};
use crate::pages::{self, csrf_field, esc, page, when};
use crate::session::{SignedIn, Visitor};
use axum::Extension;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use digime_protocol::FileDescriptor;
use tokio::io::AsyncWriteExt;

/// `GET /upload`: the form, and what was pushed.
pub async fn upload_page(
    State(app): State<App>,
    Extension(v): Extension<Visitor>,
    SignedIn(me): SignedIn,
) -> Response {
    let user = me.id;
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
                esc(p.sha256.get(..16).unwrap_or(&p.sha256))
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

/// The most a CSRF field may hold (the tokens are 32 or 43 characters).
const MAX_CSRF: usize = 128;

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
    SignedIn(me): SignedIn,
    mut form: Multipart,
) -> Response {
    let user = me.id;
    // The CSRF token comes first, so nothing of a forged upload is stored; it is read
    // with a bound, so a huge first field is never held in memory.
    let csrf = match form.next_field().await {
        Ok(Some(mut f)) if f.name() == Some("csrf") => {
            let mut csrf = Vec::new();
            loop {
                match f.chunk().await {
                    Ok(Some(chunk)) if csrf.len() + chunk.len() <= MAX_CSRF => {
                        csrf.extend_from_slice(&chunk)
                    }
                    Ok(Some(_)) => break Vec::new(),
                    Ok(None) => break csrf,
                    Err(e) => return bad_upload(&format!("The form did not arrive whole: {e}.")),
                }
            }
        }
        Ok(_) => Vec::new(),
        Err(e) => return bad_upload(&format!("The form did not arrive whole: {e}.")),
    };
    if let Err(r) = v.check_csrf(&String::from_utf8_lossy(&csrf)) {
        return r;
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
    // The browser's type when it is a MIME type digi.me takes, else one from the name.
    let mime = match field.content_type() {
        Some(t) if t != "application/octet-stream" && FileDescriptor::new(t).validate().is_ok() => {
            t.to_owned()
        }
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
        Err(e) => {
            return app
                .failed(user, Kind::Write, &held.token, "Pushing the file", e)
                .await;
        }
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
    let from = held.token.refresh_token.value.expose().to_owned();
    let stored = app
        .db
        .transaction(move |tx| {
            db::insert_push(tx, user, &record)?;
            if let Some(json) = refreshed {
                db::replace_token(tx, user, Kind::Write, &from, &json)?;
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
