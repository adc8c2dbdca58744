//! `digime`: the digi.me SDK from the shell. Authorize a user through a loopback
//! callback, push files into their library, read the library into a folder, manage
//! tokens, accounts and storage, and run the local sandbox; with `--json`, every
//! command answers in one JSON object a script can read. The commands, their flags
//! and the exit codes are in `README.md` and `digime --help`.

mod callback;
mod exit;
mod files;
mod settings;
mod tokens;

use clap::{Args, CommandFactory, Parser, Subcommand};
use digime_blocking::Client;
use digime_protocol::{
    AuthorizeOptions, FileDescriptor, FileHead, PullOptions, ReadAllEvent, ReadAllOptions,
    parse_callback,
};
use exit::Failure;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokens::TokenFile;

/// The digi.me SDK from the shell.
#[derive(Parser, Debug)]
#[command(name = "digime", version, about, after_help = exit::HELP)]
struct Cli {
    #[command(flatten)]
    global: settings::Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start the local digi.me emulator, print its JSON line, and serve until interrupted.
    Sandbox(SandboxArgs),
    /// Authorize a user: print (and open) the authorization URL, receive the redirect
    /// on a loopback listener, exchange the code, and write the token file.
    Authorize(AuthorizeArgs),
    /// Authorize the same user again when their refresh token has died; the token
    /// file is replaced.
    Reauthorize(ReauthorizeArgs),
    /// Push files into the user's library (a write contract).
    Push(PushArgs),
    /// Read the user's whole library into a folder (a read contract); re-runnable.
    ReadAll(ReadAllArgs),
    /// The user's source accounts.
    Accounts(TokenArg),
    /// Open a read session and list its files and sync state.
    Files(TokenArg),
    /// What the contract allows.
    Contract,
    /// The token file: show it (no secret) or refresh it.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Delete the user: their library and every token of theirs.
    DeleteUser(DeleteUserArgs),
    /// Delete one of the user's accounts and its data.
    DeleteAccount(DeleteAccountArgs),
    /// The sources a user can onboard (one page).
    Sources(SourcesArgs),
    /// The user's cloud storage.
    #[command(subcommand)]
    Storage(StorageCommand),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug)]
struct SandboxArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// `auto` redirects straight back (for scripts); `page` shows the consent page.
    #[arg(long, value_enum, default_value_t = Consent::Page)]
    consent: Consent,
    /// Where the sandbox keeps its state and keys (kept across runs); a temporary
    /// folder when absent.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Seconds an access token lives (to see refreshes happen).
    #[arg(long)]
    access_token_ttl: Option<u64>,
    /// Write the profiles `sandbox` (the demo write contract) and `sandbox-read` (the
    /// demo read contract) into this profile file, for `--profile-file F --profile P`.
    #[arg(long, value_name = "FILE")]
    write_profiles: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Consent {
    Page,
    Auto,
}

#[derive(Args, Debug)]
struct CallbackArgs {
    /// The redirect URI registered for the contract. An `http` loopback address
    /// (`http://127.0.0.1:PORT/path`, port 0 for any free port) is listened on;
    /// for any other, paste the URL the browser was sent back to.
    #[arg(long)]
    callback: String,
    /// Do not try to open a browser.
    #[arg(long)]
    no_open: bool,
    /// Seconds to wait for the browser to come back.
    #[arg(long, default_value_t = 600)]
    wait: u64,
}

#[derive(Args, Debug)]
struct AuthorizeArgs {
    #[command(flatten)]
    callback: CallbackArgs,
    /// Where to write the token (atomically, readable by you alone).
    #[arg(long, env = "DIGIME_TOKEN")]
    token: PathBuf,
    /// A token of the same user for another contract: the new contract links to
    /// their library.
    #[arg(long, value_name = "FILE")]
    link_token: Option<PathBuf>,
    /// The state to send and check on the way back (random when absent).
    #[arg(long)]
    state: Option<String>,
    /// Give the user a cloud storage at authorization (`storage` commands).
    #[arg(long)]
    with_storage: bool,
}

#[derive(Args, Debug)]
struct ReauthorizeArgs {
    #[command(flatten)]
    callback: CallbackArgs,
    /// The user's token file (its tokens may have expired); replaced by the new one.
    #[arg(long, env = "DIGIME_TOKEN")]
    token: PathBuf,
}

