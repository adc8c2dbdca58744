//! The simulated source sync of a read session, shared by the read calls, the session
//! an authorization hands out, and the control API.
//!
//! A session's sync is simulated lazily: the file list is a pure function of the
//! session's [`SyncPlan`] and the time elapsed since the sync started, counted in steps
//! of `step_ms`. Step 0 is `pending`; from step 1 the list is `running`, each syncing
//! account adding [`BATCH`] files per step; an account is `completed` one step after its
//! last batch (a failing account shows `running` for one or two steps and then `partial`
//! with its error, and none of its files); the session ends `completed`, or `partial`
//! when an account failed. Accounts that do not sync (`sourceFetch:false`, or left out
//! by `sourceFetchFilter`) show what the library already has from step 1 on (at once
//! with `sourceFetch:false`, which is `completed` from the start). Raw (pushed) files of
//! the reading contract's application appear from step 1 on. The library is the one the
//! reading contract sees now (a deleted or withdrawn account is gone at once), minus the
//! accounts added after the sync started (they are in the next session's sync).

use crate::catalogue::SourceType;
use crate::checks::ApiFailure;
use crate::demo::DemoLibrary;
use crate::library::{library_for, named_accounts};
use crate::state::{
    AccountError, Criterion, GroupFilter, LibraryFile, Persisted, ReadScope, SyncPlan, TypeFilter,
};
use crate::{Settings, Shared};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Files each syncing account adds to the list per step.
pub(crate) const BATCH: usize = 2;

/// What a session asks of its sync (the trigger body; the defaults for the session of
/// an authorization).
#[derive(Debug, Default)]
pub(crate) struct SessionOptions {
    pub(crate) fetch: Option<bool>,
    pub(crate) only_accounts: Option<Vec<String>>,
    pub(crate) scope: ReadScope,
}

/// Starts a sync of the library `client_id` sees of `user_id`, now; records when it
/// will end (the library's mapped data is dated from then on). Shared by `trigger` and
/// the sessions the OAuth calls hand out.
pub(crate) fn start_sync(
    shared: &Shared,
    st: &mut Persisted,
    settings: &Settings,
    user_id: &str,
    client_id: &str,
    opts: SessionOptions,
    now: u64,
) -> SyncPlan {
    let created = st.users.get(user_id).map_or(now, |u| u.created);
    let ends = st.sync_ends.entry(user_id.to_owned()).or_default();
    let library_ms = ends
        .iter()
        .copied()
        .filter(|&e| e <= now)
        .max()
        .unwrap_or(0)
        .max(created);
    let plan = SyncPlan {
        // On the system clock, as `view` counts the steps.
        started_ms: crate::system_now_ms(),
        step_ms: settings.sync_step_ms.max(1),
        fetch: opts.fetch.unwrap_or(true),
        only_accounts: opts.only_accounts,
        failures: st
            .account_failures
            .get(user_id)
            .cloned()
            .unwrap_or_default(),
        rewrite: settings.rewrite_mid_sync,
        library_ms,
        scope: opts.scope,
    };
    if plan.fetch
        && let Some(lib) = library_for(shared, st, user_id, Some(client_id))
    {
        let t = Timeline::of(&lib, &plan);
        let ends = st.sync_ends.entry(user_id.to_owned()).or_default();
        ends.push(now.saturating_add(t.done_step.saturating_mul(plan.step_ms)));
        if ends.len() > 8 {
            ends.remove(0);
        }
    }
    plan
}

struct AccountPlan {
    /// In the library when the sync started (an account onboarded later is not part of
    /// this session).
    present: bool,
    syncing: bool,
    failing: Option<AccountError>,
    /// Indexes into the library's mapped files, in scope.
    files: Vec<usize>,
    /// Steps the account shows `running`.
    running_steps: u64,
}

struct Timeline {
    accounts: Vec<AccountPlan>,
    /// First step at which the session is `completed` or `partial`.
    done_step: u64,
    /// The file rewritten mid-sync and the step at which it is.
    rewrite: Option<(usize, u64)>,
}

