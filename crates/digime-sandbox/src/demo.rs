//! The demo library every sandbox user has, and the generator of synthetic files.
//!
//! Nothing here is stored but the account set (which the caller passes in): the mapped
//! files (JSON arrays of objects) of each account are computed from the user id, the
//! account's service and when it was added, and the two raw demo files from the user id
//! and the user's creation time, so the same user sees the same bytes after a restart.
//! A file's content depends on its version only (a file rewritten mid-sync is version
//! 1), never on the clock. The services are a table, [`CATALOGUE`]. An account
//! onboarded with a sample data set holds that set's files instead, computed from the
//! set and the service only (the same for everyone); an account of a push source (a
//! health provider) holds no mapped file.

use crate::catalogue::{CATALOGUE, Kind, Service, SourceType, service_by_source};
use crate::state::AccountRecord;
use crate::{DEMO_APP_ID, DEMO_WRITE_CONTRACT};
use serde_json::{Value, json};

/// SplitMix64: small, fast, deterministic. Not for secrets.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Seeded from a hash of `parts`.
    pub(crate) fn from_parts(parts: &[&str]) -> Self {
        Rng(seed_of(parts))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform-ish in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// One of `items`, which every caller passes as a non-empty constant list.
    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next_u64() % items.len().max(1) as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A 64-bit seed from a hash of `parts`.
pub(crate) fn seed_of(parts: &[&str]) -> u64 {
    let joined = parts.join("\u{1f}");
    let d = digime_crypto::sha256(joined.as_bytes());
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

// ---------------------------------------------------------------------------
// Calendar helpers (proleptic Gregorian, UTC).

const DAY_MS: u64 = 86_400_000;

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

fn month_start_ms(y: i64, m: u32) -> u64 {
    (days_from_civil(y, m, 1).max(0) as u64) * DAY_MS
}

fn add_months(y: i64, m: u32, delta: i64) -> (i64, u32) {
    let idx = y * 12 + i64::from(m) - 1 + delta;
    (idx.div_euclid(12), (idx.rem_euclid(12) + 1) as u32)
}

// ---------------------------------------------------------------------------
// The accounts and what they hold.

/// The months sample data sets cover end here (2025-01-01): a set's files are the same
/// for every user, whenever they onboard it.
const SAMPLE_END: (i64, u32) = (2025, 1);

/// The accounts every user starts with (none without demo data): one per default
/// service, its id computed from the user id, added when the user was created.
pub(crate) fn default_accounts(
    user_id: &str,
    created_ms: u64,
    enabled: bool,
) -> Vec<AccountRecord> {
    if !enabled {
        return Vec::new();
    }
    CATALOGUE
        .iter()
        .filter(|s| s.default_account)
        .map(|s| {
            let mut rng = Rng::from_parts(&["account", user_id, s.key]);
            AccountRecord {
                id: format!("{}_{:012x}", s.type_id, rng.next_u64() >> 16),
                source_id: s.source_id,
                added_ms: created_ms,
                sample: false,
                sample_set: None,
            }
        })
        .collect()
}

/// A new account of `service` for `user_id`, added now (its id is fresh: an account
/// onboarded again after a deletion is another account), holding the sample data set
/// `sample_set` if given.
pub(crate) fn new_account(
    service: &Service,
    user_id: &str,
    now: u64,
    sample_set: Option<&str>,
) -> AccountRecord {
    let salt = digime_crypto::random::alphanumeric(16).unwrap_or_default();
    let mut rng = Rng::from_parts(&["account", user_id, service.key, &now.to_string(), &salt]);
    AccountRecord {
        id: format!("{}_{:012x}", service.type_id, rng.next_u64() >> 16),
        source_id: service.source_id,
        added_ms: now,
        sample: sample_set.is_some(),
        sample_set: sample_set.map(str::to_owned),
    }
}

/// One of the user's service accounts.
pub(crate) struct DemoAccount {
    /// `<serviceTypeId>_<opaque>`.
    pub(crate) id: String,
    pub(crate) service: &'static Service,
    pub(crate) username: String,
    /// `reference` in `accounts`: the username, or for a push account the reference
    /// the authorization's callback carried (`accountReference`).
    pub(crate) reference: String,
    /// When it joined the library, Unix ms.
    pub(crate) added_ms: u64,
    pub(crate) sample: bool,
    /// The sample data set it holds, if any.
    pub(crate) sample_set: Option<String>,
}

impl DemoAccount {
    /// `type` in `accounts`.
    pub(crate) fn kind(&self) -> &'static str {
        match self.service.source_type {
            SourceType::Pull => "USER",
            SourceType::Push => "PUSH",
        }
    }
}

/// The `reference` of an account: the one the `authorize` or `onboard` callback
/// carries as `accountReference` for a push account.
pub(crate) fn account_reference(service: &Service, account_id: &str) -> String {
    let opaque = account_id.split_once('_').map_or(account_id, |(_, o)| o);
    match service.source_type {
        SourceType::Push => format!("accref_{opaque}"),
        SourceType::Pull => format!("demo.{}.{}", service.key, opaque.get(..6).unwrap_or(opaque)),
    }
}

/// A mapped (service) file of the demo library.
pub(crate) struct MappedFile {
    /// Index into `DemoLibrary::accounts`.
    pub(crate) account: usize,
    pub(crate) name: String,
    pub(crate) object_type: &'static str,
    pub(crate) object_type_id: u64,
    pub(crate) kind: Kind,
    /// The month it covers, `[start, end)` in Unix ms.
    pub(crate) start_ms: u64,
    pub(crate) end_ms: u64,
    base_count: u64,
    /// The sample data set it is of (its content is the set's, the same for everyone).
    sample_set: Option<String>,
}

impl MappedFile {
    /// Objects in the file at `version`.
    pub(crate) fn object_count(&self, version: u32) -> u64 {
        self.base_count + u64::from(version)
    }
}

/// A raw file of the demo library, as if the demo write contract had pushed it.
pub(crate) struct DemoRaw {
    pub(crate) name: &'static str,
    pub(crate) mime_type: &'static str,
    tags: &'static [&'static str],
}