#[derive(Args, Debug)]
struct TokenArg {
    /// The user's token file; a refreshed token is written back to it.
    #[arg(long, env = "DIGIME_TOKEN")]
    token: PathBuf,
}

#[derive(Args, Debug)]
struct PushArgs {
    #[command(flatten)]
    token: TokenArg,
    /// The MIME type of every file (by default guessed from its extension).
    #[arg(long)]
    mime: Option<String>,
    /// A tag for every file (repeatable).
    #[arg(long = "tag", value_name = "T")]
    tags: Vec<String>,
    /// A reference for every file (repeatable; by default the file's name).
    #[arg(long = "reference", value_name = "R")]
    references: Vec<String>,
    /// The files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

#[derive(Args, Debug)]
struct ReadAllArgs {
    #[command(flatten)]
    token: TokenArg,
    /// Downloads at once.
    #[arg(long, default_value_t = digime_protocol::read_all::DEFAULT_MAX_CONCURRENCY)]
    concurrency: usize,
    /// Seconds between file-list calls while the sync runs.
    #[arg(long, default_value_t = 3.0)]
    poll: f64,
    /// The folder (created if missing).
    dir: PathBuf,
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// The user and the expiry of each token; never the tokens themselves.
    Show(TokenArg),
    /// Refresh the token now and write the new one back.
    Refresh(TokenArg),
}

#[derive(Args, Debug)]
struct DeleteUserArgs {
    #[command(flatten)]
    token: TokenArg,
    /// Confirm: the user's library is gone for good.
    #[arg(long)]
    yes: bool,
}

#[derive(Args, Debug)]
struct DeleteAccountArgs {
    #[command(flatten)]
    token: TokenArg,
    /// The account id (from `digime accounts`).
    account: String,
}

#[derive(Args, Debug)]
struct SourcesArgs {
    /// Free text to search for.
    #[arg(long)]
    search: Option<String>,
    /// Page size.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Page offset.
    #[arg(long, default_value_t = 0)]
    offset: u32,
}

#[derive(Subcommand, Debug)]
enum StorageCommand {
    /// List a folder (the application's root by default).
    Ls {
        #[command(flatten)]
        token: TokenArg,
        /// The folder, e.g. `/backups/`.
        #[arg(default_value = "/")]
        folder: String,
        /// Subfolders too.
        #[arg(long, short)]
        recursive: bool,
    },
    /// Upload a local file to a storage folder (the same path again replaces it).
    Put {
        #[command(flatten)]
        token: TokenArg,
        /// The local file.
        file: PathBuf,
        /// The folder.
        #[arg(default_value = "/")]
        folder: String,
        /// The name in storage (the local name by default).
        #[arg(long)]
        name: Option<String>,
    },
    /// Download a storage file to a local file (written whole or not at all).
    Get {
        #[command(flatten)]
        token: TokenArg,
        /// The storage path, e.g. `/backups/x.json`.
        path: String,
        /// The local file.
        out: PathBuf,
    },
    /// Delete a file (`/a/x.json`), a folder and all in it (`/a/`), or everything (`/`).
    Rm {
        #[command(flatten)]
        token: TokenArg,
        /// The storage path.
        path: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.global.json;
    match run(cli) {
        Ok(value) => {
            if json && !value.is_null() {
                println!("{value}");
            }
            ExitCode::SUCCESS
        }
        Err(failure) => failure.report(json),
    }
}

/// What a command says: human lines as it goes (on stderr when `--json`), one
/// JSON object at the end.
struct Out {
    json: bool,
}

impl Out {
    fn line(&self, text: impl std::fmt::Display) {
        if self.json {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }

    /// A progress target: hidden with `--json` (and, by indicatif, off a terminal).
    fn bars(&self) -> MultiProgress {
        if self.json {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        } else {
            MultiProgress::new()
        }
    }
}

fn run(cli: Cli) -> Result<serde_json::Value, Failure> {
    let out = Out {
        json: cli.global.json,
    };
    let global = cli.global;
    match cli.command {
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "digime", &mut std::io::stdout());
            Ok(serde_json::Value::Null)
        }
        Command::Sandbox(args) => sandbox(args, &out),
        Command::Authorize(args) => {
            let s = global.resolve()?;
            authorize(&s, args, &out)
        }
        Command::Reauthorize(args) => {
            let s = global.resolve()?;
            reauthorize(&s, args, &out)
        }
        Command::Push(args) => push(&global.resolve()?, args, &out),
        Command::ReadAll(args) => read_all(&global.resolve()?, args, &out),
        Command::Accounts(t) => {
            let s = global.resolve()?;
            let (client, token) = s.client_with(&t.token)?;
            let accounts = token.spend(client.read_accounts(&s.contract, &token.get()))?;
            for a in &accounts {
                out.line(format!(
                    "{:<24} {:<20} {}{}",
                    a.id,
                    a.service_type_name,
                    a.service_group_name,
                    a.username
                        .as_deref()
                        .map(|u| format!(" ({u})"))
                        .unwrap_or_default()
                ));
            }
            token.finish()?;
            Ok(json!({ "accounts": accounts }))
        }
        Command::Files(t) => {
            let s = global.resolve()?;
            let (client, token) = s.client_with(&t.token)?;
            let session = token.spend(client.read_session(
                &s.contract,
                &token.get(),
                &PullOptions::default(),
            ))?;
            let list =
                token.spend(client.read_file_list(&s.contract, &token.get(), &session.key))?;
            out.line(format!("sync {}", list.status.state));
            for f in &list.file_list {
                out.line(format!("{:<48} updated {}", f.name, f.updated_date));
            }
            token.finish()?;
            Ok(json!({ "status": list.status, "files": list.file_list }))
        }
        Command::Contract => {
            let s = global.resolve()?;
            let details = Client::new(s.config.clone()).contract_details(&s.contract)?;
            let v = serde_json::to_value(&details).unwrap_or_default();
            out.line(format!(
                "contract {} ({}), application {}, expires {}",
                details.id,
                v["accessType"].as_str().unwrap_or("?"),
                v["application"]["name"].as_str().unwrap_or("?"),
                details.expiration_date
            ));
            Ok(v)
        }
        Command::Token(TokenCommand::Show(t)) => {
            let token = TokenFile::open(&t.token)?.get();
            let shown = tokens::describe(&token);
            out.line(format!(
                "user {}\naccess token expires  {}\nrefresh token expires {}",
                shown["user"].as_str().unwrap_or("?"),
                shown["accessTokenExpiry"],
                shown["refreshTokenExpiry"]
            ));
            Ok(shown)
        }
        Command::Token(TokenCommand::Refresh(t)) => {
            let s = global.resolve()?;
            let (client, token) = s.client_with(&t.token)?;
            let new = client.refresh_token(&s.contract, &token.get())?;
            token.store(&new)?;
            out.line(format!(
                "refreshed; the new token is in {}",
                t.token.display()
            ));
            Ok(tokens::describe(&new))
        }
        Command::DeleteUser(args) => {
            if !args.yes {
                return Err(Failure::input(
                    "delete-user deletes the user's whole library: add --yes to confirm",
                ));
            }
            let s = global.resolve()?;
            let (client, token) = s.client_with(&args.token.token)?;
            token.spend(client.delete_user(&s.contract, &token.get()))?;
            token.finish()?;
            out.line("the user and their library are deleted");
            Ok(json!({ "deleted": true }))
        }
        Command::DeleteAccount(args) => {
            let s = global.resolve()?;
            let (client, token) = s.client_with(&args.token.token)?;
            token.spend(client.delete_account(&s.contract, &token.get(), &args.account))?;
            token.finish()?;
            out.line(format!("account {} and its data are deleted", args.account));
            Ok(json!({ "deleted": args.account }))
        }
        Command::Sources(args) => {
            let s = global.resolve()?;
            let query = digime_protocol::SourcesQuery {
                limit: Some(args.limit),
                offset: Some(args.offset),
                query_string: args.search,
                ..Default::default()
            };
            let page = Client::new(s.config.clone()).query_sources(&s.contract, &query)?;
            for source in &page.data {
                out.line(format!(
                    "{:>6} {}",
                    source.id,
                    source.name.as_deref().unwrap_or("")
                ));
            }
            out.line(format!(
                "{} of {} sources from {}",
                page.data.len(),
                page.total,
                page.offset
            ));
            Ok(serde_json::to_value(&page).unwrap_or_default())
        }
        Command::Storage(cmd) => storage(&global.resolve()?, cmd, &out),
    }
}

fn sandbox(args: SandboxArgs, out: &Out) -> Result<serde_json::Value, Failure> {
    use digime_sandbox::{ConsentMode, Sandbox, SandboxConfig};
    let mut config = SandboxConfig {
        listen: args.listen,
        state_dir: args.state_dir,
        consent: match args.consent {
            Consent::Page => ConsentMode::Page,
            Consent::Auto => ConsentMode::Auto,
        },
        ..Default::default()
    };
    if let Some(ttl) = args.access_token_ttl {
        config.access_token_ttl = Duration::from_secs(ttl);
    }
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Failure::local(format!("cannot start a runtime: {e}")))?;
    runtime.block_on(async move {
        let running = Sandbox::start(config)
            .await
            .map_err(|e| Failure::local(format!("cannot start the sandbox: {e}")))?;
        let info = running.info();
        // The JSON line comes first on stdout, whatever the output mode: scripts read it.
        println!("{}", serde_json::to_string(info).unwrap_or_default());
        if let Some(file) = &args.write_profiles {
            settings::write_sandbox_profiles(file, info)?;
            eprintln!(
                "profiles `sandbox` and `sandbox-read` written to {}",
                file.display()
            );
        }
        if !out.json {
            eprintln!("digi.me sandbox serving at {} (Ctrl-C to stop)", info.api);
        }
        running
            .serve_until_interrupted()
            .await
            .map_err(|e| Failure::local(format!("sandbox: {e}")))?;
        // The JSON line was the answer: nothing more is printed.
        Ok(serde_json::Value::Null)
    })
}

