//! A strict local emulator of the digi.me API, for tests, demos and offline work.
//!
//! Scope:
//! * In: the JWKS, `oauth/authorize`, `oauth/token` (code exchange with PKCE, refresh
//!   with rotation), the onboard pages with their consent page, `permission-access/import`,
//!   `permission-access/contract` (see [Contract details](#contract-details)), the read
//!   side (`permission-access/trigger`, the file list, file download and `HEAD`,
//!   `permission-access/accounts`), the account and authorization lifecycle
//!   (`oauth/token/reference`, `reference`, the `user-reauth`, `onboard`, `reauthorize`
//!   and `revoke` pages, `permission-access/revoke/h:accountId`, `DELETE user`, `DELETE
//!   permission-access/service/h:accountId`; see [The account and authorization
//!   lifecycle](#the-account-and-authorization-lifecycle)), storage (`POST` and `GET
//!   storage` on the API base, the files on the cloud base `/cloud/v1/`; see
//!   [Storage](#storage)), and a control API under
//!   `/_sandbox/`. Every request JWT is verified against the registered contract key;
//!   nonces are single-use; timestamps must be within five minutes; errors have the
//!   real status codes and body shapes.
//!   The postbox era (legacy writes, SDK ≤ v8) is in too, on its own API versions:
//!   see [Writing in the postbox era](#writing-in-the-postbox-era).
//!   So are [discovery](#discovery) (`discovery/sources`, `countries`, `platforms`,
//!   `categories`), [sample data sets](#sample-data-sets), [push to a
//!   provider](#push-to-a-provider) (push accounts and
//!   `permission-access/import/h:accountId/fhir/…`) and [the portability
//!   report](#the-portability-report) (`export/medmij/report`).
//! * Out (for now): `/v1.6/`.
//!
//! Start it in-process on `127.0.0.1:0`:
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let sandbox = digime_sandbox::Sandbox::start(digime_sandbox::SandboxConfig::default()).await?;
//! println!("API at {}", sandbox.info().api);
//! # Ok(()) }
//! ```
//!
//! # Reading
//!
//! Every user has a library of service accounts, each of a source of the sandbox's
//! catalogue (its own ids, in digi.me's style; digi.me does not publish its catalogue;
//! `discovery/sources` shows all 30, see [Discovery](#discovery)). The demo library is
//! made of four:
//!
//! | source id (`service`) | service (`serviceTypeId`) | group (`serviceGroupId`) | account | mapped files |
//! |---|---|---|---|---|
//! | 16 | Fitbit (12) | Health & Fitness (4) | every user's, from the start | activity, sleep, heart rate |
//! | 5 | Instagram (4) | Social (1) | every user's, from the start | posts, media, comments |
//! | 29 | Spotify (19) | Entertainment (5) | onboarded | plays, playlists |
//! | 30 | Garmin Connect (20) | Health & Fitness (4) | onboarded | activity, workouts |
//!
//! The two default accounts (`12_…`, `4_…`) are computed from the user id; once the user
//! onboards or deletes an account, the whole account set is saved (each account with
//! the time it was added), so restarts keep it. An account's mapped JSON files cover the
//! months before the month it was added in, their objects computed from the user id and
//! the file name (the defaults: nine files, several hundred objects in all). The library
//! also has two raw files (`demo_statement.pdf`, `demo_workouts.csv`) as if pushed by the
//! demo write contract. Without demo data ([`SandboxConfig::demo_data`] off) a user
//! starts with no account and no raw demo file, and can still onboard services. Every
//! other approved pull source onboards too, its account holding generic mapped files
//! of its kind (posts and media, videos watched, transactions, activity, plays; file
//! names `{category}_{service}_{objectType}_{YYYYMM}_1.json` as above). An account
//! onboarded with a sample data set holds that set's files instead (see [Sample data
//! sets](#sample-data-sets)); a push account (a health provider's) holds none and does
//! not sync. A
//! contract the user withdrew an account from (the `revoke` page) does not see it, its
//! files, nor the pushed files whose descriptor names it.
//! Files pushed through `permission-access/import` or made by `generate-files` are raw
//! files of the user's library. A reader sees raw files of its own application only.
//!
//! * `POST /v1.7/permission-access/trigger` (U bearer, a contract that may read; a
//!   write-only one gets 403 `InsufficientScope`): body checked as the session options say (bad
//!   types → 400 `ValidationErrors`, `agent` as for `authorize`) → **202**
//!   `{"session":{"key","expiry"}}` (expiry in Unix ms, 30 minutes). Honoured:
//!   `sourceFetch:false` (straight to `completed` with what the library has),
//!   `sourceFetchFilter.account.id` (only those accounts sync; the others show their
//!   existing data), `scope.serviceGroups` (group → service type → object type ids;
//!   a missing or empty level does not filter), `scope.timeRanges` (`from`/`to` in
//!   seconds, `last` as `"<n>d|m|y"`, against the month each mapped file covers) and
//!   `scope.criteria[]` (`from`, `last`, `metadata.{appId, contractId, mimeType,
//!   reference, tags, accounts[].accountId}` against raw files; any criterion may
//!   match). `limits` is only type-checked. The session of `oauth/authorize` becomes
//!   readable, with a full sync, once the user consents.
//! * `GET /v1.7/permission-access/query/{sessionKey}` → 200, the file list. The sync is
//!   simulated from the time elapsed since the session started, in steps of
//!   [`SandboxConfig::sync_step`]: step 0 `pending` (no `fileList`); then `running`,
//!   each syncing account adding two files per step (`status.details` per account
//!   `running`, then `completed`); then `completed`, or `partial` when an account was
//!   told to fail (its details entry carries the flat error, its files never appear).
//!   With [`SandboxConfig::rewrite_mid_sync`] the first file of the first account is
//!   rewritten in a later `running` list (larger `updatedDate`, one more object, new
//!   content). `updatedDate` is in ms: the step that wrote a mapped file, the push time
//!   of a raw file. Mapped entries carry `schema`, `serviceGroup`, `serviceName`,
//!   `objectType`, `objectCount` and `objectVersion`.
//! * `GET` and `HEAD /v1.7/permission-access/query/{sessionKey}/{fileName}`: a file in
//!   the session's current list, as the file envelope (RSA-OAEP-wrapped key, IV, AES-256-CBC) encrypted to the reading
//!   contract's key (fresh key and IV each time), compressed first when configured,
//!   streamed in constant memory; `content-type: application/octet-stream`,
//!   `X-Metadata` (unpadded base64url of `{"metadata", "compression"?}`: Mapped
//!   metadata, or Raw metadata with lower-case keys `mimetype`, `accounts[{accountid}]`,
//!   `reference`, `tags`, `appid`, `contractid`, `created`), `Last-Modified`, and
//!   `content-length` when uncompressed. `HEAD` sends the same headers and no body.
//! * `GET /v1.7/permission-access/accounts` → 200, a bare array of the accounts the
//!   calling contract sees, in the order they were added, with `createdDate` (when the
//!   account was added), `updatedDate` (the end of the last sync, or `createdDate` if
//!   later), `sample: true` for an account onboarded with a sample data set, `type`
//!   `USER` (`PUSH` for a push account, whose `reference` is the `accountReference` of
//!   the callback that made it; `serviceTypeId` 40, MedMij), and
//!   `accessTokenStatus` (`authorized:false` while an account fails with `reauth`; it
//!   is `true` again once the user reauthorizes the account).
//! * A sync shows the accounts in the library when it started: an account onboarded
//!   later appears from the next session on; a deleted or withdrawn one disappears from
//!   every list at once.
//!
//! Errors of the read calls: a bad or missing bearer → 406 `ValidationErrors`, a reused
//! nonce → 406 `InvalidRequest`, an unknown or expired access token (or one of another
//! contract) → 401 `InvalidToken`; an unknown session, or one of another client or
//! user → **404 `SessionNotFound`**; an expired session → **410 `SessionExpired`**
//! (never 401, which means "refresh your token"); a file not in the list → 404
//! `FileNotFound`.
//!
//! # Contract details
//!
//! * `GET /v1.7/permission-access/contract`, a client-only bearer (claims `client_id`,
//!   `nonce`, `timestamp`, checked as on every call; other claims are ignored, an
//!   `access_token` too; a body, if any, is read and ignored) → **200** with the
//!   details of the contract that signed it:
//!   `{"accessType": "w"|"r", "application": {"id", "name", "resources": {}, "status":
//!   1}, "certificate", "certificateContractSchemaVersion": "2.0", "expirationDate",
//!   "id", "partnerId", "type"}`. `accessType` is `w` for a contract that may write
//!   (a read-write one too) and `r` for a read contract; `type` is the sandbox's kind
//!   of the contract (`write`, `read`, `readwrite`); `application.name` is
//!   [`DEMO_APP_NAME`] for the demo contracts and the application id for registered
//!   ones; `partnerId` is [`SANDBOX_PARTNER_ID`]; `expirationDate` is
//!   [`CONTRACT_EXPIRATION_MS`] (Unix ms); `certificate` is the bare standard base64
//!   of the contract's registered public key (PKCS#1 DER), as the sandbox holds no
//!   contract certificate. Errors as for every bearer: bad or missing bearer (a bad
//!   signature too) → 406 `ValidationErrors`, a reused nonce or a timestamp more than
//!   five minutes off → 406 `InvalidRequest`, an unknown `client_id` → 400
//!   `InvalidClient`. Another method → 405 `MethodNotAllowed` (in the standard error
//!   shape, as on every path).
//!
//! # The account and authorization lifecycle
//!
//! * `POST /v1.7/oauth/token/reference`, a verified bearer with the claims
//!   `access_token` and `redirect_uri` (required; checked as for `authorize`: absolute,
//!   no fragment, https or loopback http, else 404 `InvalidRedirectUri`), `state`? (a
//!   string), and a JSON body with `agent` (checked as for `authorize`) and `actions`?
//!   (an object; its `pull`, if any, is checked as a trigger body and gives the options
//!   of the sync of the code's session) → **201** `{"token": JWS, "session": {"key",
//!   "expiry"}}`; the JWS payload is `{"reference_code", "token_type": "Bearer",
//!   "expires_on"}` (Unix s, 10 minutes on), the session lasts 30 minutes and is
//!   unreadable (404 `SessionNotFound`) until the code's page succeeds.
//!   * With `code_challenge` (or `code_challenge_method`) it is a **user-reauth** code:
//!     `code_challenge_method` `S256` and a 43-character base64url `code_challenge`
//!     (else 400 `ValidationErrors`). The access token must be a genuine one of the
//!     calling contract, but may have expired, since that is what reauthorization is
//!     for. An access token is remembered until 30 days after the refresh token
//!     issued with it expires (a refresh token's lifetime plus 30 days); unknown,
//!     forgotten, or another contract's → 401 `InvalidToken` "The token (access_token)
//!     is invalid".
//!   * Without, it is an **onboard** or **reauthorize-account** code (the request does
//!     not tell them apart; the page used does). The access token must be live: an
//!     expired one → 401 `InvalidToken` ("… is expired"), so that SDKs refresh and
//!     retry.
//!   * Missing claims and wrong types → 400 `ValidationErrors`; a bad bearer or a
//!     replayed nonce → 406, as everywhere.
//! * `POST /v1.7/reference`, a client-only bearer, body `{"type": "accountId"|"cloudId",
//!   "value": <non-empty string>}` (anything else → 400 `ValidationErrors`) → **200**
//!   `{"id": "ref_…"}`, a new reference each time, of the calling contract. An
//!   `accountId` reference opens the `reauthorize` page; a `cloudId` one must name a
//!   storage of the caller's application (else **404 `StorageNotFound`**) and is the
//!   `authorize` page's `storageRef` (see [Storage](#storage)).
//! * `GET /v1.7/permission-access/revoke/h:accountId` (`h:accountId` literally), a user
//!   bearer (a live access token of the calling contract; claims `access_token`,
//!   `client_id`, `nonce`, `timestamp`), headers `accountId` (an account of the user
//!   that the contract sees; else **404 `AccountNotFound`**) and `redirectUri` (checked
//!   as a `redirect_uri`, else 404 `InvalidRedirectUri`) → **201** `{"location":
//!   "{onboard}revoke?code=RVK_…"}`, a code valid for 10 minutes.
//! * `DELETE /v1.7/user`, a user bearer → **200** `{"deleted": true}`. The user is gone
//!   everywhere: every access and refresh token of the user, with any contract (401
//!   `InvalidToken` "… is invalid" from then on, refresh included), their codes,
//!   sessions, postboxes, consents, failures, withdrawals, account set, and the
//!   library's files, removed from disk. Their storages are not deleted: they are the
//!   applications' (see [Storage](#storage)).
//! * `DELETE /v1.7/permission-access/service/h:accountId`, a user bearer and the
//!   header `accountId` (an account the calling contract sees; missing, unknown or
//!   withdrawn → **404 `AccountNotFound`**) → **200** `{"deleted": true}`. The account
//!   leaves the user's library, for every contract: gone from `accounts`, its mapped
//!   files from every file list and sync (open sessions too), its failure and
//!   withdrawals forgotten. **Pushed files whose descriptor's `accounts` names it are
//!   deleted too**, from the lists and from disk: the app attributed that data to the
//!   account. Postbox items not yet imported stay (they are not in the library yet).
//! * A deletion is all or nothing. The new state is made aside; the files go out of the
//!   library into `{state dir}/trash` (renames; if one fails, those made are undone);
//!   then the new state is saved (if that fails, the files are moved back); only then
//!   are the moved files deleted. A disk failure before the save → **500
//!   `InternalError`**, nothing changed; a failure of the last step leaves files in the
//!   trash, outside every library, and the next start empties it.
//!
//! ## The onboard pages
//!
//! `GET {onboard}PAGE?code=…&…`: with [`ConsentMode::Page`] a consent page (HTML, at
//! a phone's width and usable with the keyboard) that shows what a person decides on
//! (the application and the contract, whether it reads or writes, the service and the
//! sample data set it onboards, the time range and the data its `actions.pull` scope
//! asks for, and whether it links to the user's existing library) above two alike
//! buttons, Allow and Deny. Its form posts the link's parameters and `decision=allow|deny` to
//! `{onboard}PAGE/decision`, which checks everything again; with [`ConsentMode::Auto`]
//! the page allows at once. The answer is **302** to the redirect URI of the code, its
//! own query kept and these parameters appended:
//!
//! | page | its code | link parameters | allowed |
//! |---|---|---|---|
//! | `authorize` | `oauth/authorize` | as `onboard`, all optional, plus `storageRef`? (see [Storage](#storage)) | `success=true&code&state[&postboxId&publicKey]` |
//! | `user-reauth` | `oauth/token/reference` with PKCE | `lng`?, `triggerQuery`? | `success=true&code[&state]` |
//! | `onboard` | `oauth/token/reference` without | `sourceType`, `service`?, `sampleDataSet`?, `sampleDataAutoOnboard`?, `lng`?, `includeSampleDataOnlySources`?, `triggerQuery`?, `sourcesScope`? | `success=true[&accountReference][&state]` |
//! | `reauthorize` | `oauth/token/reference` without | `accountRef`, `lng`? | `success=true[&state]` |
//! | `revoke` | `permission-access/revoke/h:accountId` | none | `result=success` |
//!
//! * Denied → `success=false&errorCode=USER_CANCEL` (`result=failed&error_message=
//!   USER_CANCEL` on `revoke`). `state` is echoed whenever the code's request carried
//!   one, on failure too.
//! * Codes live 10 minutes and are single use: an answer that sends the user back with
//!   success, `USER_CANCEL` or `ONBOARD_ERROR` spends the code. No `code`, or one the
//!   page does not know (never issued, spent, or expired and forgotten: codes are
//!   forgotten from a day after they expire) → a 400 error page (`INVALID_CODE`):
//!   there is nowhere to send the user. An expired code not yet forgotten, or one of
//!   the other kind (a PKCE code at `onboard` or
//!   `reauthorize`, one without at `user-reauth`) → `success=false&errorCode=
//!   INVALID_CODE` (`result=failed&error_message=INVALID_CODE`), the code unspent.
//! * A malformed link → a 400 error page (`ONBOARD_ERROR`), the code unspent:
//!   `sourceType` not `pull` or `push` (or missing, on `onboard`), `service` not a
//!   decimal id, a boolean not `true` or `false`, `lng` not a language tag, an empty
//!   `sampleDataSet`, no `accountRef`, a `sourcesScope` that is not, decoded twice, a
//!   JSON object whose `dataType` and `organizationType` have known values (it is only
//!   checked). Unknown parameters are ignored.
//! * `user-reauth`: the code exchanges at `oauth/token` (PKCE checked as for authorize;
//!   400 `InvalidGrant`) for a new token pair of the same user, the same library and
//!   consent id (the page asks for nothing more, such as re-onboarding an account).
//!   Earlier refresh tokens of the user and contract are left as they are:
//!   a live one stays usable until it expires or rotates, a dead one stays dead.
//! * `onboard`: `service` is a **source id** of the catalogue, of the link's
//!   `sourceType` (`pull` unless given): an `approved` source; with `sampleDataSet`, one
//!   of that source's sets, of an `approved` or `sampledataonly` source. Without
//!   `service`, the first approved pull source of the catalogue the user has no live
//!   account of (Spotify, Garmin Connect, then the others by id); a push link and a
//!   sample link must name their source. A source that is unknown, of the other type,
//!   not published (`pending`, `deprecated`, `blocked`, or `sampledataonly` without a
//!   set), a set the source does not have, or none left →
//!   `success=false&errorCode=ONBOARD_ERROR` at once, without a consent page.
//!   `sampleDataAutoOnboard=true` with a `sampleDataSet` skips the consent page (allowed
//!   at once). Allowed → a new account of the source joins the library for every
//!   contract (a fresh id, `createdDate` now; `sample: true` holding the set with a
//!   `sampleDataSet`; `type: PUSH` for a push source, and the callback carries
//!   `accountReference`, that account's `reference`); if the user already has one of
//!   that source holding the same data (live, or the same set), nothing is added, and
//!   the account is shared again with the calling contract if the user had withdrawn
//!   it from it.
//! * `authorize`: the same, for the user the consent is for, when the link has
//!   `service`, `sampleDataSet` or `sourceType=push` (else it onboards nothing); a link
//!   it cannot carry out → `ONBOARD_ERROR` at once, the code spent. The account is in
//!   the library before the session handed out with the authorization starts syncing.
//!   For a push account the callback carries `accountReference` after `state` (and
//!   before `postboxId` and `publicKey`).
//! * `reauthorize`: `accountRef` must be an `accountId` reference made by the code's
//!   contract naming an account of the code's user that the contract sees, else
//!   `ONBOARD_ERROR` at once. Allowed → the account's failure is removed
//!   (`accessTokenStatus.authorized` is `true` again, later syncs sync it).
//! * On success of `user-reauth`, `onboard` and `reauthorize`, the session handed out
//!   with the code reads the user's library and a sync starts (with the request's
//!   `actions.pull`); with `triggerQuery=false` no sync runs and the session shows the
//!   library as it is (`completed` at once, as with `sourceFetch: false`).
//! * `revoke`: allowed → the code's contract no longer sees the account: it leaves that
//!   contract's `accounts`, file lists and syncs (open sessions too), and the pushed
//!   files whose descriptor names it are hidden from it; other contracts still see it
//!   all. Onboarding the service again through that contract shares it again.
//!   `result=success` too if the account was deleted meanwhile (the contract does not
//!   see it either way).
//!
//! # Discovery
//!
//! The catalogue: 30 sources in five categories (1 Social, 2 Medical, 3 Finance, 4
//! Health & Fitness, 5 Entertainment; the `serviceGroupId`s of the read scope), eight
//! countries (1 GB, 2 NL, 3 US, 4 DE, 5 FR, 6 IE, 7 BE, 8 ES) and four platforms (1
//! web, 2 ios, 3 android, 4 wearable). 18 are `approved` (14 pull, 4 push); the others
//! `pending` (6, 32, 43, 53), `deprecated` (3, 19, 54), `blocked` (21, 56) or
//! `sampledataonly` (20, 33, 44). Pull sources are type 1; the push sources (type 2,
//! ids 50–56) are Dutch health providers reached over MedMij (service 40), with
//! `medicalCenter` and `practitioner` lists. Every call takes a client-only bearer
//! (checked as on every call; an `access_token` claim is ignored).
//!
//! * `POST /v1.7/discovery/sources`, a JSON body (absent or empty = `{}`; anything
//!   but a JSON object, or a non-empty body not `application/json` → 400
//!   `ValidationErrors`; at most 64 KiB, else 413): `limit` (integer 1..=1000, default
//!   100), `offset` (integer ≥ 0, default 0), `sort` (`{"name": "asc"|"desc"}`: by name,
//!   case-insensitive; default by id), `query` with `queryString`, `search`, `include`
//!   and `filter`. Every field is type-checked and an unknown key anywhere → 400
//!   `ValidationErrors`.
//!   * `filter` (all ANDed; within a list any value matches; an empty list is as if
//!     absent): `id: [n]`, `publishedStatus: [status]` (default `["approved"]`),
//!     `type.id: [1|2]` (default both), `service.id`, `country.id`, `category.id`,
//!     `platform.id` (`[n]` each), `sourceId: n`, `reference: [string]` (the source
//!     `reference`, exactly), `alias: [string]` (one of its aliases, exactly).
//!   * `search.{name, abbreviation, alias, medicalCenter, practitioner}: [string]`: a
//!     case-insensitive substring of that field (any value of the list; every field
//!     given must match). `queryString`: a case-insensitive substring of the name, an
//!     alias, the abbreviation, the service name or a medical centre.
//!   * `include: [field]`: each source has only `id` and the listed fields; `a.b`
//!     keeps `a` with only `b` (in every element of a list), `a` keeps all of `a`. The
//!     fields are those of a source below and their sub-fields (one a source does not
//!     have, such as `service.json`, is accepted and selects nothing: no empty object); another → 400.
//!
//!   → **200** `{"data": [source], "limit", "offset", "total"}` (`total`: how many
//!   match, before paging). A source: `{"id", "name", "reference", "alias": [...],
//!   "abbreviation"?, "publishedStatus", "publishedDate" (ms), "onboardable" (approved,
//!   or `sampledataonly` with a set), "dynamic" (banks reached through an aggregator),
//!   "type": {"id", "name": "pull"|"push", "reference"}, "service": {"id", "name",
//!   "reference", "publishedStatus", "publishedDate"}, "category": [{"id", "name",
//!   "reference"}], "country": [{"id", "code", "name"}], "platform": [{"id", "name",
//!   "reference"}], "resource": {"url", "mimetype"}, "json": {"authorisation": {"type":
//!   "saas"}}, "medicalCenter"?, "practitioner"?}` (the last two for push sources).
//! * `POST /v1.7/discovery/countries`, `…/platforms`, `…/categories`: no body, or
//!   `{"query"?: {"include"?: [field], "filter"?: {"id"?: [n]}}}` (anything else → 400
//!   `ValidationErrors`) → **200** `{"data": [...]}`, in id order. A country `{"id",
//!   "code", "name", "resource": {"url", "mimetype"}}`, a platform `{"id", "name",
//!   "reference"}`, a category `{"id", "name", "reference", "categoryTypeId", "title",
//!   "subTitle", "resource"}`; `include` as for sources, of those fields.
//!
//! # Sample data sets
//!
//! * `GET /v1.7/permission-access/sample/datasets/{sourceId}`, a client-only bearer →
//!   **200** `{"<set>": {"name", "description"}}`: `default` and `test` for Fitbit (16)
//!   and Instagram (5), `default` for the `sampledataonly` sources, `{}` for the others.
//!   A `sourceId` that is not a decimal number → 400 `ValidationErrors`; an unknown one
//!   → **404 `SourceNotFound`**.
//! * `sampleDataSet=<set>` on the `authorize` or `onboard` page (with `service`, whose
//!   set it must be) makes an account of that source with `sample: true` holding the
//!   set's mapped files: `{category}_{service}_{objectType}_sample-{set}_{YYYYMM}_1.json`,
//!   computed from the set and the file name only (the same bytes for every user,
//!   whenever onboarded; never the live data), covering the months before 2025-01
//!   (`default`: as many as the live data, `test`: one month, a tenth of the objects).
//!   They sync and read like any mapped file.
//!
//! # Push to a provider
//!
//! * Push accounts: `sourceType=push&service=<an approved push source>` on the
//!   `authorize` or `onboard` page makes an account of that provider (`type: PUSH`,
//!   `serviceTypeId` 40) and the callback carries `accountReference`, the `reference`
//!   `permission-access/accounts` lists it with.
//! * `POST /v1.7/permission-access/import/h:accountId/{standard}/{version}`
//!   (`h:accountId` literally), a U bearer, headers `accountId` and `content-type:
//!   application/json`. Checked in this order, before the body is read (a refused
//!   request has its body read and dropped, up to 64 MiB): the bearer and token (406,
//!   401 as everywhere); `standard` `fhir` and `version` `stu3` or `3.0.2` (else 400
//!   `ValidationErrors`); a contract that may write (a read contract → **403
//!   `InsufficientScope`**); the content type (400); the `accountId` header (missing →
//!   400 `ValidationErrors`; not a push account of the user that the contract sees →
//!   **404 `AccountNotFound`**). Then the body, at most 16 MiB (more → 413
//!   `PayloadTooLarge`): a JSON object that is a FHIR STU3 resource — `resourceType`
//!   one of the STU3 resource types, `id` (if any) a FHIR id, `meta` (if any) an
//!   object; a `Bundle` also a `type` of the STU3 bundle types and, if present, an
//!   `entry` array of objects each with a `resource` checked the same way (Bundles nest
//!   at most 8 deep) — else 400 `ValidationErrors`, the message saying where. →
//!   **200** `{}`. The resource is kept as sent against the account (control API
//!   `provider-pushes`); deleting the account or the user deletes it.
//!
//! # The portability report
//!
//! * `GET /v1.7/export/{serviceType}/report?format=&from=&to=`, a U bearer (any
//!   contract): `serviceType` `medmij` (else **404 `ServiceTypeNotFound`**), `format`
//!   `xml` (required; else 400 `ValidationErrors`), `from` and `to` Unix seconds
//!   (digits), `undefined`, or absent (unbounded), `from` not after `to` (else 400).
//!   → **200** `content-type: application/xml`, streamed a file at a time:
//!   `<?xml version="1.0" encoding="UTF-8"?>` and `<portabilityReport
//!   serviceType="medmij" format="xml" [from=".."] [to=".."] generated="ISO 8601">`
//!   (`generated`: when the library it shows last changed — the user made, an account
//!   added, a push come — so the same library gives the same bytes)
//!   holding one `<account id reference type sourceId serviceTypeId serviceTypeName
//!   serviceGroupId serviceGroupName sample [sampleDataSet]>` per health account the
//!   calling contract sees (categories Medical and Health & Fitness), each with an
//!   `<entry objectType objectTypeId file id createdDate time>` per mapped object whose
//!   `createddate` is within `[from, to]` (seconds, both inclusive), its other fields as
//!   `<field name="…">` (nested ones by dotted names); a push account's entries are its
//!   provider pushes (`objectType="fhir"`, by the time they came). An empty library →
//!   a report with no account.
//!
//! # Writing
//!
//! * `POST /v1.7/permission-access/import` (U bearer, a contract that may write; a read
//!   contract gets 403 `InsufficientScope`), a `FileDescriptor` header (a JWS signed
//!   with the same contract key whose payload is exactly `{"metadata": …}`, a file
//!   descriptor; missing or bad → 406 `ValidationErrors`), the file as the body (either
//!   framing, no size limit) → **201**, no body. Everything is checked before a byte of
//!   the body is read; a refused import has its body read and dropped (up to 64 MiB)
//!   before the answer. The body is streamed to a partial file, synced and renamed into
//!   place; only then does the file join the library. A body that breaks off → 400
//!   `ValidationErrors`. A failure of the sandbox's own disk (the partial file cannot
//!   be created, written, synced or renamed, or the state cannot be saved) → **500
//!   `InternalError`**, a server-side fault, not the client's; nothing is stored. Errors
//!   of the bearer and the access token as for the read calls.
//!
//! # Storage
//!
//! A storage belongs to one application (every contract of it); it is provisional until
//! it becomes a user's. A user has at most one storage per application.
//!
//! * `POST /v1.7/storage`, a client-only bearer (checked as everywhere), no body (a
//!   non-empty one → 400 `ValidationErrors`) → **201** `{"id": "stg_…", "kid":
//!   "{contractId}_{applicationId}_0"}` (the calling contract's): a new provisional
//!   storage of the contract's application on every call.
//! * `GET /v1.7/storage`, a user bearer (401 `InvalidToken` as for the read calls) →
//!   **200** `{"id", "kid"}`: the user's storage for the calling application: the one
//!   linked by the `authorize` page, else one made for the user on the first call
//!   (with the calling contract's `kid`), the same afterwards, for every contract of
//!   the application.
//! * The `authorize` page's `storageRef` must be a `cloudId` reference (`POST
//!   reference`) made by the code's contract, naming a storage of its application that
//!   is provisional or already the authorizing user's; else `success=false&errorCode=
//!   ONBOARD_ERROR` at once, the code spent (as for the `reauthorize` page's
//!   `accountRef`); an empty `storageRef` is a malformed link (400 error page). It is
//!   checked again on the decision; allowed → the storage is the user's for that
//!   application (a storage the user had for it stays the application's, no longer
//!   theirs). A storage once a user's is never linked to another user.
//! * `DELETE user` does not delete storages: the user no longer has one, and the
//!   application keeps the storage and its files (it has the id; it deletes them
//!   through the cloud API). It stays marked as that user's, so no other user gets it.
//!
//! The files are on the cloud base, [`SandboxInfo::cloud`] (`http://HOST:PORT/cloud/v1/`),
//! at `clouds/{storageId}/files/apps/{applicationId}{path}`. Every call carries a
//! storage JWT: `Authorization: Bearer <JWS>`, header exactly `{"alg":"PS512",
//! "typ":"at+jwt","kid":"{contractId}_{applicationId}_0"}` (no other key; else 406
//! `ValidationErrors`, as a missing or malformed bearer), `kid` a registered contract
//! (else **400 `InvalidClient`**), signed with its key (else **406
//! `ValidationErrors`**), claims `sub` = its application and `iss` = the contract, `aud`
//! = `"cloud"`, `iat` and `exp` integers (Unix s) with `iat` at most five minutes
//! ahead, `exp` after now ("The token is expired") and `iat ≤ exp ≤ iat + 300`; any
//! fault of the claims → **401 `InvalidToken`**. No nonce. Then, in this order: the
//! storage (unknown, or another application's → **404 `StorageNotFound`**), the
//! `{applicationId}` of the path (not exactly the JWT's `sub` → **403
//! `InsufficientScope`**), the path (segments percent-decoded, each non-empty, not `.`
//! or `..`, no space, `/` or control character, at most 255 bytes; else **400
//! `ValidationErrors`**). Another method than `GET`, `POST` and `DELETE` → 405
//! `MethodNotAllowed`; a path of another shape → 404 `NotFound`.
//!
//! * List: `GET …{folder}?recursive=true|false`, `folder` ending in `/` (`/` = the app
//!   folder); `recursive` required once, `true` or `false` (else 400) → **200**
//!   `{"files": [{"id", "name", "originalName", "originalPath", "path"}], "total"}`:
//!   the files in the folder (recursive: under it), sorted by folder then name;
//!   `originalPath` = `/apps/{applicationId}{folder of the file}` as in the request,
//!   `path` the same with the application id lower-cased. No file → `{"files": [],
//!   "total": 0}`.
//! * Upload: `POST …{folder}{name}`, `content-type: application/octet-stream` (else
//!   400), the body either framing and of any size → **201** with the file's listing
//!   entry. The bytes are stored as they came (the envelope the client made with the
//!   contract's own public key: only ciphertext). A length that is not an envelope's
//!   (at least 288 and a multiple of 16) → **400 `ValidationErrors`**, nothing stored:
//!   at once for a declared `content-length`, after the body for a chunked one. The
//!   body is streamed in constant memory to a partial file, synced, renamed into place,
//!   and only then indexed; a body that breaks off → 400, a disk failure → 500
//!   `InternalError`, nothing stored either way. The same path again replaces the file
//!   (a new `id`; the old bytes are removed).
//! * Download: `GET …{path}` of a file → **200** `application/octet-stream` with
//!   `content-length`, the stored bytes, streamed; not there → **404 `FileNotFound`**.
//!   `GET` of the app folder itself (no path) → 400.
//! * Delete: `DELETE …{path}`: a file, everything under a folder (a path ending in
//!   `/`, `/` included), or everything of the application (no path at all) → **200**
//!   `{"deleted": n}`; nothing there → **404 `FileNotFound`**. The index is saved
//!   before the bytes are removed.
//! * On disk: `{state dir}/cloud/{storageId}/{fileId}`, one file per upload, named by
//!   the sandbox (no request path becomes a path on disk, so a file and a folder may
//!   share a name); the index (folder, name, size, SHA-256) is in the state, so
//!   storages and files survive a restart with a state directory. The start removes
//!   what an interrupted upload or deletion left (partial files, unindexed bytes).
//!
//! # Every request
//!
//! * Errors are in the standard shape `{"error":{"code","message","reference"}}` with
//!   `X-Error-Code`, `X-Error-Message` and `X-Error-Reference` headers, on the control
//!   API too: an unknown path → 404 `NotFound`, a known path with another method →
//!   405 `MethodNotAllowed`. Their request bodies are read and dropped (up to 64 MiB)
//!   before the answer, so the connection stays usable.
//! * A `GET`, `HEAD`, `DELETE` or `OPTIONS` request may carry a body of at most
//!   **64 KiB**, read before the handler runs and otherwise ignored; a longer one → 413
//!   `PayloadTooLarge` (the rest is read and dropped, up to 64 MiB, so the client reads
//!   the answer), a broken or badly framed one (a malformed chunk) → 400
//!   `ValidationErrors`.
//! * `GET /_sandbox/requests` lists every request outside `/_sandbox/`, those refused
//!   before reaching an endpoint too.
//!
//! # Fault injection
//!
//! The sandbox can fail the way a real deployment does, now and then, so that a client
//! can be tested against it: [`SandboxConfig::faults`], the `--fault-*` flags of the
//! binary, or `POST /_sandbox/faults` at run time. A share (`rate`) of the requests on
//! the API paths (`/v1.*/` and `/cloud/`; never the control API nor the pages a browser
//! follows) gets a fault, drawn evenly from `kinds` by a seeded generator (the same
//! seed and the same sequence of requests give the same faults). Each applies to one
//! request, on a kept-alive connection too:
//!
//! | kind | when | what the client sees |
//! |---|---|---|
//! | `503` | before processing | 503 `ServiceUnavailable`, `Retry-After: retryAfter` |
//! | `429` | before processing | 429 `TooManyRequests`, `Retry-After: retryAfter` |
//! | `drop` | before processing | the connection reset, no answer |
//! | `expire` | before processing | the request's access token expires first, so a call that needs it gets 401 `InvalidToken` "… is expired" |
//! | `500` | after processing | 500 `InternalError` instead of the answer |
//! | `reset` | after processing | the head and half the body (32 KiB of one of unknown length), then a reset; a bodiless answer is reset before its head |
//! | `truncate` | after processing | half the body (32 KiB of one of unknown length), chunked, cleanly ended: it looks whole |
//! | `stall` | after processing | the answer, `stallMs` late |
//! | `skew` | processed | the answer of a server whose clock is `skewMs` off, either way (token and session lifetimes, the five-minute timestamp window; the simulated syncs keep the system clock) |
//!
//! "Before processing" means the handler never ran: nothing changed. "After" means the
//! handler ran and its effect is kept (a push is stored), only the answer is damaged.
//!
//! * `GET /_sandbox/faults` → `{"rate","seed","kinds","stallMs","skewMs","retryAfter",
//!   "next","requests","injected":{kind: n}}` (`requests`: the API requests counted
//!   since the last change; `injected`: the faults given, per kind).
//! * `POST /_sandbox/faults` `{"rate"?,"seed"?,"kinds"?,"stallMs"?,"skewMs"?,
//!   "retryAfter"?,"next"?: [kind]}` → the same view. The fields given replace the
//!   current ones; the draws restart from the seed and the counters from zero. `next`
//!   forces those faults, in order, on the next API requests, whatever the rate (a test
//!   that needs exactly one fault sets `next` and leaves `rate` at 0). A bad value
//!   → 400 `ValidationErrors`, nothing changed.
//! * `GET /_sandbox/requests` names the fault of each request it lists (`fault`).
//! * `POST /_sandbox/reset` puts the faults back as configured.
//!
//! # Writing in the postbox era
//!
//! Three API versions share the one state (users, contracts, tokens, sessions,
//! library): E0 on `/v1.4/` (and `/v1.0/`, for v0.5 SDKs), E1 on `/v1.5/`, E2 on
//! `/v1.7/` ([`SandboxInfo::api_version`] gives each base). The decoder every push goes
//! through is public: [`postbox`].
//!
//! * `POST {v1.0,v1.4,v1.5}/permission-access/session` (no auth) `{"appId",
//!   "contractId", "scope"?: {}, "sdkAgent": {"name","version","meta"?: {}},
//!   "accept"?: {"compression"?: string}}` → 200 `{"expiry","sessionKey",
//!   "sessionExchangeToken"}`; `expiry` is Unix **ms**, 30 minutes on (the unit is not
//!   documented). Bad types or missing fields → 400 `ValidationErrors`; an agent
//!   name not in [`SandboxConfig::agents`] → 400 `SDKInvalid` (every version is
//!   accepted: these are the old SDKs); an unknown `{appId}_{contractId}` → 404
//!   `InvalidContractId`. Such a session is never readable; it opens postbox links
//!   and authorises E0/E1 pushes. `POST /_sandbox/sessions/{key}/expire` expires it.
//! * `POST v1.5/oauth/authorize`, **no body** (a non-empty one → 400
//!   `ValidationErrors`), bearer claims checked as on v1.7
//!   (`response_type` `code`, `response_mode` `query`, `code_challenge_method` `S256`,
//!   a 43-character `code_challenge`, `redirect_uri` https or loopback http, else 404
//!   `InvalidRedirectUri`; `state` optional) → 201 `{"token": JWS}` whose only claim is
//!   `preauthorization_code` (valid 10 minutes; only a native-app link redeems it).
//! * `POST v1.5/oauth/token`, no body, `redirect_uri` claim required (400
//!   `ValidationErrors` without, 404 `InvalidRedirectUri` if unacceptable):
//!   `authorization_code` takes only a code of the native app, single use, with PKCE
//!   and the pre-authorization's `redirect_uri` (else 400 `InvalidGrant`);
//!   `refresh_token` rotates as on v1.7 (dead → 401 `InvalidToken`). → 201
//!   `{"token": JWS}` with the **flat** payload `{"access_token","refresh_token",
//!   "expires_on"}` (the access token's expiry, Unix s). v1.7 does not take native-app
//!   codes, nor v1.5 onboard-page codes (400 `InvalidGrant`). Tokens are the same
//!   store: a v1.5 refresh token refreshes on v1.7 and vice versa.
//! * `GET v1.5/jwks/oauth`: the same key set as v1.7; JWS issued on v1.5 name it in
//!   `jku`.
//! * The native app, over HTTP (a sandbox shortcut):
//!   `GET /_sandbox/app/postbox/create?<the query of the digime://postbox/create
//!   link>&user=<userId>[&decision=allow|deny]` ([`SandboxInfo::native_app_url`] maps
//!   a deep link). The user must exist (`POST /_sandbox/users`; 404 `NotFound`); the
//!   link needs `sessionKey` (a live establish-session session whose application is
//!   the link's `appId`: 404 `SessionNotFound`, 410 `SessionExpired`), `appId`, and
//!   `callbackUrl` (or v0.5's `callbackURL`; an absolute URL) (400 `ValidationErrors`
//!   when missing); the contract must be allowed to write (403 `InsufficientScope`).
//!   With `preauthorizationCode` (an ongoing link) the code must be a live v1.5
//!   pre-authorization of the same contract (400 `InvalidGrant`) and the callback its
//!   `redirect_uri` (404 `InvalidRedirectUri`). Errors are JSON and call nothing
//!   back. Allowed → a new postbox (fresh RSA-2048 key pair; one per link) and **302**
//!   to the callback, its own query kept, then `result=SUCCESS` (`POSTBOX_READY` for a
//!   v0.5 link: `callbackURL` and no `resultVersion`), `postboxId`,
//!   `publicKey` (form-encoded bare base64 of the PKCS#1 DER), and for an ongoing link
//!   `code` (an authorization code for `v1.5/oauth/token`) and `state` (when the
//!   pre-authorization had one). Denied → 302 with `result=CANCEL` (and `state`); the
//!   pre-authorization is spent either way. `result=ERROR` is never sent.
//! * E2: consent to a contract that may write (page or automatic) also gives the user
//!   a postbox for that contract (made once per user and contract, then reused):
//!   `postboxId` and `publicKey` follow `success`, `code` and `state` on the callback.
//! * `POST {v1.0,v1.4,v1.5,v1.7}/permission-access/postbox/{postboxId}`, a
//!   `multipart/form-data` body (either framing, at most 256 MiB: more → 413
//!   `PayloadTooLarge`) whose first part named `file` is the bare ciphertext. Checked,
//!   before the body is read: the postbox (unknown, or another contract's → 404
//!   `PostboxNotFound`); the credentials of the era; the envelope. Then the body is
//!   streamed: parsed, decrypted and written in constant memory.
//!   * E0 (`v1.0`, `v1.4`): headers `sessionKey` (a live session of the postbox's
//!     contract: 404 `SessionNotFound`, 410 `SessionExpired`), `symmetricalKey`, `iv`,
//!     `metadata` (missing → 400 `ValidationErrors`); no JWT; always `pending`.
//!   * E1 (`v1.5`): bearer JWT (406 as everywhere), claims `iv`, `metadata`,
//!     `symmetrical_key`, `session_key` (live, as E0), `redirect_uri` (an absolute
//!     URL) required; `access_token` optional.
//!   * E2 (`v1.7`): bearer JWT, claims `access_token`, `iv`, `metadata`,
//!     `symmetrical_key` required; `redirect_uri` (v5–v7) tolerated; `session_key`
//!     ignored.
//!   * An `access_token` that is live and of the postbox's user and contract → the
//!     file is imported now, `delivered`; absent, unknown, expired or someone else's →
//!     queued, `pending`. Never 401 (a push never makes an SDK refresh).
//!   * The envelope: a key that does not unwrap with the postbox's key (wrapped to
//!     another public key, or not OAEP-SHA1), that is not 32 bytes, an `iv` that is not
//!     32 hex digits, metadata that does not decrypt or is not a file
//!     descriptor, a file that does not decrypt (length, padding), and a body that is
//!     not multipart, has no `file` part or ends inside it → **400
//!     `ValidationErrors`** with a message naming the fault. Nothing is stored.
//!   * → 200 `{"status":"delivered"|"pending","expires":2592000}`: `expires` is the
//!     number of seconds a pending item waits in the postbox (30 days) — the same
//!     number for both statuses. Delivered and imported items are library files like
//!     those of `permission-access/import` (descriptor = the decrypted metadata, raw
//!     metadata with lower-case keys), read back by a read contract of the same
//!     application. A re-push is a new item (no dedup).
//!
//! # Control API (`/_sandbox/`, JSON, no authentication)
//!
//! * `GET info`, `GET requests` (the last 1000 API requests), `GET users`,
//!   `POST reset` (state, library and settings back to the start).
//! * `POST users` `{"id"?, "clients"?: [clientId]}` — **a sandbox shortcut**, not the
//!   digi.me API: creates the user (or reuses it) and issues tokens without the
//!   authorization flow, by default for the demo read and write contracts →
//!   `{"user":{"id","created"},"tokens":{clientId:{"accessToken":{"value","expiry"},
//!   "refreshToken":{"value","expiry"},"user":{"id"},"consentid"}}}` (each value a
//!   `UserAccessToken`).
//! * `GET users/{id}/files` → `{"files":[{"name","id","size","sha256","created",
//!   "appId","contractId","descriptor","generated"?,…}], "demo":[{"name","kind",
//!   "size","sha256",…}]}` (the demo entries are the uncompressed plaintexts, version
//!   0); `GET users/{id}/files/{name}` → the plaintext of a pushed or generated file.
//! * `POST users/{id}/generate-files` `{"count","size","compression"?: "none"|"gzip"|
//!   "brotli","prefix"?,"mimeType"?,"appId"?,"contractId"?}` → `{"files":[{"name",
//!   "size","sha256"}]}`: synthetic raw files (named `{prefix}0001.bin`…, app and
//!   contract default to the demo write contract) whose bytes are generated from a
//!   per-file seed whenever served, never stored; `sha256` is of the plaintext.
//! * `GET users/{id}/accounts` → `{"accounts":[…], "failures":{accountId: error},
//!   "revoked":{clientId:[accountId]}}`: every account of the user, whichever contract
//!   sees it, and the accounts each contract lost.
//! * `POST users/{id}/accounts/{accountId}/fail` `{"code"?,"statusCode"?,"message"?,
//!   "reauth"?}`: by default it marks the account as needing reauthorization
//!   (`ServiceAuthorizationError`, 511, "Service authorization required", `reauth`
//!   true) → `{"account","error"}`; syncs started afterwards end `partial` with that
//!   error and `accounts` shows it `authorized:false` (with `reauth`), until the user
//!   reauthorizes it on the `reauthorize` page or `DELETE` the same path heals it →
//!   `{"account","healed"}`. An account the user does not have → 404 `NotFound`.
//! * `POST users/{id}/expire-access-tokens`, `POST users/{id}/expire-refresh-tokens` →
//!   `{"expired": n}`: every such token of the user expires now. They are still
//!   genuine: an expired access token is good for a user-reauth request for 30 days
//!   and more (see `oauth/token/reference`),
//!   and an expired refresh token answers "… is expired".
//! * `GET users/{id}/refresh-tokens` → `{"refreshTokens":[{"sha256","clientId",
//!   "expires"}]}`: the user's live refresh tokens (not rotated away, not expired;
//!   `expires` in Unix s), each as the hex SHA-256 of the token, never the token.
//! * `POST sessions/{key}/expire` → the session answers 410 from now on.
//! * `GET users/{id}/provider-pushes` → `{"pushes":[{"id","accountId","sourceId",
//!   "clientId","standard","version","resourceType","entries"?,"size","sha256",
//!   "received"}]}`: what apps pushed to the user's providers, in the order it came
//!   (`entries`: a Bundle's count); `GET users/{id}/provider-pushes/{pushId}` → that
//!   resource as it was pushed (`application/fhir+json`). Unknown → 404 `NotFound`.
//! * `GET app/postbox/create?…&user=` — the native app, see
//!   [above](#writing-in-the-postbox-era).
//! * `POST users/{id}/postbox-import` — the user opens the native app (or
//!   `digime://postbox/import`): every pending item of their postboxes joins the
//!   library, with `created` = now → `{"imported":[{"name","postboxId","size",
//!   "sha256","descriptor"}],"expired":n}` (items older than 30 days are dropped and
//!   counted instead).
//! * `GET users/{id}/postboxes` → `{"postboxes":[{"id","clientId","kind":
//!   "once"|"ongoing"|"saas","created","publicKey","pending":[{"name","postboxId",
//!   "size","sha256","descriptor","pushed","expires"}]}]}`.
//! * `GET clouds` → `{"storages": [{"id", "appId", "kid", "userId" (whose storage it is
//!   now, or null), "created", "files", "bytes"}]}`; `GET clouds/{storageId}/files` →
//!   `{"files": [{"path", "folder", "name", "id", "size", "sha256", "created"}]}`
//!   (`path` under the app folder, `sha256` of the stored bytes), and with
//!   `?path=/folder/name` → those stored bytes as they are (the ciphertext); an unknown
//!   storage or file → 404 `NotFound`. `POST reset` forgets every storage too.
//! * `GET settings`; `POST settings` `{"syncStepMs"?,"rewriteMidSync"?,
//!   "compression"?,"corrupt"?: [fileName],"truncate"?: [fileName]}` → `{"settings":
//!   {…}}`. The pace and the rewrite apply to sessions started afterwards; compression
//!   and damage apply to every response from now on. A `corrupt` file is served with
//!   the pad byte of its last block flipped (decryption fails on the padding), a
//!   `truncate` file with the 272-byte header only; both still with status 200, as a
//!   broken proxy would. The lists replace the previous ones.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