impl Timeline {
    fn of(lib: &DemoLibrary, plan: &SyncPlan) -> Timeline {
        let mut accounts = Vec::new();
        for (i, a) in lib.accounts.iter().enumerate() {
            let files: Vec<usize> = lib
                .files
                .iter()
                .enumerate()
                .filter(|(_, f)| f.account == i && mapped_in_scope(lib, f, &plan.scope))
                .map(|(j, _)| j)
                .collect();
            let present = a.added_ms <= plan.started_ms;
            // A push account (a health provider's) is not pulled from anywhere.
            let syncing = present
                && a.service.source_type == SourceType::Pull
                && plan.fetch
                && plan
                    .only_accounts
                    .as_ref()
                    .is_none_or(|ids| ids.contains(&a.id));
            let failing = if syncing {
                plan.failures.get(&a.id).cloned()
            } else {
                None
            };
            let batches = files.len().div_ceil(BATCH) as u64;
            let running_steps = if failing.is_some() {
                batches.clamp(1, 2)
            } else {
                batches.max(1)
            };
            accounts.push(AccountPlan {
                present,
                syncing,
                failing,
                files,
                running_steps,
            });
        }
        let mut rewrite = None;
        if plan.rewrite
            && plan.fetch
            && let Some(a) = accounts
                .iter_mut()
                .find(|a| a.syncing && a.failing.is_none() && !a.files.is_empty())
        {
            a.running_steps = a.running_steps.max(2);
            rewrite = Some((a.files[0], a.running_steps));
        }
        let done_step = 1 + accounts
            .iter()
            .filter(|a| a.syncing)
            .map(|a| a.running_steps)
            .max()
            .unwrap_or(0);
        Timeline {
            accounts,
            done_step,
            rewrite,
        }
    }
}

fn mapped_in_scope(lib: &DemoLibrary, f: &crate::demo::MappedFile, scope: &ReadScope) -> bool {
    let Some(account) = lib.accounts.get(f.account) else {
        return false;
    };
    let svc = account.service;
    if let Some(groups) = scope.service_groups.as_ref().filter(|g| !g.is_empty()) {
        let type_ok = |t: &TypeFilter| {
            t.id == svc.type_id
                && t.object_types
                    .as_ref()
                    .is_none_or(|os| os.is_empty() || os.contains(&f.object_type_id))
        };
        let group_ok = |g: &GroupFilter| {
            g.id == svc.group_id
                && g.service_types
                    .as_ref()
                    .is_none_or(|ts| ts.is_empty() || ts.iter().any(type_ok))
        };
        if !groups.iter().any(group_ok) {
            return false;
        }
    }
    scope.time_ranges.is_empty()
        || scope.time_ranges.iter().any(|(from, to)| {
            from.is_none_or(|fr| f.end_ms > fr) && to.is_none_or(|t| f.start_ms <= t)
        })
}

/// A raw file the reading application may see.
pub(crate) struct RawRef {
    pub(crate) name: String,
    pub(crate) created: u64,
    pub(crate) app_id: String,
    pub(crate) contract_id: String,
    pub(crate) descriptor: Value,
    pub(crate) what: What,
}

impl RawRef {
    fn strings(&self, key: &str) -> Vec<&str> {
        self.descriptor
            .get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    fn matches(&self, c: &Criterion) -> bool {
        let any = |want: &Option<Vec<String>>, have: &[&str]| {
            want.as_ref()
                .is_none_or(|w| w.is_empty() || have.iter().any(|h| w.iter().any(|x| x == h)))
        };
        let mime = self
            .descriptor
            .get("mimeType")
            .and_then(Value::as_str)
            .unwrap_or("");
        let accounts = named_accounts(&self.descriptor);
        c.from_ms.is_none_or(|f| self.created >= f)
            && any(&c.app_id, &[&self.app_id])
            && any(&c.contract_id, &[&self.contract_id])
            && any(&c.mime_type, &[mime])
            && any(&c.reference, &self.strings("reference"))
            && any(&c.tags, &self.strings("tags"))
            && any(&c.accounts, &accounts)
    }

    /// Raw metadata: the descriptor's keys in lower case, with the app, contract and date.
    fn metadata(&self) -> Value {
        let d = &self.descriptor;
        let mut m = Map::new();
        m.insert(
            "mimetype".into(),
            d.get("mimeType").cloned().unwrap_or_else(|| json!("")),
        );
        let accounts: Vec<Value> = d
            .get("accounts")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.get("accountId").cloned())
                    .map(|id| json!({ "accountid": id }))
                    .collect()
            })
            .unwrap_or_default();
        m.insert("accounts".into(), Value::Array(accounts));
        for key in ["reference", "tags"] {
            if let Some(v) = d.get(key) {
                m.insert(key.into(), v.clone());
            }
        }
        m.insert("appid".into(), json!(self.app_id));
        m.insert("contractid".into(), json!(self.contract_id));
        m.insert("created".into(), json!(self.created));
        Value::Object(m)
    }
}