fn authorize(
    s: &settings::Settings,
    args: AuthorizeArgs,
    out: &Out,
) -> Result<serde_json::Value, Failure> {
    let client = Client::new(s.config.clone());
    let state = match args.state {
        Some(state) => state,
        None => random_state()?,
    };
    let waiter = callback::Waiter::bind(&args.callback.callback)?;
    let mut options = AuthorizeOptions::default();
    if let Some(link) = &args.link_token {
        let token = TokenFile::open(link)?.get();
        // The service links only with a live access token, and refreshing it takes its
        // own contract: say so rather than be refused.
        if token
            .access_token
            .is_expired_at(std::time::SystemTime::now())
        {
            return Err(Failure::input(format!(
                "the access token in {} has expired: refresh it first with `digime token refresh --token {}` and its own contract",
                link.display(),
                link.display()
            )));
        }
        options.user_access_token = Some(token);
    }
    if args.with_storage {
        options.storage_id = Some(client.create_provisional_storage(&s.contract)?.id);
    }
    let auth = client.authorize_url(&s.contract, waiter.callback(), &state, options)?;
    let back = Back {
        waiter: &waiter,
        auth: &auth,
        state: &state,
        args: &args.callback,
    };
    come_back(&client, s, back, &args.token, "authorized", out)
}

