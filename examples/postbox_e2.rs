//! The postbox era's last form (E2, SDK v5–v8): today's web authorization of a write
//! contract, whose callback also carries the postbox (`postboxId`, `publicKey`); the
//! code exchanged for the user's token; an encrypted push with the token in a JWT,
//! `delivered`. The access token is then expired on purpose: the push is answered
//! `pending`, the token refreshed once and the file pushed again, `delivered`.
//!
//! ```text
//! cargo run -p digime-examples --bin postbox_e2
//! ```

#[path = "support/mod.rs"]
mod support;

use digime_blocking::Client;
use digime_protocol::legacy::{PostboxAuth, parse_saas_postbox_callback};
use digime_protocol::{AuthorizeOptions, FileDescriptor};
use std::io::Cursor;

const CALLBACK: &str = "https://your.app/return";
const FILE: &[u8] = br#"{"prescription":"PX-1","items":3}"#;
const LATER: &[u8] = br#"{"prescription":"PX-2","items":1}"#;

fn main() -> support::Result<()> {
    let sandbox = support::sandbox()?;
    let info = sandbox.info();
    let client = Client::new(info.client_config());
    let contract = info.demo.write.contract()?;

    let auth = client.authorize_url(&contract, CALLBACK, "user-7", AuthorizeOptions::default())?;
    let back = support::follow(&auth.url)?;
    println!("1. Redirected back to: {}", support::redacted(&back));
    let callback = parse_saas_postbox_callback(&back)?.verify_state("user-7")?;
    let token = client.exchange_code_for_token(&contract, callback.code(), &auth.code_verifier)?;
    let user = token.user_id().ok_or("no user id")?.to_owned();
    println!(
        "2. Postbox {} for user {user}",
        callback.postbox.id.as_str()
    );

    let push = |data: &'static [u8], token| {
        client.legacy().push_to_postbox(
            &callback.postbox,
            PostboxAuth::TokenJwt {
                contract: contract.clone(),
                token,
            },
            "prescription.json",
            &FileDescriptor::new("application/json"),
            Cursor::new(data),
        )
    };
    let pushed = push(FILE, token.clone())?;
    println!("3. Pushed: {:?}", pushed.value.status);

    support::control_post(
        &sandbox,
        &format!("users/{user}/expire-access-tokens"),
        "{}",
    )?;
    let pushed = push(LATER, token)?;
    println!(
        "4. Pushed with an expired token: {:?}{}",
        pushed.value.status,
        if pushed.refreshed_token.is_some() {
            " (after one refresh; store the new token)"
        } else {
            ""
        }
    );
    support::show_library(&sandbox, &user, &[FILE, LATER])
}