// The leaf layer (imports no endpoint family).
/// The README's examples, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

mod catalogue;
mod checks;
mod clouds;
mod common;
mod demo;
pub mod faults;
mod library;
pub mod postbox;
mod serve;
pub mod state;
mod sync;
mod tokens;
// The endpoint families (each imports the leaf layer only).
mod cloud;
mod contract;
mod control;
mod discovery;
mod legacy;
mod lifecycle;
mod oauth;
mod onboard;
mod provider;
mod read;
mod report;
mod storage;
mod write;
// Composes the families.
mod router;

pub use crate::state::{AccountError, Compression};
use crate::state::{ContractKind, Persisted, RegisteredContract};
use digime_crypto::{PrivateKey, PublicKey};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// How the onboard pages answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConsentMode {
    /// An HTML page with Allow and Deny buttons.
    #[default]
    Page,
    /// Redirect straight back with success.
    Auto,
}

/// A contract to register, with its public key.
#[derive(Debug, Clone)]
pub struct ContractRegistration {
    /// Application id.
    pub app_id: String,
    /// Contract id.
    pub contract_id: String,
    /// Its public key.
    pub public_key: PublicKey,
    /// What it may do.
    pub kind: ContractKind,
}

/// Sandbox settings.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where to listen (default `127.0.0.1:0`).
    pub listen: SocketAddr,
    /// Where state, keys and library files live; a temporary directory when `None`.
    pub state_dir: Option<PathBuf>,
    /// Consent page or automatic consent.
    pub consent: ConsentMode,
    /// Lifetime of access tokens.
    pub access_token_ttl: Duration,
    /// Lifetime of refresh tokens.
    pub refresh_token_ttl: Duration,
    /// Keep a refresh token usable after it was rotated (default: it is revoked).
    pub keep_rotated_refresh_tokens: bool,
    /// Extra contracts besides the demo ones.
    pub contracts: Vec<ContractRegistration>,
    /// Accepted `agent.sdk.name` values.
    pub agents: Vec<String>,
    /// Length of one step of the simulated source sync of a read session (default 1 s;
    /// tests use a few ms). Changeable at run time (`POST /_sandbox/settings`).
    pub sync_step: Duration,
    /// Compression of served files (default none); generated files may override it.
    pub compression: Compression,
    /// Rewrite one file mid-sync: its `updatedDate` grows and its content changes in a
    /// later `running` list (default off).
    pub rewrite_mid_sync: bool,
    /// Give every user the default accounts (Fitbit, Instagram) and the raw demo files
    /// (default on); onboarding works either way.
    pub demo_data: bool,
    /// Faults injected into API requests (default: none). Changeable at run time
    /// (`POST /_sandbox/faults`); see [Fault injection](#fault-injection).
    pub faults: faults::Faults,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_dir: None,
            consent: ConsentMode::Page,
            access_token_ttl: Duration::from_secs(3600),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            keep_rotated_refresh_tokens: false,
            contracts: Vec::new(),
            agents: ["nodejs", "js", "ios", "android", "rust"]
                .map(String::from)
                .to_vec(),
            sync_step: Duration::from_secs(1),
            compression: Compression::None,
            rewrite_mid_sync: false,
            demo_data: true,
            faults: faults::Faults::default(),
        }
    }
}

