//! The sandbox's catalogue of sources, as `discovery/sources` shows it and the onboard
//! pages onboard it: a few dozen sources across categories, countries and platforms,
//! published and not, pulled from a service or pushed to a health provider. Ids are
//! the sandbox's own, in digi.me's style (digi.me does not publish its catalogue); the
//! four services of the demo library keep theirs (16 Fitbit, 5 Instagram, 29 Spotify,
//! 30 Garmin Connect).
//!
//! Pure data: what an account of a source holds is [`crate::demo`]'s business, what
//! the discovery calls answer is [`crate::discovery`]'s.

/// Whether a source is pulled from the service or pushed by it (`sourceType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceType {
    Pull,
    Push,
}

impl SourceType {
    pub(crate) fn parse(s: &str) -> Option<SourceType> {
        match s {
            "pull" => Some(SourceType::Pull),
            "push" => Some(SourceType::Push),
            _ => None,
        }
    }
    /// `type.id` of a source.
    pub(crate) fn id(self) -> u64 {
        match self {
            SourceType::Pull => 1,
            SourceType::Push => 2,
        }
    }
    /// `type.name` (and `type.reference`) of a source.
    pub(crate) fn name(self) -> &'static str {
        match self {
            SourceType::Pull => "pull",
            SourceType::Push => "push",
        }
    }
}

/// `publishedStatus` of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Approved,
    Pending,
    Deprecated,
    Blocked,
    SampleDataOnly,
}

impl Status {
    pub(crate) const ALL: [Status; 5] = [
        Status::Approved,
        Status::Pending,
        Status::Deprecated,
        Status::Blocked,
        Status::SampleDataOnly,
    ];
    pub(crate) fn name(self) -> &'static str {
        match self {
            Status::Approved => "approved",
            Status::Pending => "pending",
            Status::Deprecated => "deprecated",
            Status::Blocked => "blocked",
            Status::SampleDataOnly => "sampledataonly",
        }
    }
    pub(crate) fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.name() == s)
    }
}

/// What an account's mapped objects are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Activity,
    Sleep,
    HeartRate,
    Workout,
    Post,
    Media,
    Comment,
    Play,
    Playlist,
    Watch,
    Transaction,
}

/// One kind of mapped file of a service's accounts.
pub(crate) struct FileSpec {
    pub(crate) object_type_id: u64,
    pub(crate) object_type: &'static str,
    pub(crate) kind: Kind,
    /// How many recent months have a file.
    pub(crate) months: i64,
}

const fn spec(object_type_id: u64, object_type: &'static str, kind: Kind, months: i64) -> FileSpec {
    FileSpec {
        object_type_id,
        object_type,
        kind,
        months,
    }
}

/// A sample data set of a source (`permission-access/sample/datasets/{sourceId}`).
pub(crate) struct SampleSet {
    /// Its key, the `sampleDataSet` of an onboard link.
    pub(crate) id: &'static str,
    pub(crate) name: &'static str,
    pub(crate) description: &'static str,
    /// Months of data per kind of file (`None`: as the live data).
    pub(crate) months: Option<i64>,
    /// Objects per file, in percent of the live data's.
    pub(crate) percent: u64,
}

const DEFAULT_SET: SampleSet = SampleSet {
    id: "default",
    name: "default",
    description: "A typical account: several months of everyday data",
    months: None,
    percent: 100,
};

const TEST_SET: SampleSet = SampleSet {
    id: "test",
    name: "test",
    description: "A small account for tests: one month of a few objects per kind",
    months: Some(1),
    percent: 10,
};

static DEFAULT_AND_TEST: [SampleSet; 2] = [DEFAULT_SET, TEST_SET];
static DEFAULT_ONLY: [SampleSet; 1] = [DEFAULT_SET];

/// A category (a service group).
pub(crate) struct Category {
    pub(crate) id: u64,
    pub(crate) name: &'static str,
    pub(crate) reference: &'static str,
    pub(crate) title: &'static str,
    pub(crate) sub_title: &'static str,
}