/// An authorization under way: where the browser comes back, and what to check.
struct Back<'a> {
    waiter: &'a callback::Waiter,
    auth: &'a digime_protocol::auth::AuthorizeUrl,
    state: &'a str,
    args: &'a CallbackArgs,
}

/// Waits for the browser, checks the callback's state, exchanges its code and writes
/// the token file.
fn come_back(
    client: &Client,
    s: &settings::Settings,
    back: Back<'_>,
    token_path: &Path,
    done: &str,
    out: &Out,
) -> Result<serde_json::Value, Failure> {
    let redirect = (back.waiter).wait(&back.auth.url, back.state, back.args, out)?;
    let cb = parse_callback(&redirect)?.verify_state(back.state)?;
    let token = client.exchange_code_for_token(&s.contract, &cb.code, &back.auth.code_verifier)?;
    tokens::write(token_path, &token)?;
    out.line(format!(
        "{done} user {}; the token is in {} (readable by you alone)",
        token.user_id().unwrap_or("?"),
        token_path.display()
    ));
    Ok(tokens::describe(&token))
}

/// A fresh `state` for an authorization.
fn random_state() -> Result<String, Failure> {
    digime_crypto::random::alphanumeric(24)
        .map_err(|e| Failure::local(format!("no randomness: {e}")))
}