/// The demo application id.
pub const DEMO_APP_ID: &str = "sandbox-demo-app";
/// The demo write contract id.
pub const DEMO_WRITE_CONTRACT: &str = "demo-write";
/// The demo read contract id.
pub const DEMO_READ_CONTRACT: &str = "demo-read";
/// The demo application's name (`application.name` of its contract details).
pub const DEMO_APP_NAME: &str = "Sandbox demo";
/// The partner every contract of the sandbox belongs to (`partnerId` of the contract
/// details).
pub const SANDBOX_PARTNER_ID: &str = "prt_sandbox";
/// When every contract of the sandbox expires (`expirationDate` of the contract
/// details): 2100-01-01T00:00:00Z, in Unix ms.
pub const CONTRACT_EXPIRATION_MS: u64 = 4_102_444_800_000;

/// One demo contract: its id and where its PKCS#1 private key is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DemoContract {
    /// Contract id.
    pub contract_id: String,
    /// Path of the PKCS#1 PEM private key.
    pub private_key_path: PathBuf,
}

impl DemoContract {
    /// Reads the private key PEM.
    pub fn private_key_pem(&self) -> std::io::Result<String> {
        std::fs::read_to_string(&self.private_key_path)
    }

    /// The contract, with its private key loaded, for an SDK client.
    pub fn contract(&self) -> std::io::Result<digime_protocol::Contract> {
        digime_protocol::Contract::from_pem(&self.contract_id, &self.private_key_pem()?)
            .map_err(std::io::Error::other)
    }
}