static DEMO_RAW: [DemoRaw; 2] = [
    DemoRaw {
        name: "demo_statement.pdf",
        mime_type: "application/pdf",
        tags: &["demo", "finance"],
    },
    DemoRaw {
        name: "demo_workouts.csv",
        mime_type: "text/csv",
        tags: &["demo", "fitness"],
    },
];

impl DemoRaw {
    /// The descriptor it was "pushed" with (a file descriptor).
    pub(crate) fn descriptor(&self) -> Value {
        json!({
            "mimeType": self.mime_type,
            "accounts": [{"accountId": "demo-account-1"}],
            "reference": [self.name],
            "tags": self.tags,
        })
    }
    pub(crate) fn app_id(&self) -> &'static str {
        DEMO_APP_ID
    }
    pub(crate) fn contract_id(&self) -> &'static str {
        DEMO_WRITE_CONTRACT
    }
}

/// A user's demo library.
pub(crate) struct DemoLibrary {
    user_id: String,
    /// When the user was created, Unix ms.
    pub(crate) created_ms: u64,
    pub(crate) accounts: Vec<DemoAccount>,
    pub(crate) files: Vec<MappedFile>,
    pub(crate) raw: &'static [DemoRaw],
}

impl DemoLibrary {
    /// The library of `user_id` with these accounts (an account of a source the
    /// catalogue does not have is left out), and the raw demo files when `demo_raw`.
    /// Each account's files cover the months before the month it was added in.
    pub(crate) fn of(
        user_id: &str,
        created_ms: u64,
        demo_raw: bool,
        accounts: &[AccountRecord],
    ) -> DemoLibrary {
        let mut lib = DemoLibrary {
            user_id: user_id.to_owned(),
            created_ms,
            accounts: Vec::new(),
            files: Vec::new(),
            raw: if demo_raw { &DEMO_RAW } else { &[] },
        };
        for rec in accounts {
            let Some(service) = service_by_source(rec.source_id) else {
                continue;
            };
            let account = lib.accounts.len();
            let reference = account_reference(service, &rec.id);
            let sample_set = rec
                .sample_set
                .as_deref()
                .and_then(|id| service.sample_set(id));
            lib.accounts.push(DemoAccount {
                id: rec.id.clone(),
                service,
                username: match sample_set {
                    Some(set) => format!("sample.{}.{}", service.key, set.id),
                    None => reference.clone(),
                },
                reference,
                added_ms: rec.added_ms,
                sample: rec.sample,
                sample_set: rec.sample_set.clone(),
            });
            // A sample account of a set the service does not have (an edited state
            // file) holds nothing.
            if rec.sample_set.is_some() && sample_set.is_none() {
                continue;
            }
            let (end_y, end_m) = match sample_set {
                Some(_) => SAMPLE_END,
                None => {
                    let (y, m, _) = civil_from_days((rec.added_ms / DAY_MS) as i64);
                    (y, m)
                }
            };
            for spec in service.files {
                let months = sample_set.and_then(|s| s.months).unwrap_or(spec.months);
                for back in (1..=months).rev() {
                    let (y, m) = add_months(end_y, end_m, -back);
                    let (ny, nm) = add_months(y, m, 1);
                    let set_part =
                        sample_set.map_or(String::new(), |s| format!("sample-{}_", s.id));
                    let name = format!(
                        "{}_{}_{}_{set_part}{y:04}{m:02}_1.json",
                        service.group_id, service.type_id, spec.object_type_id
                    );
                    let start_ms = month_start_ms(y, m);
                    let end_ms = month_start_ms(ny, nm);
                    let days = (end_ms.saturating_sub(start_ms) / DAY_MS).max(1);
                    let mut rng = match sample_set {
                        Some(_) => Rng::from_parts(&["sample-count", &name]),
                        None => Rng::from_parts(&["count", user_id, &name]),
                    };
                    let live = match spec.kind {
                        Kind::Activity => days,
                        Kind::Sleep => days - rng.range(0, 3).min(days - 1),
                        Kind::HeartRate => rng.range(180, 260),
                        Kind::Workout => rng.range(8, 24),
                        Kind::Post => rng.range(25, 60),
                        Kind::Media => rng.range(15, 40),
                        Kind::Comment => rng.range(40, 90),
                        Kind::Play => rng.range(300, 700),
                        Kind::Playlist => rng.range(5, 18),
                        Kind::Watch => rng.range(60, 200),
                        Kind::Transaction => rng.range(40, 120),
                    };
                    let percent = sample_set.map_or(100, |s| s.percent);
                    lib.files.push(MappedFile {
                        account,
                        name,
                        object_type: spec.object_type,
                        object_type_id: spec.object_type_id,
                        kind: spec.kind,
                        start_ms,
                        end_ms,
                        base_count: (live * percent / 100).max(1),
                        sample_set: sample_set.map(|s| s.id.to_owned()),
                    });
                }
            }
        }
        lib
    }