pub(crate) static CATEGORIES: [Category; 5] = [
    Category {
        id: 1,
        name: "Social",
        reference: "social",
        title: "Social",
        sub_title: "Posts, photos and comments",
    },
    Category {
        id: 2,
        name: "Medical",
        reference: "medical",
        title: "Medical",
        sub_title: "Records shared with your health providers",
    },
    Category {
        id: 3,
        name: "Finance",
        reference: "finance",
        title: "Finance",
        sub_title: "Accounts, cards and transactions",
    },
    Category {
        id: 4,
        name: "Health & Fitness",
        reference: "health",
        title: "Health & Fitness",
        sub_title: "Activity, sleep and workouts",
    },
    Category {
        id: 5,
        name: "Entertainment",
        reference: "entertainment",
        title: "Entertainment",
        sub_title: "Music, films and videos",
    },
];

/// A country.
pub(crate) struct Country {
    pub(crate) id: u64,
    pub(crate) code: &'static str,
    pub(crate) name: &'static str,
}

const fn country(id: u64, code: &'static str, name: &'static str) -> Country {
    Country { id, code, name }
}

pub(crate) static COUNTRIES: [Country; 8] = [
    country(1, "GB", "United Kingdom"),
    country(2, "NL", "Netherlands"),
    country(3, "US", "United States"),
    country(4, "DE", "Germany"),
    country(5, "FR", "France"),
    country(6, "IE", "Ireland"),
    country(7, "BE", "Belgium"),
    country(8, "ES", "Spain"),
];

/// A platform a source's service runs on.
pub(crate) struct Platform {
    pub(crate) id: u64,
    pub(crate) name: &'static str,
    pub(crate) reference: &'static str,
}

const fn platform(id: u64, name: &'static str, reference: &'static str) -> Platform {
    Platform {
        id,
        name,
        reference,
    }
}

pub(crate) static PLATFORMS: [Platform; 4] = [
    platform(1, "Web", "web"),
    platform(2, "iOS", "ios"),
    platform(3, "Android", "android"),
    platform(4, "Wearable", "wearable"),
];

/// A source of the catalogue: what discovery shows of it, and what its accounts hold.
pub(crate) struct Service {
    /// A short key (seeds of the demo data).
    pub(crate) key: &'static str,
    /// The source id: the `service` parameter of an onboard link.
    pub(crate) source_id: u64,
    /// The source's name.
    pub(crate) name: &'static str,
    pub(crate) source_type: SourceType,
    pub(crate) status: Status,
    /// `publishedDate`, Unix ms.
    pub(crate) published_ms: u64,
    /// Every user has an account of it from the start (when demo data is on).
    pub(crate) default_account: bool,
    /// Its category (service group).
    pub(crate) group_id: u64,
    pub(crate) group_name: &'static str,
    pub(crate) group_ref: &'static str,
    /// Its service (service type).
    pub(crate) type_id: u64,
    pub(crate) type_name: &'static str,
    pub(crate) type_ref: &'static str,
    pub(crate) provider: (u64, &'static str),
    pub(crate) alias: &'static [&'static str],
    pub(crate) abbreviation: Option<&'static str>,
    /// Country ids ([`COUNTRIES`]).
    pub(crate) countries: &'static [u64],
    /// Platform ids ([`PLATFORMS`]).
    pub(crate) platforms: &'static [u64],
    /// Reached through an aggregator (the bank is picked at the service).
    pub(crate) dynamic: bool,
    /// Push sources (health providers): their medical centres and practitioners.
    pub(crate) medical_centers: &'static [&'static str],
    pub(crate) practitioners: &'static [&'static str],
    pub(crate) sample_sets: &'static [SampleSet],
    pub(crate) files: &'static [FileSpec],
}

impl Service {
    /// Whether a link may onboard a live account of it: an approved source.
    pub(crate) fn onboardable(&self) -> bool {
        self.status == Status::Approved
    }
    /// Whether a link may onboard it with a sample data set: approved or
    /// `sampledataonly`, and the source has sets.
    pub(crate) fn sample_onboardable(&self) -> bool {
        matches!(self.status, Status::Approved | Status::SampleDataOnly)
            && !self.sample_sets.is_empty()
    }
    pub(crate) fn sample_set(&self, id: &str) -> Option<&'static SampleSet> {
        self.sample_sets.iter().find(|s| s.id == id)
    }
    /// The category of its group.
    pub(crate) fn category(&self) -> Option<&'static Category> {
        CATEGORIES.iter().find(|c| c.id == self.group_id)
    }
}