/// Where a listed file's content comes from.
#[derive(Clone)]
pub(crate) enum What {
    Mapped { file: usize, version: u32 },
    DemoRaw(usize),
    Stored(Box<LibraryFile>),
}

/// A file in the list now.
pub(crate) struct Visible {
    pub(crate) name: String,
    pub(crate) updated_ms: u64,
    /// The list entry.
    pub(crate) entry: Value,
    /// The `X-Metadata` metadata.
    pub(crate) metadata: Value,
    pub(crate) what: What,
}

/// What a session's file list shows now.
pub(crate) struct View {
    pub(crate) state: &'static str,
    pub(crate) details: Option<Map<String, Value>>,
    pub(crate) files: Vec<Visible>,
}

fn schema() -> Value {
    json!({"standard": "digime", "version": "1.0.0"})
}

fn mapped_visible(
    lib: &DemoLibrary,
    file: usize,
    version: u32,
    updated_ms: u64,
) -> Option<Visible> {
    let f = lib.files.get(file)?;
    let svc = lib.accounts.get(f.account)?.service;
    let count = f.object_count(version);
    Some(Visible {
        name: f.name.clone(),
        updated_ms,
        entry: json!({
            "name": f.name, "updatedDate": updated_ms, "schema": schema(),
            "serviceGroup": svc.group_ref, "serviceName": svc.type_ref,
            "objectType": f.object_type, "objectCount": count, "objectVersion": "1.0.0",
        }),
        metadata: json!({
            "objectCount": count, "objectType": f.object_type, "serviceGroup": svc.group_ref,
            "serviceName": svc.type_ref, "schema": schema(), "objectVersion": "1.0.0",
        }),
        what: What::Mapped { file, version },
    })
}

/// The file list of a session at `now`.
pub(crate) fn view(lib: &DemoLibrary, plan: &SyncPlan, raws: Vec<RawRef>, now: u64) -> View {
    let step = plan.step_ms.max(1);
    let k = if plan.fetch {
        now.saturating_sub(plan.started_ms) / step
    } else {
        u64::MAX
    };
    if k == 0 {
        return View {
            state: "pending",
            details: None,
            files: Vec::new(),
        };
    }
    let t = Timeline::of(lib, plan);
    let mut files = Vec::new();
    let mut details = Map::new();
    let mut failed = false;
    for (a, ap) in lib.accounts.iter().zip(&t.accounts) {
        if !ap.present {
            continue;
        }
        if !ap.syncing {
            files.extend(
                ap.files
                    .iter()
                    .filter_map(|&f| mapped_visible(lib, f, 0, plan.library_ms)),
            );
            continue;
        }
        let running = k <= ap.running_steps;
        if let Some(err) = &ap.failing {
            let d = if running {
                json!({"state": "running"})
            } else {
                failed = true;
                json!({"state": "partial", "error": err})
            };
            details.insert(a.id.clone(), d);
            continue;
        }
        for (j, &f) in ap.files.iter().enumerate() {
            let batch = (j / BATCH) as u64;
            if batch >= k {
                break;
            }
            let (version, at) = match t.rewrite {
                Some((rf, rs)) if rf == f && k >= rs => (1, rs),
                _ => (0, batch + 1),
            };
            let updated = plan.started_ms.saturating_add(at.saturating_mul(step));
            files.extend(mapped_visible(lib, f, version, updated));
        }
        let state = if running { "running" } else { "completed" };
        details.insert(a.id.clone(), json!({ "state": state }));
    }
    for r in raws {
        let in_scope = plan
            .scope
            .criteria
            .as_ref()
            .is_none_or(|cs| cs.is_empty() || cs.iter().any(|c| r.matches(c)));
        if in_scope {
            files.push(Visible {
                entry: json!({"name": r.name, "updatedDate": r.created}),
                metadata: r.metadata(),
                name: r.name,
                updated_ms: r.created,
                what: r.what,
            });
        }
    }
    let state = if !plan.fetch {
        "completed"
    } else if k < t.done_step {
        "running"
    } else if failed {
        "partial"
    } else {
        "completed"
    };
    View {
        state,
        details: plan.fetch.then_some(details),
        files,
    }
}