/// The demo application and its contracts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Demo {
    /// Application id.
    pub application_id: String,
    /// The contract that writes.
    pub write: DemoContract,
    /// The contract that reads raw data.
    pub read: DemoContract,
}

/// Where the sandbox is and what it offers (the JSON line the binary prints).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxInfo {
    /// API base, e.g. `http://127.0.0.1:PORT/v1.7/`.
    pub api: String,
    /// Onboard base, e.g. `http://127.0.0.1:PORT/apps/saas/`.
    pub onboard: String,
    /// Cloud (storage files) base, e.g. `http://127.0.0.1:PORT/cloud/v1/`.
    pub cloud: String,
    /// Control API base, e.g. `http://127.0.0.1:PORT/_sandbox/`.
    pub control: String,
    /// The demo application.
    pub demo: Demo,
}

impl SandboxInfo {
    /// An SDK configuration for the demo application, pointed at this sandbox.
    pub fn client_config(&self) -> digime_protocol::Config {
        // The sandbox's own URLs are always valid bases.
        digime_protocol::Config::new(&self.demo.application_id)
            .and_then(|c| c.with_base_url(&self.api))
            .and_then(|c| c.with_onboard_url(&self.onboard))
            .and_then(|c| c.with_cloud_base_url(&self.cloud))
            .unwrap_or_else(|e| unreachable!("sandbox URLs are valid: {e}"))
    }