const ALL_COUNTRIES: &[u64] = &[1, 2, 3, 4, 5, 6, 7, 8];
const APPS: &[u64] = &[1, 2, 3];

/// The defaults of a pull source; each entry of [`CATALOGUE`] overrides them.
const PULL: Service = Service {
    key: "",
    source_id: 0,
    name: "",
    source_type: SourceType::Pull,
    status: Status::Approved,
    published_ms: 1_558_310_400_000,
    default_account: false,
    group_id: 1,
    group_name: "Social",
    group_ref: "social",
    type_id: 0,
    type_name: "",
    type_ref: "",
    provider: (0, ""),
    alias: &[],
    abbreviation: None,
    countries: ALL_COUNTRIES,
    platforms: APPS,
    dynamic: false,
    medical_centers: &[],
    practitioners: &[],
    sample_sets: &[],
    files: &[],
};

const SOCIAL: Service = PULL;

const HEALTH: Service = Service {
    group_id: 4,
    group_name: "Health & Fitness",
    group_ref: "health",
    platforms: &[1, 2, 3, 4],
    ..PULL
};

const ENTERTAINMENT: Service = Service {
    group_id: 5,
    group_name: "Entertainment",
    group_ref: "entertainment",
    ..PULL
};

const FINANCE: Service = Service {
    group_id: 3,
    group_name: "Finance",
    group_ref: "finance",
    dynamic: true,
    published_ms: 1_612_137_600_000,
    files: &[spec(201, "transaction", Kind::Transaction, 3)],
    ..PULL
};

/// A health provider reached over MedMij: a push source of service 40.
const MEDMIJ: Service = Service {
    source_type: SourceType::Push,
    group_id: 2,
    group_name: "Medical",
    group_ref: "medical",
    type_id: 40,
    type_name: "MedMij",
    type_ref: "medmij",
    provider: (40, "MedMij"),
    countries: &[2],
    platforms: &[1],
    published_ms: 1_673_222_400_000,
    ..PULL
};

