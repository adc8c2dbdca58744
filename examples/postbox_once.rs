//! The postbox era, one-off push (E0, SDK v0.5–v3): establish a session, have the
//! native app create a postbox from the `digime://postbox/create` deep link, push an
//! encrypted file with the session key in plain headers (the answer is `pending`), then
//! let the user open the app, which imports it; the library holds the file.
//!
//! ```text
//! cargo run -p digime-examples --bin postbox_once [-- --e1]
//! ```
//! With `--e1` the push is SDK v4's one-off push instead: a JWT with the session key.

#[path = "support/mod.rs"]
mod support;

use digime_blocking::Client;
use digime_protocol::FileDescriptor;
use digime_protocol::legacy::{PostboxAuth, parse_postbox_callback};
use std::io::Cursor;

const FILE: &[u8] = br#"{"receipt":7,"total":3.2,"currency":"EUR"}"#;
const CALLBACK: &str = "https://your.app/postbox-ready";

fn main() -> support::Result<()> {
    let e1 = std::env::args().any(|a| a == "--e1");
    let sandbox = support::sandbox()?;
    let info = sandbox.info();
    let version = if e1 { "v1.5" } else { "v1.4" };
    let client = Client::new(
        info.client_config()
            .with_base_url(&info.api_version(version))?,
    );
    let contract = info.demo.write.contract()?;
    // The user of the native digi.me app.
    let user = support::control_post(&sandbox, "users", "{}")?["user"]["id"]
        .as_str()
        .ok_or("no user")?
        .to_owned();

    let session = client.legacy().establish_session(contract.id(), None)?;
    println!("1. Session established (API {version})");
    let link = client
        .legacy()
        .create_postbox_url_once(&session.session_key, CALLBACK)?;
    // The link holds the session key: it goes to the user's device, not to a log.
    println!("2. Deep link for the native app made (keep its state for the callback)");
    let back = support::follow(
        &info
            .native_app_url(&link.url, &user)
            .ok_or("not a deep link")?,
    )?;
    let callback = parse_postbox_callback(&back, &link.state)?;
    println!(
        "3. Postbox {} created ({:?})",
        callback.postbox.id.as_str(),
        callback.result
    );

    let auth = if e1 {
        PostboxAuth::SessionJwt {
            contract: contract.clone(),
            session_key: session.session_key.clone(),
            redirect_uri: CALLBACK.into(),
            token: None,
        }
    } else {
        PostboxAuth::Headers {
            session_key: session.session_key.clone(),
        }
    };
    let mut descriptor = FileDescriptor::new("application/json");
    descriptor.tags = Some(vec!["receipt".into()]);
    let pushed = client.legacy().push_to_postbox(
        &callback.postbox,
        auth,
        "receipt-7.json",
        &descriptor,
        Cursor::new(FILE),
    )?;
    println!("4. Pushed {} bytes: {:?}", FILE.len(), pushed.value.status);

    let imported = support::control_post(&sandbox, &format!("users/{user}/postbox-import"), "{}")?;
    println!(
        "5. The user opens digi.me: {} item(s) imported",
        imported["imported"].as_array().map_or(0, Vec::len)
    );
    support::show_library(&sandbox, &user, &[FILE])
}