    /// The control API base, `http://HOST:PORT/_sandbox/`: the field
    /// [`SandboxInfo::control`], as an owned string.
    pub fn control(&self) -> String {
        self.control.clone()
    }

    /// `http://HOST:PORT`.
    fn origin(&self) -> &str {
        self.api.strip_suffix("/v1.7/").unwrap_or(&self.api)
    }

    /// The API base of another version, `http://HOST:PORT/v1.5/` for `"v1.5"` (or
    /// `"1.5"`). Served: `v1.0` and `v1.4` (E0 postbox era), `v1.5` (E1), `v1.7`.
    pub fn api_version(&self, version: &str) -> String {
        let v = version.trim_matches('/');
        let v = v.strip_prefix('v').unwrap_or(v);
        format!("{}/v{v}/", self.origin())
    }

    /// Where the emulated native app takes a postbox-creation deep link:
    /// `digime://postbox/create?Q` → `http://HOST:PORT/_sandbox/app/postbox/create?Q&user=USER`.
    /// `None` for any other link.
    pub fn native_app_url(&self, deep_link: &str, user: &str) -> Option<String> {
        const PREFIX: &str = "digime://postbox/create";
        let head = deep_link.get(..PREFIX.len())?;
        if !head.eq_ignore_ascii_case(PREFIX) {
            return None;
        }
        let rest = &deep_link[PREFIX.len()..];
        let rest = rest.split('#').next().unwrap_or("");
        let query = match rest {
            "" => "",
            r => r.strip_prefix('?')?,
        };
        let user: String = form_urlencoded::byte_serialize(user.as_bytes()).collect();
        let sep = if query.is_empty() { "" } else { "&" };
        Some(format!(
            "{}app/postbox/create?{query}{sep}user={user}",
            self.control()
        ))
    }
}