/// The sources: first the four of the demo library, with their ids, in the order
/// their accounts come (16 Fitbit and 5 Instagram every user has; then 29 Spotify and
/// 30 Garmin Connect, the first an onboard link without `service` picks), then the
/// rest in id order.
pub(crate) static CATALOGUE: [Service; 30] = [
    Service {
        key: "fitbit",
        source_id: 16,
        name: "Fitbit",
        default_account: true,
        type_id: 12,
        type_name: "Fitbit",
        type_ref: "fitbit",
        provider: (7, "Fitbit"),
        published_ms: 1_497_484_800_000,
        sample_sets: &DEFAULT_AND_TEST,
        files: &[
            spec(300, "activity", Kind::Activity, 2),
            spec(301, "sleep", Kind::Sleep, 2),
            spec(302, "heartrate", Kind::HeartRate, 1),
        ],
        ..HEALTH
    },
    Service {
        key: "instagram",
        source_id: 5,
        name: "Instagram",
        default_account: true,
        type_id: 4,
        type_name: "Instagram",
        type_ref: "instagram",
        provider: (1, "Meta"),
        alias: &["insta", "IG"],
        abbreviation: Some("IG"),
        published_ms: 1_456_790_400_000,
        sample_sets: &DEFAULT_AND_TEST,
        files: &[
            spec(2, "post", Kind::Post, 2),
            spec(1, "media", Kind::Media, 1),
            spec(7, "comment", Kind::Comment, 1),
        ],
        ..SOCIAL
    },
    Service {
        key: "spotify",
        source_id: 29,
        name: "Spotify",
        type_id: 19,
        type_name: "Spotify",
        type_ref: "spotify",
        provider: (12, "Spotify"),
        published_ms: 1_515_542_400_000,
        files: &[
            spec(406, "play", Kind::Play, 2),
            spec(405, "playlist", Kind::Playlist, 1),
        ],
        ..ENTERTAINMENT
    },
    Service {
        key: "garmin",
        source_id: 30,
        name: "Garmin Connect",
        type_id: 20,
        type_name: "Garmin Connect",
        type_ref: "garmin",
        provider: (14, "Garmin"),
        alias: &["Garmin"],
        published_ms: 1_558_310_400_000,
        files: &[
            spec(300, "activity", Kind::Activity, 2),
            spec(303, "workout", Kind::Workout, 1),
        ],
        ..HEALTH
    },
    Service {
        key: "facebook",
        source_id: 1,
        name: "Facebook",
        type_id: 1,
        type_name: "Facebook",
        type_ref: "facebook",
        provider: (1, "Meta"),
        alias: &["fb", "Meta"],
        published_ms: 1_456_790_400_000,
        files: &[
            spec(2, "post", Kind::Post, 2),
            spec(1, "media", Kind::Media, 1),
            spec(7, "comment", Kind::Comment, 1),
        ],
        ..SOCIAL
    },
    Service {
        key: "twitter",
        source_id: 2,
        name: "Twitter",
        type_id: 3,
        type_name: "Twitter",
        type_ref: "twitter",
        provider: (3, "X Corp."),
        alias: &["X", "tweets"],
        published_ms: 1_456_790_400_000,
        files: &[
            spec(2, "post", Kind::Post, 2),
            spec(1, "media", Kind::Media, 1),
        ],
        ..SOCIAL
    },
    Service {
        key: "flickr",
        source_id: 3,
        name: "Flickr",
        status: Status::Deprecated,
        type_id: 7,
        type_name: "Flickr",
        type_ref: "flickr",
        provider: (5, "SmugMug"),
        platforms: &[1],
        published_ms: 1_497_484_800_000,
        files: &[spec(1, "media", Kind::Media, 2)],
        ..SOCIAL
    },
    Service {
        key: "pinterest",
        source_id: 4,
        name: "Pinterest",
        type_id: 8,
        type_name: "Pinterest",
        type_ref: "pinterest",
        provider: (6, "Pinterest"),
        alias: &["pins"],
        published_ms: 1_515_542_400_000,
        files: &[
            spec(2, "post", Kind::Post, 1),
            spec(1, "media", Kind::Media, 1),
        ],
        ..SOCIAL
    },
    Service {
        key: "linkedin",
        source_id: 6,
        name: "LinkedIn",
        status: Status::Pending,
        type_id: 5,
        type_name: "LinkedIn",
        type_ref: "linkedin",
        provider: (8, "Microsoft"),
        published_ms: 1_717_372_800_000,
        files: &[spec(2, "post", Kind::Post, 1)],
        ..SOCIAL
    },
    Service {
        key: "youtube",
        source_id: 7,
        name: "YouTube",
        type_id: 13,
        type_name: "YouTube",
        type_ref: "youtube",
        provider: (9, "Google"),
        alias: &["yt"],
        published_ms: 1_598_918_400_000,
        files: &[
            spec(407, "watch", Kind::Watch, 2),
            spec(405, "playlist", Kind::Playlist, 1),
        ],
        ..ENTERTAINMENT
    },
    Service {
        key: "strava",
        source_id: 17,
        name: "Strava",
        type_id: 14,
        type_name: "Strava",
        type_ref: "strava",
        provider: (15, "Strava"),
        published_ms: 1_598_918_400_000,
        files: &[
            spec(303, "workout", Kind::Workout, 2),
            spec(300, "activity", Kind::Activity, 1),
        ],
        ..HEALTH
    },
    Service {
        key: "applehealth",
        source_id: 18,
        name: "Apple Health",
        type_id: 15,
        type_name: "Apple Health",
        type_ref: "applehealth",
        provider: (16, "Apple"),
        alias: &["HealthKit"],
        platforms: &[2, 4],
        published_ms: 1_649_721_600_000,
        files: &[
            spec(300, "activity", Kind::Activity, 2),
            spec(301, "sleep", Kind::Sleep, 1),
            spec(302, "heartrate", Kind::HeartRate, 1),
        ],
        ..HEALTH
    },
    Service {
        key: "googlefit",
        source_id: 19,
        name: "Google Fit",
        status: Status::Deprecated,
        type_id: 16,
        type_name: "Google Fit",
        type_ref: "googlefit",
        provider: (9, "Google"),
        platforms: &[3, 4],
        files: &[spec(300, "activity", Kind::Activity, 2)],
        ..HEALTH
    },
    Service {
        key: "oura",
        source_id: 20,
        name: "Oura",
        status: Status::SampleDataOnly,
        type_id: 17,
        type_name: "Oura",
        type_ref: "oura",
        provider: (17, "Oura Health"),
        alias: &["Oura Ring"],
        published_ms: 1_700_438_400_000,
        sample_sets: &DEFAULT_ONLY,
        files: &[
            spec(301, "sleep", Kind::Sleep, 2),
            spec(302, "heartrate", Kind::HeartRate, 1),
        ],
        ..HEALTH
    },
    Service {
        key: "withings",
        source_id: 21,
        name: "Withings",
        status: Status::Blocked,
        type_id: 18,
        type_name: "Withings",
        type_ref: "withings",
        provider: (18, "Withings"),
        countries: &[1, 4, 5],
        files: &[spec(300, "activity", Kind::Activity, 1)],
        ..HEALTH
    },
    Service {
        key: "deezer",
        source_id: 31,
        name: "Deezer",
        type_id: 21,
        type_name: "Deezer",
        type_ref: "deezer",
        provider: (19, "Deezer"),
        countries: &[1, 4, 5, 7, 8],
        published_ms: 1_649_721_600_000,
        files: &[
            spec(406, "play", Kind::Play, 1),
            spec(405, "playlist", Kind::Playlist, 1),
        ],
        ..ENTERTAINMENT
    },
    Service {
        key: "netflix",
        source_id: 32,
        name: "Netflix",
        status: Status::Pending,
        type_id: 22,
        type_name: "Netflix",
        type_ref: "netflix",
        provider: (20, "Netflix"),
        published_ms: 1_717_372_800_000,
        files: &[spec(407, "watch", Kind::Watch, 2)],
        ..ENTERTAINMENT
    },
    Service {
        key: "soundcloud",
        source_id: 33,
        name: "SoundCloud",
        status: Status::SampleDataOnly,
        type_id: 23,
        type_name: "SoundCloud",
        type_ref: "soundcloud",
        provider: (21, "SoundCloud"),
        platforms: &[1, 2],
        sample_sets: &DEFAULT_ONLY,
        files: &[spec(406, "play", Kind::Play, 1)],
        ..ENTERTAINMENT
    },
    Service {
        key: "monzo",
        source_id: 40,
        name: "Monzo",
        type_id: 30,
        type_name: "Monzo",
        type_ref: "monzo",
        provider: (30, "Monzo Bank"),
        countries: &[1],
        platforms: &[2, 3],
        ..FINANCE
    },
    Service {
        key: "ing",
        source_id: 41,
        name: "ING Bank",
        type_id: 31,
        type_name: "ING",
        type_ref: "ing",
        provider: (31, "ING Groep"),
        alias: &["ING", "ING Diba"],
        abbreviation: Some("ING"),
        countries: &[2, 4, 7],
        ..FINANCE
    },
    Service {
        key: "chase",
        source_id: 42,
        name: "Chase",
        type_id: 32,
        type_name: "Chase",
        type_ref: "chase",
        provider: (32, "JPMorgan Chase"),
        countries: &[3],
        ..FINANCE
    },
    Service {
        key: "deutschebank",
        source_id: 43,
        name: "Deutsche Bank",
        status: Status::Pending,
        type_id: 33,
        type_name: "Deutsche Bank",
        type_ref: "deutschebank",
        provider: (33, "Deutsche Bank"),
        abbreviation: Some("DB"),
        countries: &[4],
        published_ms: 1_717_372_800_000,
        ..FINANCE
    },
    Service {
        key: "sandboxcu",
        source_id: 44,
        name: "Sandbox Credit Union",
        status: Status::SampleDataOnly,
        type_id: 34,
        type_name: "Sandbox Credit Union",
        type_ref: "sandboxcu",
        provider: (34, "Sandbox Credit Union"),
        abbreviation: Some("SCU"),
        countries: &[1, 6],
        dynamic: false,
        sample_sets: &DEFAULT_ONLY,
        ..FINANCE
    },
    Service {
        key: "delinde",
        source_id: 50,
        name: "Huisartsenpraktijk De Linde",
        abbreviation: Some("HDL"),
        alias: &["De Linde"],
        medical_centers: &[
            "Huisartsenpraktijk De Linde",
            "Gezondheidscentrum Utrecht-Oost",
        ],
        practitioners: &["Dr. A. de Vries", "Dr. M. Jansen"],
        ..MEDMIJ
    },
    Service {
        key: "amstelland",
        source_id: 51,
        name: "Ziekenhuis Amstelland",
        abbreviation: Some("ZAL"),
        medical_centers: &["Ziekenhuis Amstelland"],
        practitioners: &["Dr. P. Bakker", "Dr. S. Visser", "Dr. L. Smit"],
        ..MEDMIJ
    },
    Service {
        key: "apotheekcentrum",
        source_id: 52,
        name: "Apotheek Centrum",
        alias: &["pharmacy"],
        medical_centers: &["Apotheek Centrum Amsterdam"],
        practitioners: &["Apotheker R. Mulder"],
        ..MEDMIJ
    },
    Service {
        key: "umcsandbox",
        source_id: 53,
        name: "UMC Sandbox",
        status: Status::Pending,
        abbreviation: Some("UMCS"),
        medical_centers: &["UMC Sandbox, locatie Noord", "UMC Sandbox, locatie Zuid"],
        practitioners: &["Prof. dr. E. Meijer"],
        published_ms: 1_717_372_800_000,
        ..MEDMIJ
    },
    Service {
        key: "fysiooost",
        source_id: 54,
        name: "Fysiotherapie Oost",
        status: Status::Deprecated,
        medical_centers: &["Fysiotherapie Oost"],
        practitioners: &["K. de Boer"],
        ..MEDMIJ
    },
    Service {
        key: "ggznoord",
        source_id: 55,
        name: "GGZ Noord",
        abbreviation: Some("GGZN"),
        alias: &["mental health"],
        medical_centers: &["GGZ Noord Groningen"],
        practitioners: &["Drs. H. Dijkstra", "Dr. J. Bos"],
        ..MEDMIJ
    },
    Service {
        key: "tandartszuid",
        source_id: 56,
        name: "Tandartspraktijk Zuid",
        status: Status::Blocked,
        medical_centers: &["Tandartspraktijk Zuid"],
        practitioners: &["T. Vos"],
        ..MEDMIJ
    },
];