fn reauthorize(
    s: &settings::Settings,
    args: ReauthorizeArgs,
    out: &Out,
) -> Result<serde_json::Value, Failure> {
    let client = Client::new(s.config.clone());
    let old = TokenFile::open(&args.token)?.get();
    let state = random_state()?;
    let waiter = callback::Waiter::bind(&args.callback.callback)?;
    let options = digime_protocol::auth::ReauthorizeOptions {
        state: Some(state.clone()),
        ..Default::default()
    };
    let auth = client.reauthorize_url(&s.contract, waiter.callback(), &old, options)?;
    let back = Back {
        waiter: &waiter,
        auth: &auth,
        state: &state,
        args: &args.callback,
    };
    come_back(&client, s, back, &args.token, "reauthorized", out)
}

fn bytes_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:>24} {bar:30} {bytes:>10}/{total_bytes:<10} {bytes_per_sec}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn push(s: &settings::Settings, args: PushArgs, out: &Out) -> Result<serde_json::Value, Failure> {
    let (client, token) = s.client_with(&args.token.token)?;
    let bars = out.bars();
    let mut pushed = Vec::new();
    for path in &args.paths {
        let file = std::fs::File::open(path)
            .map_err(|e| Failure::input(format!("{}: {e}", path.display())))?;
        let len = file
            .metadata()
            .map_err(|e| Failure::input(format!("{}: {e}", path.display())))?
            .len();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut descriptor = FileDescriptor::new(
            args.mime
                .clone()
                .unwrap_or_else(|| files::guess_mime(path).into()),
        );
        descriptor.reference = Some(if args.references.is_empty() {
            vec![name.clone()]
        } else {
            args.references.clone()
        });
        if !args.tags.is_empty() {
            descriptor.tags = Some(args.tags.clone());
        }
        let bar = bars.add(
            ProgressBar::new(len)
                .with_style(bytes_style())
                .with_prefix(name.clone()),
        );
        let body = files::Progress::new(file, bar.clone());
        let started = Instant::now();
        token.spend(client.push_to_library(&s.contract, &token.get(), &descriptor, body))?;
        bar.finish();
        out.line(format!(
            "pushed {} ({len} bytes, {}) in {:.1?}",
            path.display(),
            descriptor.mime_type,
            started.elapsed()
        ));
        pushed.push(json!({ "path": path, "bytes": len, "mimeType": descriptor.mime_type }));
    }
    token.finish()?;
    Ok(json!({ "pushed": pushed }))
}

