//! `GET /delete` and `POST /delete`: the user's digi.me library first (with a live
//! token), then everything the app keeps about them.

use crate::App;
use crate::db::{self, Kind};
use crate::pages::{self, csrf_field, page};
use crate::session::{CsrfForm, HasCsrf, SignedIn, Visitor, clear_cookie};
use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// `GET /delete`: what deleting means, and the button.
pub async fn delete_page(Extension(v): Extension<Visitor>, _: SignedIn) -> Response {
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
    #[serde(default)]
    app_only: String,
}

impl HasCsrf for DeleteForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /delete`: the user's digi.me library first (with a live token; then the
/// tokens are forgotten, so a retry does not ask digi.me again), then the user's
/// files, then every row of theirs; then a signed-out session. With no live token,
/// only the app's copy is deleted, and only if the form says so (`app_only`).
pub async fn delete(
    State(app): State<App>,
    Extension(v): Extension<Visitor>,
    SignedIn(me): SignedIn,
    CsrfForm(f): CsrfForm<DeleteForm>,
) -> Response {
    let user = me.id;
    if f.confirm != "yes" {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Not deleted",
            "Tick the box to confirm.",
        );
    }
    // A read running in the background would write files and rows after them.
    if app.is_reading(user) {
        return pages::error(
            StatusCode::CONFLICT,
            "Not deleted yet",
            "Your library is being read. Wait until the library page says it is done, then delete.",
        );
    }
    let (write, read) = match app.tokens(user).await {
        Ok(both) => both,
        Err(r) => return r,
    };
    let held: Vec<_> = [(Kind::Write, write), (Kind::Read, read)]
        .into_iter()
        .filter_map(|(k, h)| h.map(|h| (k, h)))
        .collect();
    let never_connected = held.is_empty();
    let mut library_deleted = false;
    match held.into_iter().find(|(_, h)| !h.dead) {
        Some((kind, live)) => {
            let deleted = app
                .client_for(user, kind)
                .delete_user(app.contract(kind), &live.token)
                .await;
            if let Err(e) = deleted {
                let what = "Deleting your digi.me library";
                return app.failed(user, kind, &live.token, what, e).await;
            }
            tracing::info!(user, "digi.me library deleted");
            if let Err(e) = app.db.call(move |c| db::delete_tokens(c, user)).await {
                return crate::internal(e);
            }
            library_deleted = true;
        }
        None if never_connected => {}
        None if f.app_only == "yes" => {}
        None => {
            let body = format!(
                r#"<p class="error">digi.me no longer accepts this app's access to your library, so it cannot delete it from here. Reconnect from the home page first, or delete only what this app keeps about you (your digi.me library stays; delete it in digi.me).</p>
<form method="post" action="/delete">{}<input type="hidden" name="confirm" value="yes"><input type="hidden" name="app_only" value="yes"><button class="danger">Delete only this app's data</button></form>"#,
                csrf_field(&v.csrf)
            );
            return (
                StatusCode::CONFLICT,
                Html(page("Not deleted", v.nav(), &body)),
            )
                .into_response();
        }
    }
    match tokio::fs::remove_dir_all(app.files.join(user.to_string())).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::error!(user, error = %e, "the user's files could not all be removed");
            return pages::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Not all deleted",
                "Your files in this app could not all be removed. Try again in a moment.",
            );
        }
    }
    if let Err(e) = app.db.call(move |c| db::delete_user(c, user)).await {
        return crate::internal(e);
    }
    tracing::info!(user, "user deleted");
    // The session went with the user; the browser gets a new one on its next request.
    let expired = match clear_cookie(&app) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let message = if library_deleted {
        "Your digi.me library and everything this app kept about you are deleted."
    } else if never_connected {
        "Everything this app kept about you is deleted."
    } else {
        "Everything this app kept about you is deleted. Your digi.me library is not: delete it in digi.me."
    };
    let body = page(
        "Your data is deleted",
        None,
        &format!(r#"<p class="ok">{message}</p><p><a href="/">Back to the start</a></p>"#),
    );
    (StatusCode::OK, [(header::SET_COOKIE, expired)], Html(body)).into_response()
}
