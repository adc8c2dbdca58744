//! A storage round trip: the app makes a provisional storage, gives it to the user
//! when they authorize, and keeps its own files there, encrypted to its contract's key
//! before they leave the process: upload, list, download, delete.
//!
//! Offline, against an embedded sandbox (async driver):
//!
//! ```text
//! cargo run -p digime-examples --bin storage_roundtrip
//! ```

#[path = "support/mod.rs"]
mod support;

use digime_async::Client;
use digime_protocol::{AuthorizeOptions, parse_callback};
use std::io::Cursor;
use support::{Result, follow, sandbox};

const CALLBACK: &str = "http://localhost:8080/return";

#[tokio::main]
async fn main() -> Result<()> {
    let sandbox = sandbox()?;
    let info = sandbox.info();
    let client = Client::new(info.client_config());
    let contract = info.demo.write.contract()?;

    // A storage of the app's own, before any user.
    let storage = client.create_provisional_storage(&contract).await?;
    println!("Made provisional storage {}", storage.id);

    // The user authorizes with it: it becomes theirs.
    let state = digime_crypto::random::alphanumeric(24)?;
    let options = AuthorizeOptions {
        storage_id: Some(storage.id.clone()),
        ..Default::default()
    };
    let auth = client
        .authorize_url(&contract, CALLBACK, &state, options)
        .await?;
    let callback = parse_callback(&follow(&auth.url)?)?.verify_state(&state)?;
    let token = client
        .exchange_code_for_token(&contract, &callback.code, &auth.code_verifier)
        .await?;
    let theirs = client.user_storage(&contract, &token).await?.value;
    println!("The user's storage is {}", theirs.id);
    if theirs.id != storage.id {
        return Err("the user's storage is not the one given at authorization".into());
    }

    // Files of the app's own, encrypted as they stream.
    let files: [(&str, &str, &[u8]); 3] = [
        ("/notes", "today.txt", b"Walked 8 km along the river."),
        ("/notes/2026", "goals.json", br#"{"steps":10000}"#),
        ("/", "settings.json", br#"{"theme":"dark"}"#),
    ];
    for (folder, name, bytes) in files {
        client
            .upload_storage_file(&contract, &storage.id, folder, name, Cursor::new(bytes))
            .await?;
    }
    let listing = client
        .list_storage_files(&contract, &storage.id, "/", true)
        .await?;
    println!("The storage holds {} files:", listing.total);
    for f in &listing.files {
        println!("  {}{}", f.path, f.name);
    }
    let top = client
        .list_storage_files(&contract, &storage.id, "/notes", false)
        .await?;
    println!("/notes/ alone holds {} file(s).", top.total);

    for (folder, name, bytes) in files {
        let path = format!("{}/{name}", folder.trim_end_matches('/'));
        let mut back = Vec::new();
        client
            .download_storage_file(&contract, &storage.id, &path, &mut back)
            .await?;
        if back != bytes {
            return Err(format!("{path} came back different").into());
        }
    }
    println!("Every file came back as it was uploaded.");

    client
        .delete_storage_files(&contract, &storage.id, "/notes/")
        .await?;
    let left = client
        .list_storage_files(&contract, &storage.id, "/", true)
        .await?;
    println!("After deleting /notes/: {} file(s) left.", left.total);
    if left.total != 1 {
        return Err("the folder's files are still there".into());
    }
    println!("OK: storage round trip done.");
    Ok(())
}
