//! The account and authorization lifecycle calls of `/v1.7/`: the revoke URL
//! (`permission-access/revoke/h:accountId`), `DELETE user` and
//! `DELETE permission-access/service/h:accountId`. The `h:accountId` path segments are
//! literal; the account id travels in the `accountId` header.
//!
//! A deletion is all or nothing: the new state is made aside, the files go out of the
//! library into the trash (one rename each; a failure undoes the moves made), then the
//! new state is saved (a failure moves the files back), and only then are the moved
//! files deleted. A disk failure before the save → 500 `InternalError`, nothing changed.

use crate::checks::{ApiFailure, check_redirect_uri};
use crate::common::{ApiResult, CODE_TTL_MS, internal, internal_msg, safe_name, still_remembered};
use crate::library::{Moved, account_set_mut, move_out, named_accounts, visible_accounts};
use crate::state::{LibraryFile, Persisted, RevokeCode};
use crate::tokens::user_call;
use crate::{Shared, now_ms, random_id};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get};
use serde_json::json;
use std::path::PathBuf;

/// The lifecycle routes of `/v1.7/`.
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/v1.7/permission-access/revoke/h:accountId",
            get(revoke_url),
        )
        .route("/v1.7/user", delete(delete_user))
        .route(
            "/v1.7/permission-access/service/h:accountId",
            delete(delete_account),
        )
}

/// An account the caller does not see: unknown, deleted, withdrawn from the calling
/// contract, or not named at all.
fn account_not_found(id: &str) -> ApiFailure {
    ApiFailure::new(
        404,
        "AccountNotFound",
        format!("The account ({id}) was not found"),
    )
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
}

/// The `accountId` header, which must name an account of `user_id` that `client_id`
/// sees.
fn visible_account(
    shared: &Shared,
    st: &Persisted,
    headers: &HeaderMap,
    user_id: &str,
    client_id: &str,
) -> Result<String, ApiFailure> {
    let id = header(headers, "accountid");
    let visible = !id.is_empty()
        && visible_accounts(shared, st, user_id, Some(client_id))
            .iter()
            .any(|a| a.id == id);
    if visible {
        Ok(id.to_owned())
    } else {
        Err(account_not_found(id))
    }
}

/// `GET permission-access/revoke/h:accountId`, a user bearer, headers `accountId` and
/// `redirectUri` → 201 `{"location": "{onboard}revoke?code=…"}`.
async fn revoke_url(State(shared): State<Shared>, headers: HeaderMap) -> ApiResult {
    let (v, tok) = user_call(&shared, &headers)?;
    let client_id = v.contract.client_id();
    let redirect_uri = header(&headers, "redirecturi");
    let code = random_id("RVK_");
    {
        let mut st = shared.lock();
        let account_id = visible_account(&shared, &st, &headers, &tok.user_id, &client_id)?;
        check_redirect_uri(redirect_uri)?;
        let now = now_ms();
        st.revoke_codes
            .retain(|_, c| still_remembered(c.expires_ms, now));
        st.revoke_codes.insert(
            code.clone(),
            RevokeCode {
                client_id,
                user_id: tok.user_id.clone(),
                account_id,
                redirect_uri: redirect_uri.to_owned(),
                expires_ms: now + CODE_TTL_MS,
            },
        );
        shared.save(&st).map_err(internal)?;
    }
    let location = format!("{}revoke?code={code}", shared.info.onboard);
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "location": location })),
    )
        .into_response())
}

/// Removes every trace of `user_id` from `st`: the user, their tokens with every
/// contract, codes, sessions, consents, postboxes, account set, failures, withdrawn
/// permissions and library files.
fn forget_user(st: &mut Persisted, user_id: &str) {
    let mine = |u: &str| u == user_id;
    st.users.remove(user_id);
    st.access_tokens.retain(|_, t| !mine(&t.user_id));
    st.refresh_tokens.retain(|_, t| !mine(&t.user_id));
    st.codes.retain(|_, c| !mine(&c.user_id));
    st.preauths
        .retain(|_, p| !p.link_user.as_deref().is_some_and(mine));
    st.reference_codes.retain(|_, c| !mine(&c.user_id));
    st.revoke_codes.retain(|_, c| !mine(&c.user_id));
    st.sessions
        .retain(|_, s| !s.user_id.as_deref().is_some_and(mine));
    st.files.retain(|f| !mine(&f.user_id));
    let prefix = format!("{user_id}|");
    st.consents.retain(|k, _| !k.starts_with(&prefix));
    st.postboxes.retain(|_, p| !mine(&p.user_id));
    st.provider_pushes.remove(user_id);
    st.account_failures.remove(user_id);
    st.sync_ends.remove(user_id);
    st.accounts.remove(user_id);
    st.revoked.remove(user_id);
    // Their storages stay the applications' (the files are the app's to delete).
    st.cloud.forget_user(user_id);
}