    pub(crate) fn account(&self, id: &str) -> Option<&DemoAccount> {
        self.accounts.iter().find(|a| a.id == id)
    }

    /// The content of a mapped file at `version`: a JSON array of objects.
    pub(crate) fn mapped_content(&self, file: &MappedFile, version: u32) -> Vec<u8> {
        let Some(account) = self.accounts.get(file.account) else {
            return b"[]".to_vec();
        };
        let version_text = version.to_string();
        // A sample set's content is the set's: the same for every user and account.
        let (mut rng, owner) = match &file.sample_set {
            Some(set) => (
                Rng::from_parts(&["sample-content", set, &file.name, &version_text]),
                format!("sample-{set}-{}", account.service.key),
            ),
            None => (
                Rng::from_parts(&["content", &self.user_id, &file.name, &version_text]),
                account.id.clone(),
            ),
        };
        let count = file.object_count(version);
        let span = file.end_ms.saturating_sub(file.start_ms).max(1);
        let objects: Vec<Value> = (0..count)
            .map(|i| {
                let at = file.start_ms + span * i / count + rng.range(0, span / count / 2);
                let id = format!("{owner}_{}_{}_{i}", file.object_type, at / 1000);
                object(file.kind, &mut rng, &id, at, &account.username, &owner)
            })
            .collect();
        serde_json::to_vec_pretty(&objects).unwrap_or_default()
    }