/// A logged request (control API `requests`).
#[derive(Debug, Clone, Serialize)]
pub struct LoggedRequest {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Status answered (for a `drop` fault, the answer that was never sent).
    pub status: u16,
    /// The fault injected into it, if any (`"503"`, `"reset"`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<&'static str>,
}

/// Settings changeable at run time (control API `settings`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Settings {
    pub(crate) sync_step_ms: u64,
    pub(crate) rewrite_mid_sync: bool,
    pub(crate) compression: Compression,
    /// Files served with a corrupted last block.
    pub(crate) corrupt: BTreeSet<String>,
    /// Files served cut short after the envelope header.
    pub(crate) truncate: BTreeSet<String>,
}

impl Settings {
    pub(crate) fn from_config(config: &SandboxConfig) -> Self {
        Settings {
            sync_step_ms: (config.sync_step.as_millis() as u64).max(1),
            rewrite_mid_sync: config.rewrite_mid_sync,
            compression: config.compression,
            corrupt: BTreeSet::new(),
            truncate: BTreeSet::new(),
        }
    }
}

pub(crate) struct Inner {
    pub(crate) config: SandboxConfig,
    pub(crate) dir: PathBuf,
    pub(crate) persist: bool,
    pub(crate) contracts: HashMap<String, RegisteredContract>,
    pub(crate) signing_key: PrivateKey,
    pub(crate) kid: String,
    pub(crate) jwks: String,
    pub(crate) info: SandboxInfo,
    pub(crate) state: Mutex<Persisted>,
    pub(crate) log: Mutex<VecDeque<LoggedRequest>>,
    pub(crate) settings: Mutex<Settings>,
    pub(crate) faults: Mutex<faults::FaultState>,
}

