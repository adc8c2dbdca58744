//! The postbox era, ongoing push (E1, SDK v4): a session, the pre-authorization with
//! PKCE, the native app creating the postbox and calling back with a code, the code
//! exchanged for the user's token (SDK v4's flat form), then two pushes, the second one
//! later with the stored token, each `delivered` straight into the library.
//!
//! ```text
//! cargo run -p digime-examples --bin postbox_ongoing
//! ```

#[path = "support/mod.rs"]
mod support;

use digime_blocking::Client;
use digime_protocol::legacy::{PostboxAuth, parse_ongoing_postbox_callback};
use digime_protocol::{FileDescriptor, UserAccessToken};
use std::io::Cursor;

const CALLBACK: &str = "https://your.app/postbox-return";
const FIRST: &[u8] = br#"{"reading":1,"kwh":12.5}"#;
const SECOND: &[u8] = br#"{"reading":2,"kwh":13.75}"#;

fn main() -> support::Result<()> {
    let sandbox = support::sandbox()?;
    let info = sandbox.info();
    let client = Client::new(
        info.client_config()
            .with_base_url(&info.api_version("v1.5"))?,
    );
    let contract = info.demo.write.contract()?;
    let user = support::control_post(&sandbox, "users", "{}")?["user"]["id"]
        .as_str()
        .ok_or("no user")?
        .to_owned();

    let session = client.legacy().establish_session(contract.id(), None)?;
    let state = digime_crypto::random::alphanumeric(16)?;
    let ongoing = client.legacy().create_postbox_url_ongoing(
        &contract,
        &session.session_key,
        CALLBACK,
        Some(&state),
    )?;
    println!(
        "1. Deep link (keep the code verifier): {}",
        support::redacted(&ongoing.url)
    );
    let back = support::follow(
        &info
            .native_app_url(&ongoing.url, &user)
            .ok_or("not a deep link")?,
    )?;
    let callback = parse_ongoing_postbox_callback(&back)?.verify_state(&state)?;
    println!("2. Postbox {} created", callback.postbox.id.as_str());
    let token = client.legacy().exchange_code_for_token_ongoing(
        &contract,
        CALLBACK,
        callback.code(),
        &ongoing.code_verifier,
    )?;
    // An app stores the token (and the postbox) for the pushes to come.
    let mut stored = serde_json::to_string(&token)?;
    println!("3. Token stored ({} bytes of JSON)", stored.len());

    for (n, data) in [FIRST, SECOND].into_iter().enumerate() {
        let token: UserAccessToken = serde_json::from_str(&stored)?;
        let pushed = client.legacy().push_to_postbox(
            &callback.postbox,
            PostboxAuth::SessionJwt {
                contract: contract.clone(),
                session_key: session.session_key.clone(),
                redirect_uri: CALLBACK.into(),
                token: Some(token),
            },
            &format!("reading-{}.json", n + 1),
            &FileDescriptor::new("application/json"),
            Cursor::new(data),
        )?;
        println!("{}. Push {}: {:?}", 4 + n, n + 1, pushed.value.status);
        if let Some(new) = &pushed.refreshed_token {
            println!("   (the token was refreshed; the new one is stored)");
            stored = serde_json::to_string(new)?;
        }
    }
    support::show_library(&sandbox, &user, &[FIRST, SECOND])
}