/// Moves `paths` out of the library, saves `next` in place of the state, and hands
/// back the moved files to purge; on any failure nothing has changed.
fn commit(
    shared: &Shared,
    st: &mut Persisted,
    next: Persisted,
    paths: &[PathBuf],
) -> Result<Moved, ApiFailure> {
    let moved = move_out(shared, paths).map_err(internal)?;
    if let Err(e) = shared.save(&next) {
        moved.restore();
        return Err(internal(e));
    }
    *st = next;
    Ok(moved)
}

/// `DELETE user`, a user bearer → 200 `{"deleted": true}`: the user is gone for every
/// contract, their library files from disk too.
async fn delete_user(State(shared): State<Shared>, headers: HeaderMap) -> ApiResult {
    let (_, tok) = user_call(&shared, &headers)?;
    let moved = {
        let mut st = shared.lock();
        if !st.users.contains_key(&tok.user_id) {
            return Err(ApiFailure::invalid_token("access_token", false));
        }
        if !safe_name(&tok.user_id) {
            // Only an edited state file names a user so; never delete outside the library.
            return Err(internal_msg("the user id is not a library folder name"));
        }
        let mut next = st.clone();
        forget_user(&mut next, &tok.user_id);
        let dir = shared.library_dir().join(&tok.user_id);
        commit(&shared, &mut st, next, &[dir])?
    };
    moved.purge().await;
    Ok(axum::Json(json!({ "deleted": true })).into_response())
}

/// `DELETE permission-access/service/h:accountId`, a user bearer and the `accountId`
/// header → 200 `{"deleted": true}`: the account leaves the user's library (for every
/// contract), with its mapped files and the pushed files whose descriptor names it.
async fn delete_account(State(shared): State<Shared>, headers: HeaderMap) -> ApiResult {
    let (v, tok) = user_call(&shared, &headers)?;
    let client_id = v.contract.client_id();
    let user_id = &tok.user_id;
    let moved = {
        let mut st = shared.lock();
        let account = visible_account(&shared, &st, &headers, user_id, &client_id)?;
        let mut next = st.clone();
        if let Some(set) = account_set_mut(&shared, &mut next, user_id) {
            set.retain(|a| a.id != account);
        }
        if let Some(failures) = next.account_failures.get_mut(user_id) {
            failures.remove(&account);
        }
        if let Some(by_client) = next.revoked.get_mut(user_id) {
            for set in by_client.values_mut() {
                set.remove(&account);
            }
        }
        let (gone, kept): (Vec<LibraryFile>, Vec<LibraryFile>) =
            std::mem::take(&mut next.files).into_iter().partition(|f| {
                f.user_id == *user_id && named_accounts(&f.descriptor).contains(&account.as_str())
            });
        next.files = kept;
        let user_dir = shared.library_dir().join(user_id);
        let mut paths: Vec<PathBuf> = gone
            .iter()
            // A stored file's id is one path component (an edited state file aside).
            .filter(|f| f.generated.is_none() && safe_name(&f.id))
            .map(|f| user_dir.join(&f.id))
            .collect();
        // What was pushed to the account's provider goes with it.
        if let Some(pushes) = next.provider_pushes.get_mut(user_id) {
            paths.extend(
                pushes
                    .iter()
                    .filter(|p| p.account_id == account && safe_name(&p.id))
                    .map(|p| user_dir.join(format!("{}.json", p.id))),
            );
            pushes.retain(|p| p.account_id != account);
        }
        commit(&shared, &mut st, next, &paths)?
    };
    moved.purge().await;
    Ok(axum::Json(json!({ "deleted": true })).into_response())
}