/// Shared server state.
#[derive(Clone)]
pub(crate) struct Shared(pub(crate) Arc<Inner>);

impl std::ops::Deref for Shared {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Persisted> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// A copy of the run-time settings (never hold their lock while taking the state's).
    pub(crate) fn settings(&self) -> Settings {
        self.settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    pub(crate) fn contract(&self, client_id: &str) -> Option<RegisteredContract> {
        self.contracts.get(client_id).cloned()
    }
    pub(crate) fn library_dir(&self) -> PathBuf {
        self.dir.join("library")
    }
    /// Saves the state (atomically: temp file, then rename) when persistence is on. The
    /// file is readable by its owner only: it holds tokens and postbox private keys.
    pub(crate) fn save(&self, st: &Persisted) -> std::io::Result<()> {
        if !self.persist {
            return Ok(());
        }
        let bytes = serde_json::to_vec(st).map_err(std::io::Error::other)?;
        let tmp = self.dir.join("state.json.tmp");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        std::io::Write::write_all(&mut opts.open(&tmp)?, &bytes)?;
        std::fs::rename(tmp, self.dir.join("state.json"))
    }
}

/// The server's clock in Unix ms: the system's, off by the request's `skew` fault if
/// it has one.
pub(crate) fn now_ms() -> u64 {
    system_now_ms().saturating_add_signed(faults::skew_ms())
}

/// The system's clock in Unix ms, never skewed: the simulated source syncs run on it
/// (a real sync does not follow the clock of the server that answers).
pub(crate) fn system_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn random_id(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        digime_crypto::random::alphanumeric(24).unwrap_or_default()
    )
}