/// The catalogue source of a source id.
pub(crate) fn service_by_source(source_id: u64) -> Option<&'static Service> {
    CATALOGUE.iter().find(|s| s.source_id == source_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_is_consistent() {
        let ids: Vec<u64> = CATALOGUE.iter().map(|s| s.source_id).collect();
        assert_eq!(ids[..4], [16, 5, 29, 30]);
        assert!(ids[4..].windows(2).all(|w| w[0] < w[1]), "then in id order");
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
        for s in &CATALOGUE {
            assert!(!s.key.is_empty() && !s.name.is_empty(), "{}", s.source_id);
            assert!(s.category().is_some(), "{}", s.key);
            assert!(
                s.countries
                    .iter()
                    .all(|c| COUNTRIES.iter().any(|k| k.id == *c))
            );
            assert!(
                s.platforms
                    .iter()
                    .all(|p| PLATFORMS.iter().any(|k| k.id == *p))
            );
            match s.source_type {
                SourceType::Pull => {
                    assert!(!s.files.is_empty(), "{}", s.key);
                    assert!(s.medical_centers.is_empty());
                }
                SourceType::Push => {
                    assert!(s.files.is_empty(), "{}", s.key);
                    assert!(!s.medical_centers.is_empty() && !s.practitioners.is_empty());
                }
            }
            if s.status == Status::SampleDataOnly {
                assert!(s.sample_set("default").is_some(), "{}", s.key);
            }
        }
        // Service type ids name one service each (file names are built from them),
        // except the providers of MedMij, which share it.
        let mut types: Vec<u64> = CATALOGUE
            .iter()
            .filter(|s| s.source_type == SourceType::Pull)
            .map(|s| s.type_id)
            .collect();
        types.sort_unstable();
        let n = types.len();
        types.dedup();
        assert_eq!(types.len(), n);
        for (id, ty) in [(16, 12), (5, 4), (29, 19), (30, 20)] {
            assert_eq!(service_by_source(id).map(|s| s.type_id), Some(ty));
        }
    }
}
