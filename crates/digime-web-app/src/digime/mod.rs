//! The pages that talk to digi.me, one module each: [`connect`] (the home page, the
//! write contract then the read contract linked to the same library, and the way
//! back), [`push`], [`library`] (read-all, downloads) and [`delete`].
//!
//! Tokens: a refreshed token is written the moment the SDK issues it (the client's
//! listener), and again with the call's result, in the transaction that records it
//! (a push and its history row; a library read and its files). A call that ends with
//! [`digime_protocol::Error::needs_reauthorization`] marks the token dead; the home
//! page then offers to reconnect, which reauthorizes the same library.

use crate::App;
use crate::db::{self, DbError, Kind};
use crate::pages;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use digime_async::Client;
use digime_protocol::{Contract, Error, UserAccessToken};

pub mod connect;
pub mod delete;
pub mod library;
pub mod push;

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

    /// The user's tokens for both contracts (write, read), in one database call.
    async fn tokens(&self, user: i64) -> Result<(Option<Held>, Option<Held>), Response> {
        let stored = self
            .db
            .call(move |c| {
                Ok((
                    db::token(c, user, Kind::Write)?,
                    db::token(c, user, Kind::Read)?,
                ))
            })
            .await
            .map_err(crate::internal)?;
        Ok((held(stored.0)?, held(stored.1)?))
    }

    /// The user's token for `kind`: `None` if never connected; `Err` a page to show.
    async fn token(&self, user: i64, kind: Kind) -> Result<Option<Held>, Response> {
        let stored = self
            .db
            .call(move |c| db::token(c, user, kind))
            .await
            .map_err(crate::internal)?;
        held(stored)
    }

    /// Keeps what a failed call that started with `started` leaves: a token it
    /// refreshed replaces `started` (unless a newer token was stored since); the token
    /// digi.me no longer refreshes is marked dead (if it is still the stored one).
    /// Whether the user must reconnect.
    async fn settle(
        &self,
        user: i64,
        kind: Kind,
        started: &UserAccessToken,
        e: &Error,
    ) -> Result<bool, DbError> {
        let from = started.refresh_token.value.expose().to_owned();
        let refreshed = match e.refreshed_token() {
            Some(t) => Some((
                serde_json::to_string(t).map_err(|e| DbError::Task(e.to_string()))?,
                t.refresh_token.value.expose().to_owned(),
            )),
            None => None,
        };
        let dead = e.needs_reauthorization();
        self.db
            .transaction(move |tx| {
                let mut used = vec![from.as_str()];
                if let Some((json, refresh)) = &refreshed {
                    db::replace_token(tx, user, kind, &from, json)?;
                    used.push(refresh);
                }
                if dead {
                    db::mark_dead(tx, user, kind, &used)?;
                }
                Ok(())
            })
            .await?;
        if dead {
            tracing::info!(
                user,
                contract = kind.as_str(),
                "the token is dead: reconnect"
            );
        } else {
            tracing::warn!(user, contract = kind.as_str(), error = %e, "a call failed");
        }
        Ok(dead)
    }

    /// The answer to a failed call ([`App::settle`] first): home, to reconnect, or a
    /// page that says what failed.
    async fn failed(
        &self,
        user: i64,
        kind: Kind,
        started: &UserAccessToken,
        what: &str,
        e: Error,
    ) -> Response {
        match self.settle(user, kind, started, &e).await {
            Ok(true) => Redirect::to("/").into_response(),
            Ok(false) => failure_page(what, &e),
            Err(e) => crate::internal(e),
        }
    }

    /// Stores a token a new authorization gave.
    async fn store(&self, user: i64, kind: Kind, token: &UserAccessToken) -> Result<(), Response> {
        let json = serde_json::to_string(token).map_err(crate::internal)?;
        self.db
            .call(move |c| db::store_token(c, user, kind, &json))
            .await
            .map_err(crate::internal)
    }

    /// Stores `to`, refreshed from `from` ([`db::replace_token`]).
    async fn replace(
        &self,
        user: i64,
        kind: Kind,
        from: &UserAccessToken,
        to: &UserAccessToken,
    ) -> Result<(), Response> {
        let json = serde_json::to_string(to).map_err(crate::internal)?;
        let from = from.refresh_token.value.expose().to_owned();
        self.db
            .call(move |c| db::replace_token(c, user, kind, &from, &json).map(|_| ()))
            .await
            .map_err(crate::internal)
    }
}

/// The page for a call that failed for another reason than a dead token.
pub(super) fn failure_page(what: &str, e: &Error) -> Response {
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

/// A stored token, parsed.
fn held(stored: Option<db::StoredToken>) -> Result<Option<Held>, Response> {
    let Some(stored) = stored else {
        return Ok(None);
    };
    let token = serde_json::from_str(&stored.json).map_err(crate::internal)?;
    Ok(Some(Held {
        token,
        dead: stored.dead,
    }))
}

struct Held {
    token: UserAccessToken,
    dead: bool,
}