    /// The content of a raw demo file.
    pub(crate) fn raw_content(&self, raw: &DemoRaw) -> Vec<u8> {
        let mut rng = Rng::from_parts(&["raw", &self.user_id, raw.name]);
        match raw.mime_type {
            "application/pdf" => pdf_like(&mut rng),
            _ => workouts_csv(&mut rng, self.created_ms),
        }
    }
}

const WORDS: &[&str] = &[
    "morning", "run", "coffee", "city", "sunset", "friends", "weekend", "trail", "mountain",
    "beach", "dinner", "new", "book", "music", "finally", "great", "day", "with", "the", "at",
    "park", "walk", "dog", "rain", "summer", "project", "team", "happy", "birthday", "trip",
    "home", "garden", "bike", "ride", "lake", "view", "best", "ever", "tired", "but", "worth",
    "it", "training", "goal", "reached", "steps", "today", "love", "this", "place",
];

const ARTISTS: &[&str] = &[
    "The Sandbox Quartet",
    "Nova Lines",
    "Mira Vale",
    "Paper Harbour",
    "Low Tide Club",
    "Juniper & Ash",
    "Static Gardens",
    "Orla Finch",
    "The Night Buses",
    "Kite Season",
];

fn sentence(rng: &mut Rng, min: u64, max: u64) -> String {
    let n = rng.range(min, max);
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(rng.pick(WORDS));
    }
    if let Some(first) = s.get(..1) {
        let upper = first.to_ascii_uppercase();
        s.replace_range(..1, &upper);
    }
    s.push('.');
    s
}

