//! `GET /delete` and `POST /delete`: the user's digi.me library first (with a live
//! token), then everything the app keeps about them.

use crate::App;
use crate::db::{self, Kind};
use crate::pages::{self, csrf_field, page};
use crate::session::{SignedIn, Visitor};
use axum::Extension;
use axum::extract::{Form, State};
use axum::http::{HeaderValue, StatusCode, header};
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
}

/// `POST /delete`: the user's digi.me library first (with a live token), then the
/// app's own rows and files; then a signed-out session.
pub async fn delete(
    State(app): State<App>,
    Extension(v): Extension<Visitor>,
    SignedIn(me): SignedIn,
    Form(f): Form<DeleteForm>,
) -> Response {
    if let Err(r) = v.check_csrf(&f.csrf) {
        return r;
    }
    let user = me.id;
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