fn load_or_create_key(path: &Path) -> std::io::Result<PrivateKey> {
    if let Ok(pem) = std::fs::read_to_string(path) {
        return PrivateKey::from_pem(&pem)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())));
    }
    let key = PrivateKey::generate().map_err(std::io::Error::other)?;
    let pem = key.to_pkcs1_pem().map_err(std::io::Error::other)?;
    write_private(path, pem.as_bytes())?;
    Ok(key)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The emulator.
pub struct Sandbox;

/// A running sandbox; dropping it stops the server.
pub struct RunningSandbox {
    info: SandboxInfo,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _temp: Option<tempfile::TempDir>,
}

impl RunningSandbox {
    /// Where it is and what it offers.
    pub fn info(&self) -> &SandboxInfo {
        &self.info
    }
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// Stops the server and waits for it (state is saved after every change).
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(t) => t.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }

    /// Serves until the process is interrupted (Ctrl-C, or `SIGTERM` on Unix), then
    /// shuts down: what the `digime-sandbox` and `digime sandbox` commands do.
    pub async fn serve_until_interrupted(self) -> std::io::Result<()> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate())?;
            tokio::select! {
                r = tokio::signal::ctrl_c() => r?,
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c().await?;
        self.shutdown().await
    }
}

impl Drop for RunningSandbox {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Sandbox {
    /// Starts the sandbox on the current tokio runtime.
    pub async fn start(config: SandboxConfig) -> std::io::Result<RunningSandbox> {
        let (temp, dir, persist) = match &config.state_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (None, d.clone(), true)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("digime-sandbox-")
                    .tempdir()?;
                let p = t.path().to_path_buf();
                (Some(t), p, false)
            }
        };
        std::fs::create_dir_all(dir.join("library"))?;
        // Files a deletion moved out of the library and could not delete then.
        let _ = std::fs::remove_dir_all(dir.join("trash"));
        let signing_key = load_or_create_key(&dir.join("server-signing-key.pem"))?;
        let kid = format!(
            "sandbox-{}",
            &digime_crypto::b64url_encode(&digime_crypto::sha256(
                signing_key.public_key().to_pkcs1_der()
            ))[..12]
        );
        let mut contracts = HashMap::new();
        let demo_write_path = dir.join("demo-write-contract.pem");
        let demo_read_path = dir.join("demo-read-contract.pem");
        for (id, path, kind, name) in [
            (
                DEMO_WRITE_CONTRACT,
                &demo_write_path,
                ContractKind::Write,
                "Sandbox demo (write)",
            ),
            (
                DEMO_READ_CONTRACT,
                &demo_read_path,
                ContractKind::Read,
                "Sandbox demo (read raw data)",
            ),
        ] {
            let key = load_or_create_key(path)?;
            let c = RegisteredContract {
                app_id: DEMO_APP_ID.into(),
                contract_id: id.into(),
                key: key.public_key(),
                kind,
                name: name.into(),
                app_name: DEMO_APP_NAME.into(),
                partner_id: SANDBOX_PARTNER_ID.into(),
                expires_ms: CONTRACT_EXPIRATION_MS,
            };
            contracts.insert(c.client_id(), c);
        }
        for reg in &config.contracts {
            let c = RegisteredContract {
                app_id: reg.app_id.clone(),
                contract_id: reg.contract_id.clone(),
                key: reg.public_key.clone(),
                kind: reg.kind,
                name: format!("{} / {}", reg.app_id, reg.contract_id),
                app_name: reg.app_id.clone(),
                partner_id: SANDBOX_PARTNER_ID.into(),
                expires_ms: CONTRACT_EXPIRATION_MS,
            };
            contracts.insert(c.client_id(), c);
        }
        let persisted: Persisted = if persist {
            match std::fs::read(dir.join("state.json")) {
                Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                    std::io::Error::other(format!("{}: {e}", dir.join("state.json").display()))
                })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Persisted::default(),
                Err(e) => return Err(e),
            }
        } else {
            Persisted::default()
        };
        clouds::sweep(&dir, &persisted.cloud);

        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let host = format!("http://{addr}");
        let info = SandboxInfo {
            api: format!("{host}/v1.7/"),
            onboard: format!("{host}/apps/saas/"),
            cloud: format!("{host}/cloud/v1/"),
            control: format!("{host}/_sandbox/"),
            demo: Demo {
                application_id: DEMO_APP_ID.into(),
                write: DemoContract {
                    contract_id: DEMO_WRITE_CONTRACT.into(),
                    private_key_path: demo_write_path,
                },
                read: DemoContract {
                    contract_id: DEMO_READ_CONTRACT.into(),
                    private_key_path: demo_read_path,
                },
            },
        };
        let jwks = common::jwks_body(&signing_key.public_key(), &kid);
        config
            .faults
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let settings = Mutex::new(Settings::from_config(&config));
        let faults = Mutex::new(faults::FaultState::new(config.faults.clone()));
        let shared = Shared(Arc::new(Inner {
            config,
            settings,
            faults,
            dir,
            persist,
            contracts,
            signing_key,
            kid,
            jwks,
            info: info.clone(),
            state: Mutex::new(persisted),
            log: Mutex::new(VecDeque::new()),
        }));
        let app = router::router(shared);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            // Connections a fault can reset, with TCP_NODELAY (see `faults`).
            let listener = faults::FaultListener(listener);
            let app = app.into_make_service_with_connect_info::<faults::Conn>();
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
        });
        Ok(RunningSandbox {
            info,
            addr,
            shutdown: Some(tx),
            task: Some(task),
            _temp: temp,
        })
    }

    /// Starts the sandbox on a background thread with its own runtime, for blocking
    /// code (tests, examples). Dropping the handle stops it.
    pub fn spawn(config: SandboxConfig) -> std::io::Result<BackgroundSandbox> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("digime-sandbox".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    match Sandbox::start(config).await {
                        Ok(running) => {
                            let _ = tx.send(Ok(running.info().clone()));
                            let _ = stop_rx.await;
                            let _ = running.shutdown().await;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                });
            })?;
        let info = rx
            .recv()
            .map_err(|_| std::io::Error::other("sandbox thread ended early"))??;
        Ok(BackgroundSandbox {
            info,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

/// A sandbox running on its own thread.
pub struct BackgroundSandbox {
    info: SandboxInfo,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundSandbox {
    /// Where it is and what it offers.
    pub fn info(&self) -> &SandboxInfo {
        &self.info
    }
}

impl Drop for BackgroundSandbox {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