/// The account objects of a library, as `permission-access/accounts` answers them
/// (`updatedDate`: the last sync's end, or when the account was added if later).
pub(crate) fn account_list(
    lib: &DemoLibrary,
    failures: &BTreeMap<String, AccountError>,
    updated_ms: u64,
) -> Vec<Value> {
    lib.accounts
        .iter()
        .map(|a| {
            let s = a.service;
            let status = match failures.get(&a.id) {
                Some(e) if e.reauth => json!({"authorized": false}),
                _ => json!({"authorized": true, "expiresAt": a.added_ms.saturating_add(365 * 86_400_000)}),
            };
            let mut account = json!({
                "id": a.id,
                "reference": a.reference,
                "type": a.kind(),
                "createdDate": a.added_ms,
                "updatedDate": updated_ms.max(a.added_ms),
                "serviceGroupId": s.group_id,
                "serviceGroupName": s.group_name,
                "serviceTypeId": s.type_id,
                "serviceTypeName": s.type_name,
                "serviceTypeReference": s.type_ref,
                "sourceId": s.source_id,
                "serviceProviderId": s.provider.0,
                "serviceProviderName": s.provider.1,
                "accessTokenStatus": status,
            });
            if a.sample {
                account["sample"] = json!(true);
            }
            account
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The session options (the trigger body, and `actions.pull` of the OAuth calls).

fn bad(path: &str, what: &str) -> ApiFailure {
    ApiFailure::bad_params(&format!("{path} must be {what}"))
}

fn object_at<'a>(
    v: Option<&'a Value>,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>, ApiFailure> {
    match v {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(bad(path, "an object")),
    }
}

fn array_at<'a>(v: Option<&'a Value>, path: &str) -> Result<Option<&'a Vec<Value>>, ApiFailure> {
    match v {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(_) => Err(bad(path, "an array")),
    }
}

fn number_at(v: Option<&Value>, path: &str) -> Result<Option<f64>, ApiFailure> {
    match v {
        None => Ok(None),
        Some(n) => n
            .as_f64()
            .filter(|x| x.is_finite())
            .map(Some)
            .ok_or_else(|| bad(path, "a number")),
    }
}

fn id_at(v: Option<&Value>, path: &str) -> Result<u64, ApiFailure> {
    v.and_then(Value::as_u64)
        .ok_or_else(|| bad(path, "a non-negative integer"))
}