fn read_all(
    s: &settings::Settings,
    args: ReadAllArgs,
    out: &Out,
) -> Result<serde_json::Value, Failure> {
    let (client, token) = s.client_with(&args.token.token)?;
    let folder = files::Folder::open(&args.dir)?;
    let already = folder.already_read();
    let skipped = already.len();
    let session =
        token.spend(client.read_session(&s.contract, &token.get(), &PullOptions::default()))?;
    let options = ReadAllOptions {
        max_concurrency: args.concurrency.max(1),
        poll_interval: Duration::try_from_secs_f64(args.poll)
            .map_err(|_| Failure::input("--poll must be a number of seconds"))?,
        already_read: already,
        ..Default::default()
    };
    let bars = out.bars();
    let overall = bars.add(
        ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    );
    overall.enable_steady_tick(Duration::from_millis(200));
    overall.set_message(format!("sync pending; {skipped} files already here"));
    let started = Instant::now();
    let (mut read, mut failed, mut bytes) = (0usize, 0usize, 0u64);
    let mut errors = Vec::new();
    let open = |head: &FileHead| {
        let bar = bars.add(
            ProgressBar::new_spinner()
                .with_style(
                    ProgressStyle::with_template("{prefix:>48} {bytes:>10} {bytes_per_sec}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                )
                .with_prefix(head.name.clone()),
        );
        folder.partial(&head.name, bar)
    };
    let summary = client.read_all_files_to(
        &s.contract,
        &token.get(),
        &session.key,
        options,
        open,
        |event| match event {
            ReadAllEvent::StatusChanged(status) => {
                overall.set_message(format!("sync {}; {read} files read", status.state))
            }
            ReadAllEvent::File(head) => match folder.complete(&head) {
                Ok(n) => {
                    read += 1;
                    bytes += n;
                    overall.set_message(format!("{read} files read, {failed} failed"));
                }
                Err(e) => {
                    failed += 1;
                    errors.push(json!({ "file": head.name, "error": e.to_string() }));
                }
            },
            ReadAllEvent::FileError { entry, error } => {
                folder.discard(&entry.name);
                failed += 1;
                bars.suspend(|| eprintln!("{}: {error}", entry.name));
                errors.push(json!({ "file": entry.name, "error": error.to_string() }));
            }
            ReadAllEvent::TokenRefreshed(new) => token.set(new),
            _ => {}
        },
    );
    overall.finish_and_clear();
    let summary = token.spend(summary.map(|s| digime_protocol::flow::Authed {
        refreshed_token: s.refreshed_token.clone(),
        value: s,
    }))?;
    // The last list gives each file's updatedDate, for the next run to compare with.
    let last = token.spend(client.read_file_list(&s.contract, &token.get(), &session.key))?;
    folder.save(&last.file_list)?;
    token.finish()?;
    let secs = started.elapsed().as_secs_f64();
    out.line(format!(
        "{read} files read ({bytes} bytes in {secs:.1} s), {skipped} already here and unchanged, {failed} failed; sync {}{}",
        summary.status.state,
        if summary.timed_out { " (timed out)" } else { "" }
    ));
    if failed > 0 {
        return Err(Failure::partial(
            format!("{failed} files could not be read"),
            json!({
                "read": read, "skipped": skipped, "failed": failed, "errors": errors,
            }),
        ));
    }
    Ok(json!({
        "read": read,
        "skipped": skipped,
        "failed": failed,
        "bytes": bytes,
        "seconds": secs,
        "status": summary.status,
        "dir": args.dir,
    }))
}

fn storage(
    s: &settings::Settings,
    cmd: StorageCommand,
    out: &Out,
) -> Result<serde_json::Value, Failure> {
    let token_path = match &cmd {
        StorageCommand::Ls { token, .. }
        | StorageCommand::Put { token, .. }
        | StorageCommand::Get { token, .. }
        | StorageCommand::Rm { token, .. } => &token.token,
    };
    let (client, token) = s.client_with(token_path)?;
    let storage = token
        .spend(client.user_storage(&s.contract, &token.get()))?
        .id;
    token.finish()?;
    match cmd {
        StorageCommand::Ls {
            folder, recursive, ..
        } => {
            let list = client.list_storage_files(&s.contract, &storage, &folder, recursive)?;
            for f in &list.files {
                out.line(format!("{}{}", f.path, f.name));
            }
            Ok(serde_json::to_value(&list).unwrap_or_default())
        }
        StorageCommand::Put {
            file, folder, name, ..
        } => {
            let name = match name {
                Some(n) => n,
                None => file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .ok_or_else(|| Failure::input("the file has no name: give --name"))?,
            };
            let body = std::fs::File::open(&file)
                .map_err(|e| Failure::input(format!("{}: {e}", file.display())))?;
            let len = body.metadata().map(|m| m.len()).unwrap_or(0);
            let bars = out.bars();
            let bar = bars.add(
                ProgressBar::new(len)
                    .with_style(bytes_style())
                    .with_prefix(name.clone()),
            );
            client.upload_storage_file(
                &s.contract,
                &storage,
                &folder,
                &name,
                files::Progress::new(body, bar.clone()),
            )?;
            bar.finish();
            out.line(format!("uploaded {} to {folder} as {name}", file.display()));
            Ok(json!({ "folder": folder, "name": name, "bytes": len }))
        }
        StorageCommand::Get {
            path, out: local, ..
        } => {
            let n = files::write_whole(&local, |sink| {
                client.download_storage_file(&s.contract, &storage, &path, sink)
            })?;
            out.line(format!(
                "downloaded {path} to {} ({n} bytes)",
                local.display()
            ));
            Ok(json!({ "path": path, "file": local, "bytes": n }))
        }
        StorageCommand::Rm { path, .. } => {
            client.delete_storage_files(&s.contract, &storage, &path)?;
            out.line(format!("deleted {path}"));
            Ok(json!({ "deleted": path }))
        }
    }
}

impl settings::Settings {
    /// A client that writes every refreshed token back to `path`, and that token file.
    fn client_with(&self, path: &Path) -> Result<(Client, TokenFile), Failure> {
        let token = TokenFile::open(path)?;
        let listener = token.listener();
        let client = Client::new(self.config.clone()).on_token_refreshed(move |t| listener(t));
        Ok((client, token))
    }
}