fn object(kind: Kind, rng: &mut Rng, id: &str, at: u64, username: &str, account: &str) -> Value {
    match kind {
        Kind::Activity => {
            let steps = rng.range(1800, 16_000);
            json!({
                "id": id, "accountentityid": account, "createddate": at,
                "startdate": at - at % DAY_MS, "steps": steps,
                "distance": steps * 3 / 4, "calories": rng.range(1600, 3200),
                "activeminutes": rng.range(5, 120), "floors": rng.range(0, 25),
                "restingheartrate": rng.range(52, 72), "type": "daily",
            })
        }
        Kind::Sleep => {
            let start =
                (at - at % DAY_MS + rng.range(79_200_000, 84_600_000)).saturating_sub(DAY_MS);
            let duration = rng.range(18_000_000, 32_400_000);
            let minutes = duration / 60_000;
            let deep = minutes * rng.range(12, 22) / 100;
            let rem = minutes * rng.range(18, 25) / 100;
            let wake = minutes * rng.range(4, 10) / 100;
            json!({
                "id": id, "accountentityid": account, "createddate": start + duration,
                "startdate": start, "enddate": start + duration, "duration": duration,
                "efficiency": rng.range(70, 98), "ismainsleep": true,
                "stages": {"deep": deep, "light": minutes - deep - rem - wake, "rem": rem, "wake": wake},
            })
        }
        Kind::HeartRate => {
            let bpm = rng.range(48, 165);
            let zone = match bpm {
                0..=97 => "outofrange",
                98..=135 => "fatburn",
                136..=160 => "cardio",
                _ => "peak",
            };
            json!({"id": id, "accountentityid": account, "createddate": at, "bpm": bpm, "zone": zone, "source": "wrist"})
        }
        Kind::Post => json!({
            "id": id, "accountentityid": account, "createddate": at, "type": "status",
            "text": sentence(rng, 4, 16), "personusername": username,
            "likecount": rng.range(0, 250), "commentcount": rng.range(0, 30),
            "visibility": if rng.chance(80) { "public" } else { "friends" },
        }),
        Kind::Media => {
            let video = rng.chance(20);
            json!({
                "id": id, "accountentityid": account, "createddate": at,
                "type": if video { "video" } else { "image" },
                "caption": sentence(rng, 2, 9),
                "link": format!("https://media.sandbox.invalid/{id}.{}", if video { "mp4" } else { "jpg" }),
                "width": 1080, "height": rng.pick(&[1080u64, 1350, 1920]),
                "likecount": rng.range(0, 500), "personusername": username,
                "tags": [rng.pick(WORDS), rng.pick(WORDS)],
            })
        }
        Kind::Comment => json!({
            "id": id, "accountentityid": account, "createddate": at,
            "text": sentence(rng, 1, 10),
            "personusername": format!("friend_{}", rng.range(1, 40)),
            "postid": format!("{account}_post_{}", rng.range(1, 60)),
        }),
        Kind::Workout => {
            let sport = rng.pick(&["running", "cycling", "swimming", "walking", "hiking"]);
            let duration = rng.range(1_200_000, 7_200_000);
            let metres_per_min = match sport {
                "running" => rng.range(160, 260),
                "cycling" => rng.range(350, 600),
                "swimming" => rng.range(30, 50),
                _ => rng.range(70, 110),
            };
            let avg = rng.range(105, 165);
            json!({
                "id": id, "accountentityid": account, "createddate": at + duration,
                "startdate": at, "duration": duration, "sport": sport,
                "distance": duration / 60_000 * metres_per_min,
                "calories": duration / 60_000 * rng.range(6, 14),
                "avgheartrate": avg, "maxheartrate": avg + rng.range(10, 30),
                "elevationgain": rng.range(0, 600),
            })
        }
        Kind::Play => {
            let artist = rng.pick(ARTISTS);
            json!({
                "id": id, "accountentityid": account, "createddate": at,
                "track": {
                    "name": sentence(rng, 1, 4).trim_end_matches('.'),
                    "artist": artist,
                    "album": sentence(rng, 1, 3).trim_end_matches('.'),
                    "durationms": rng.range(120_000, 420_000),
                },
                "context": rng.pick(&["playlist", "album", "artist", "radio"]),
                "device": rng.pick(&["smartphone", "computer", "speaker"]),
                "skipped": rng.chance(15),
            })
        }
        Kind::Watch => json!({
            "id": id, "accountentityid": account, "createddate": at,
            "title": sentence(rng, 2, 7).trim_end_matches('.'),
            "channel": rng.pick(ARTISTS),
            "durationms": rng.range(60_000, 3_600_000),
            "watchedpercent": rng.range(5, 100),
            "device": rng.pick(&["tv", "smartphone", "computer", "tablet"]),
        }),
        Kind::Transaction => {
            let credit = rng.chance(15);
            let minor = if credit {
                rng.range(2_000, 350_000)
            } else {
                rng.range(150, 25_000)
            };
            json!({
                "id": id, "accountentityid": account, "createddate": at,
                "amount": if credit { minor as i64 } else { -(minor as i64) },
                "currency": rng.pick(&["GBP", "EUR", "USD"]),
                "description": rng.pick(&["Grocer", "Coffee shop", "Rail fare", "Salary", "Rent", "Bookshop", "Pharmacy", "Restaurant"]),
                "category": rng.pick(&["groceries", "eating out", "transport", "income", "bills", "shopping", "health"]),
                "status": if rng.chance(95) { "booked" } else { "pending" },
            })
        }
        Kind::Playlist => json!({
            "id": id, "accountentityid": account, "createddate": at,
            "name": sentence(rng, 1, 4).trim_end_matches('.'),
            "owner": username, "public": rng.chance(60),
            "collaborative": rng.chance(10), "trackcount": rng.range(8, 120),
            "followers": rng.range(0, 80),
        }),
    }
}

fn pdf_like(rng: &mut Rng) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    out.extend_from_slice(b"1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n");
    out.extend_from_slice(b"2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n");
    out.extend_from_slice(b"3 0 obj << /Type /Page /Parent 2 0 R /Contents 4 0 R >> endobj\n");
    let len = 12_000u64;
    out.extend_from_slice(format!("4 0 obj << /Length {len} >>\nstream\n").as_bytes());
    for _ in 0..len / 8 {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.extend_from_slice(b"\nendstream\nendobj\ntrailer << /Root 1 0 R >>\n%%EOF\n");
    out
}