fn strings_at(v: Option<&Value>, path: &str) -> Result<Option<Vec<String>>, ApiFailure> {
    let Some(items) = array_at(v, path)? else {
        return Ok(None);
    };
    items
        .iter()
        .map(|s| {
            s.as_str()
                .map(str::to_owned)
                .ok_or_else(|| bad(path, "an array of strings"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Seconds (possibly fractional) to ms; negative values are refused.
fn seconds_to_ms(s: f64, path: &str) -> Result<u64, ApiFailure> {
    if s < 0.0 {
        return Err(bad(path, "a non-negative number of seconds"));
    }
    Ok((s * 1000.0).min(u64::MAX as f64 / 2.0) as u64)
}

/// `"<n>d|m|y"` before `now`, in ms.
fn last_to_from_ms(v: Option<&Value>, path: &str, now: u64) -> Result<Option<u64>, ApiFailure> {
    let Some(v) = v else { return Ok(None) };
    let text = v
        .as_str()
        .ok_or_else(|| bad(path, "a string like \"6m\""))?;
    let Some(unit) = text.chars().last() else {
        return Err(bad(path, "a string like \"6m\""));
    };
    let n = &text[..text.len() - unit.len_utf8()];
    let day = 86_400_000u64;
    let unit_ms = match unit {
        'd' => day,
        'm' => 30 * day,
        'y' => 365 * day,
        _ => return Err(bad(path, "a string like \"6m\" (units d, m, y)")),
    };
    let n: u64 = n
        .parse()
        .ok()
        .filter(|_| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| bad(path, "a string like \"6m\""))?;
    Ok(Some(now.saturating_sub(n.saturating_mul(unit_ms))))
}

/// Checks the types of the session options; unknown keys are ignored.
pub(crate) fn parse_options(body: &Value, now: u64) -> Result<SessionOptions, ApiFailure> {
    let mut opts = SessionOptions::default();
    if let Some(limits) = object_at(body.get("limits"), "limits")?
        && let Some(duration) = object_at(limits.get("duration"), "limits.duration")?
        && let Some(s) = number_at(duration.get("sourceFetch"), "limits.duration.sourceFetch")?
    {
        // Validated only: the simulated sync always finishes.
        seconds_to_ms(s, "limits.duration.sourceFetch")?;
    }
    match body.get("sourceFetch") {
        None => {}
        Some(Value::Bool(b)) => opts.fetch = Some(*b),
        Some(_) => return Err(bad("sourceFetch", "a boolean")),
    }
    if let Some(filter) = object_at(body.get("sourceFetchFilter"), "sourceFetchFilter")?
        && let Some(account) = object_at(filter.get("account"), "sourceFetchFilter.account")?
    {
        opts.only_accounts = strings_at(account.get("id"), "sourceFetchFilter.account.id")?;
    }
    let Some(scope) = object_at(body.get("scope"), "scope")? else {
        return Ok(opts);
    };
    if let Some(ranges) = array_at(scope.get("timeRanges"), "scope.timeRanges")? {
        for r in ranges {
            let r = r
                .as_object()
                .ok_or_else(|| bad("scope.timeRanges[]", "an object"))?;
            let mut from = number_at(r.get("from"), "scope.timeRanges[].from")?
                .map(|s| seconds_to_ms(s, "scope.timeRanges[].from"))
                .transpose()?;
            let to = number_at(r.get("to"), "scope.timeRanges[].to")?
                .map(|s| seconds_to_ms(s, "scope.timeRanges[].to"))
                .transpose()?;
            if let Some(last) = last_to_from_ms(r.get("last"), "scope.timeRanges[].last", now)? {
                from = Some(from.map_or(last, |f| f.max(last)));
            }
            opts.scope.time_ranges.push((from, to));
        }
    }
    if let Some(groups) = array_at(scope.get("serviceGroups"), "scope.serviceGroups")? {
        let mut out = Vec::new();
        for g in groups {
            let g = g
                .as_object()
                .ok_or_else(|| bad("scope.serviceGroups[]", "an object"))?;
            let id = id_at(g.get("id"), "scope.serviceGroups[].id")?;
            let types = array_at(g.get("serviceTypes"), "scope.serviceGroups[].serviceTypes")?
                .ok_or_else(|| bad("scope.serviceGroups[].serviceTypes", "an array"))?;
            let mut service_types = Vec::new();
            for t in types {
                let path = "scope.serviceGroups[].serviceTypes[]";
                let t = t.as_object().ok_or_else(|| bad(path, "an object"))?;
                let id = id_at(t.get("id"), "scope.serviceGroups[].serviceTypes[].id")?;
                let object_types = array_at(
                    t.get("serviceObjectTypes"),
                    "scope.serviceGroups[].serviceTypes[].serviceObjectTypes",
                )?
                .map(|list| {
                    list.iter()
                        .map(|o| {
                            id_at(
                                o.get("id"),
                                "scope.serviceGroups[].serviceTypes[].serviceObjectTypes[].id",
                            )
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?;
                service_types.push(TypeFilter { id, object_types });
            }
            out.push(GroupFilter {
                id,
                service_types: Some(service_types),
            });
        }
        opts.scope.service_groups = Some(out);
    }
    if let Some(criteria) = array_at(scope.get("criteria"), "scope.criteria")? {
        let mut out = Vec::new();
        for c in criteria {
            let c = c
                .as_object()
                .ok_or_else(|| bad("scope.criteria[]", "an object"))?;
            let mut crit = Criterion {
                from_ms: number_at(c.get("from"), "scope.criteria[].from")?
                    .map(|s| seconds_to_ms(s, "scope.criteria[].from"))
                    .transpose()?,
                ..Criterion::default()
            };
            if let Some(last) = last_to_from_ms(c.get("last"), "scope.criteria[].last", now)? {
                crit.from_ms = Some(crit.from_ms.map_or(last, |f| f.max(last)));
            }
            if let Some(m) = object_at(c.get("metadata"), "scope.criteria[].metadata")? {
                let p = |k: &str| format!("scope.criteria[].metadata.{k}");
                crit.app_id = strings_at(m.get("appId"), &p("appId"))?;
                crit.contract_id = strings_at(m.get("contractId"), &p("contractId"))?;
                crit.mime_type = strings_at(m.get("mimeType"), &p("mimeType"))?;
                crit.reference = strings_at(m.get("reference"), &p("reference"))?;
                crit.tags = strings_at(m.get("tags"), &p("tags"))?;
                if let Some(accounts) = array_at(m.get("accounts"), &p("accounts"))? {
                    let mut ids = Vec::new();
                    for a in accounts {
                        let id = a.get("accountId").and_then(Value::as_str).ok_or_else(|| {
                            bad("scope.criteria[].metadata.accounts[].accountId", "a string")
                        })?;
                        if a.get("username").is_some_and(|u| !u.is_string()) {
                            return Err(bad(
                                "scope.criteria[].metadata.accounts[].username",
                                "a string",
                            ));
                        }
                        ids.push(id.to_owned());
                    }
                    crit.accounts = Some(ids);
                }
            }
            out.push(crit);
        }
        opts.scope.criteria = Some(out);
    }
    Ok(opts)
}
