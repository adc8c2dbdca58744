//! When the refresh token dies: the user comes back after months away, a call says
//! `needs_reauthorization()`, and the app sends them through the `user-reauth` page,
//! which gives the *same* user a new token, with the same library.
//!
//! Offline, against an embedded sandbox (blocking driver):
//!
//! ```text
//! cargo run -p digime-examples --bin reauthorize
//! ```

#[path = "support/mod.rs"]
mod support;

use digime_blocking::Client;
use digime_protocol::auth::ReauthorizeOptions;
use digime_protocol::{AuthorizeOptions, Contract, UserAccessToken, parse_callback};
use support::{Result, follow, sandbox};

const CALLBACK: &str = "http://localhost:8080/return";

fn main() -> Result<()> {
    let sandbox = sandbox()?;
    let info = sandbox.info();
    let client = Client::new(info.client_config());
    let contract = info.demo.read.contract()?;

    let token = authorize(&client, &contract)?;
    let user = token.user_id().ok_or("no user id")?.to_owned();
    let accounts = client.read_accounts(&contract, &token)?.value;
    println!(
        "User {user} authorized; their library has {} accounts.",
        accounts.len()
    );

    // Months pass: both tokens expire (the sandbox's control API fast-forwards them).
    support::control_post(
        &sandbox,
        &format!("users/{user}/expire-access-tokens"),
        "{}",
    )?;
    support::control_post(
        &sandbox,
        &format!("users/{user}/expire-refresh-tokens"),
        "{}",
    )?;

    let err = client
        .read_accounts(&contract, &token)
        .expect_err("both tokens are dead");
    if !err.needs_reauthorization() {
        return Err(format!("expected a dead refresh token, got {err}").into());
    }
    println!("The next call fails: {err}");

    // Reauthorize with the last token (its access token has expired: that is fine).
    let state = digime_crypto::random::alphanumeric(24)?;
    let options = ReauthorizeOptions {
        state: Some(state.clone()),
        ..Default::default()
    };
    let reauth = client.reauthorize_url(&contract, CALLBACK, &token, options)?;
    println!("Sending the user to {}", support::redacted(&reauth.url));
    let back = follow(&reauth.url)?;
    let callback = parse_callback(&back)?.verify_state(&state)?;
    let fresh = client.exchange_code_for_token(&contract, &callback.code, &reauth.code_verifier)?;

    let again = client.read_accounts(&contract, &fresh)?.value;
    let same_user = fresh.user_id() == Some(user.as_str());
    let same_library = again
        .iter()
        .map(|a| &a.id)
        .eq(accounts.iter().map(|a| &a.id));
    println!(
        "New token for user {}; {} accounts.",
        fresh.user_id().unwrap_or("?"),
        again.len()
    );
    if !(same_user && same_library) {
        return Err("reauthorization did not give back the same user and library".into());
    }
    println!("OK: the same user, with the same library, and a token that works.");
    Ok(())
}

fn authorize(client: &Client, contract: &Contract) -> Result<UserAccessToken> {
    let state = digime_crypto::random::alphanumeric(24)?;
    let auth = client.authorize_url(contract, CALLBACK, &state, AuthorizeOptions::default())?;
    let back = follow(&auth.url)?;
    let callback = parse_callback(&back)?.verify_state(&state)?;
    Ok(client.exchange_code_for_token(contract, &callback.code, &auth.code_verifier)?)
}