fn workouts_csv(rng: &mut Rng, created_ms: u64) -> Vec<u8> {
    let mut out = String::from("date,workout,duration_min,calories,avg_bpm\n");
    let first_day = (created_ms / DAY_MS).saturating_sub(60) as i64;
    for d in 0..60 {
        if !rng.chance(55) {
            continue;
        }
        let (y, m, day) = civil_from_days(first_day + d);
        let workout = rng.pick(&["run", "ride", "swim", "walk", "yoga", "strength"]);
        out.push_str(&format!(
            "{y:04}-{m:02}-{day:02},{workout},{},{},{}\n",
            rng.range(20, 95),
            rng.range(150, 900),
            rng.range(95, 165)
        ));
    }
    out.into_bytes()
}

// ---------------------------------------------------------------------------
// Synthetic files.

/// The bytes of a synthetic file: 64-byte text lines `SEED:LINE:<33 letters>\n`, each a
/// pure function of (seed, line number), cut at `size`. Any size, constant memory.
pub(crate) struct Generator {
    seed: u64,
    size: u64,
    pos: u64,
}

const LINE: u64 = 64;

fn line(seed: u64, n: u64) -> [u8; 64] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for i in 0..16 {
        out[i] = HEX[((seed >> (60 - 4 * i)) & 15) as usize];
    }
    out[16] = b':';
    for i in 0..12 {
        out[17 + i] = HEX[((n >> (44 - 4 * i)) & 15) as usize];
    }
    out[29] = b':';
    let mut rng = Rng::new(seed ^ mix(n));
    let mut bits = rng.next_u64();
    for (i, slot) in out[30..63].iter_mut().enumerate() {
        if i == 16 {
            bits = rng.next_u64();
        }
        *slot = b'a' + (bits & 15) as u8;
        bits >>= 4;
    }
    out[63] = b'\n';
    out
}

impl Generator {
    pub(crate) fn new(seed: u64, size: u64) -> Self {
        Generator { seed, size, pos: 0 }
    }

    /// Fills `buf` with the next bytes; returns how many were written (0 at the end).
    pub(crate) fn fill(&mut self, buf: &mut [u8]) -> usize {
        let mut written = 0;
        while written < buf.len() && self.pos < self.size {
            let l = line(self.seed, self.pos / LINE);
            let off = (self.pos % LINE) as usize;
            let n = (LINE as usize - off)
                .min(buf.len() - written)
                .min((self.size - self.pos) as usize);
            buf[written..written + n].copy_from_slice(&l[off..off + n]);
            written += n;
            self.pos += n as u64;
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trips() {
        for days in [-1000i64, 0, 10_957, 19_723, 20_000, 30_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(add_months(2024, 1, -1), (2023, 12));
        assert_eq!(add_months(2024, 12, 1), (2025, 1));
    }

    #[test]
    fn library_is_deterministic_and_realistic() {
        let created = 1_718_000_000_000;
        let defaults = default_accounts("usr_x", created, true);
        let a = DemoLibrary::of("usr_x", created, true, &defaults);
        let b = DemoLibrary::of("usr_x", created, true, &defaults);
        assert_eq!(a.accounts.len(), 2);
        assert!((6..=12).contains(&a.files.len()), "{}", a.files.len());
        let total: u64 = a.files.iter().map(|f| f.object_count(0)).sum();
        assert!(total >= 300, "{total}");
        for (fa, fb) in a.files.iter().zip(&b.files) {
            assert_eq!(fa.name, fb.name);
            let ca = a.mapped_content(fa, 0);
            assert_eq!(ca, b.mapped_content(fb, 0));
            assert_ne!(ca, a.mapped_content(fa, 1));
            let parsed: Vec<Value> = serde_json::from_slice(&ca).unwrap();
            assert_eq!(parsed.len() as u64, fa.object_count(0));
        }
        assert!(a.accounts[0].id.starts_with("12_"));
        let other = DemoLibrary::of(
            "usr_y",
            created,
            true,
            &default_accounts("usr_y", created, true),
        );
        assert_ne!(other.accounts[0].id, a.accounts[0].id);
        assert!(default_accounts("usr_x", 0, false).is_empty());
        assert!(DemoLibrary::of("usr_x", 0, false, &[]).files.is_empty());
    }

    #[test]
    fn every_catalogue_service_has_files_and_unique_ids() {
        let created = 1_718_000_000_000;
        let accounts: Vec<AccountRecord> = CATALOGUE
            .iter()
            .map(|s| new_account(s, "usr_x", created, None))
            .collect();
        let lib = DemoLibrary::of("usr_x", created, false, &accounts);
        assert_eq!(lib.accounts.len(), CATALOGUE.len());
        let mut names: Vec<&str> = lib.files.iter().map(|f| f.name.as_str()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "file names are unique across services");
        for (i, s) in CATALOGUE.iter().enumerate() {
            assert!(lib.accounts[i].id.starts_with(&format!("{}_", s.type_id)));
            let files: Vec<_> = lib.files.iter().filter(|f| f.account == i).collect();
            // A push account (a health provider) holds nothing mapped.
            assert_eq!(
                files.is_empty(),
                s.source_type == SourceType::Push,
                "{}",
                s.key
            );
            for f in files {
                let parsed: Vec<Value> = serde_json::from_slice(&lib.mapped_content(f, 0)).unwrap();
                assert_eq!(parsed.len() as u64, f.object_count(0), "{}", f.name);
            }
        }
        let mut sources: Vec<u64> = CATALOGUE.iter().map(|s| s.source_id).collect();
        sources.sort_unstable();
        sources.dedup();
        assert_eq!(sources.len(), CATALOGUE.len());
        // A new account of the same service is another account.
        assert_ne!(
            new_account(&CATALOGUE[2], "usr_x", created, None).id,
            new_account(&CATALOGUE[2], "usr_x", created, None).id
        );
    }

    #[test]
    fn sample_sets_are_the_same_for_everyone_and_not_the_live_data() {
        let fitbit = service_by_source(16).unwrap();
        let a = new_account(fitbit, "usr_a", 1_718_000_000_000, Some("default"));
        let b = new_account(fitbit, "usr_b", 1_750_000_000_000, Some("default"));
        let t = new_account(fitbit, "usr_a", 1_718_000_000_000, Some("test"));
        let live = new_account(fitbit, "usr_a", 1_718_000_000_000, None);
        let la = DemoLibrary::of("usr_a", 0, false, &[a, live, t]);
        let lb = DemoLibrary::of("usr_b", 0, false, &[b]);
        let of = |lib: &DemoLibrary, i: usize| -> Vec<(String, Vec<u8>)> {
            lib.files
                .iter()
                .filter(|f| f.account == i)
                .map(|f| (f.name.clone(), lib.mapped_content(f, 0)))
                .collect()
        };
        let (sa, sb) = (of(&la, 0), of(&lb, 0));
        assert!(!sa.is_empty());
        assert_eq!(
            sa, sb,
            "a set's files do not depend on the user or the time"
        );
        assert!(sa.iter().all(|(n, _)| n.contains("_sample-default_")));
        let live = of(&la, 1);
        assert!(live.iter().all(|(n, _)| !n.contains("sample")));
        assert!(sa.iter().all(|f| !live.contains(f)));
        let test = of(&la, 2);
        assert!(test.iter().all(|(n, _)| n.contains("_sample-test_")));
        assert!(test.len() < sa.len());
        assert!(la.accounts[0].sample && !la.accounts[1].sample);
    }

    #[test]
    fn generator_is_exact_and_chunking_does_not_matter() {
        let mut whole = vec![0u8; 1000];
        assert_eq!(Generator::new(7, 1000).fill(&mut whole), 1000);
        let mut g = Generator::new(7, 1000);
        let mut pieces = Vec::new();
        let mut buf = [0u8; 37];
        loop {
            let n = g.fill(&mut buf);
            if n == 0 {
                break;
            }
            pieces.extend_from_slice(&buf[..n]);
        }
        assert_eq!(pieces, whole);
        assert_eq!(&whole[63..64], b"\n");
        assert_ne!(whole[..64], whole[64..128]);
        let mut other = vec![0u8; 1000];
        Generator::new(8, 1000).fill(&mut other);
        assert_ne!(other, whole);
    }
}
