//! One refresh per refresh token, shared by every call in the process
//! (`docs/protocol.md`, "Refresh on 401").
//!
//! A refresh rotates the refresh token: a second refresh with the old one is refused,
//! and its caller would be told to reauthorize a user whose token is alive. So calls
//! that hold the same refresh token share one refresh: the first to need it claims
//! it and refreshes; the others wait (the flow sleeps in short steps) and take the new
//! token when it comes. A call that starts with a token a refresh has already
//! superseded uses the new one at once. The new token is announced
//! ([`crate::Event::TokenRefreshed`]) by the call that refreshed, and returned to every
//! call that used it ([`crate::Authed::refreshed_token`]).
//!
//! Entries are keyed by a hash of the contract and the refresh token (never the token
//! itself), kept for [`KEEP`], and at most [`MAX_ENTRIES`] of them.

use crate::auth::TokenFlow;
use crate::error::TransportError;
use crate::flow::{Flow, Step, misuse};
use crate::sdk::Sdk;
use crate::token::UserAccessToken;
use http::Response;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// How long a finished refresh is remembered for calls still holding the old token.
pub const KEEP: Duration = Duration::from_secs(15 * 60);
/// How long a claimed refresh may run before another call takes it over (the claimant
/// is stuck or gone).
pub const STALE: Duration = Duration::from_secs(120);
/// How long a waiting call sleeps before it looks again.
pub const WAIT_STEP: Duration = Duration::from_millis(10);
/// Most entries kept; the oldest go first.
pub const MAX_ENTRIES: usize = 4096;
/// Most hops followed from a token to the newest that superseded it.
const MAX_HOPS: usize = 8;

/// Identifies a refresh token of a contract.
pub(crate) type Key = [u8; 32];

enum Slot {
    InFlight {
        since: SystemTime,
        id: u64,
    },
    Done {
        token: Box<UserAccessToken>,
        at: SystemTime,
    },
}

impl Slot {
    fn at(&self) -> SystemTime {
        match self {
            Slot::InFlight { since, .. } => *since,
            Slot::Done { at, .. } => *at,
        }
    }
}

/// What a call that wants a refresh is to do.
#[derive(Debug)]
pub(crate) enum Claim {
    /// Refresh: this claim is the call's (release or complete it).
    Mine(u64),
    /// Another call is refreshing: sleep [`WAIT_STEP`], then claim again.
    Wait,
    /// Already refreshed: use this token.
    Refreshed(UserAccessToken),
}

/// The process's refreshes, held by the [`crate::Sdk`] (its clones share it).
#[derive(Default)]
pub struct Refreshes {
    slots: Mutex<(HashMap<Key, Slot>, u64)>,
}

impl std::fmt::Debug for Refreshes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.slots.lock().map(|s| s.0.len()).unwrap_or(0);
        f.debug_struct("Refreshes").field("entries", &n).finish()
    }
}

pub(crate) fn key(client_id: &str, refresh_token: &str) -> Key {
    let mut input = Vec::with_capacity(client_id.len() + refresh_token.len() + 1);
    input.extend_from_slice(client_id.as_bytes());
    input.push(0x1f);
    input.extend_from_slice(refresh_token.as_bytes());
    digime_crypto::sha256(&input)
}

fn age(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or(Duration::ZERO)
}

impl Refreshes {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<Key, Slot>, &mut u64) -> T) -> T {
        let mut guard = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let (slots, next) = &mut *guard;
        f(slots, next)
    }

    /// Claims the refresh of `key`, or says to wait, or hands over its result.
    pub(crate) fn claim(&self, key: Key, now: SystemTime) -> Claim {
        self.with(|slots, next| {
            match slots.get(&key) {
                Some(Slot::Done { token, at }) if age(now, *at) < KEEP => {
                    return Claim::Refreshed((**token).clone());
                }
                Some(Slot::InFlight { since, .. }) if age(now, *since) < STALE => {
                    return Claim::Wait;
                }
                _ => {}
            }
            if slots.len() >= MAX_ENTRIES {
                prune(slots, now);
            }
            *next += 1;
            slots.insert(
                key,
                Slot::InFlight {
                    since: now,
                    id: *next,
                },
            );
            Claim::Mine(*next)
        })
    }

    /// The claim `id` of `key` refreshed to `token`.
    pub(crate) fn complete(&self, key: Key, id: u64, token: &UserAccessToken, now: SystemTime) {
        self.with(|slots, _| {
            if matches!(slots.get(&key), Some(Slot::InFlight { id: mine, .. }) if *mine == id) {
                let token = Box::new(token.clone());
                slots.insert(key, Slot::Done { token, at: now });
            }
        })
    }

    /// The claim `id` of `key` ended without a token (the refresh failed, or its call
    /// was dropped): the next call to want it refreshes.
    pub(crate) fn release(&self, key: Key, id: u64) {
        self.with(|slots, _| {
            if matches!(slots.get(&key), Some(Slot::InFlight { id: mine, .. }) if *mine == id) {
                slots.remove(&key);
            }
        })
    }

    /// The newest token that superseded the refresh token of `key`, following the
    /// chain of refreshes (`next_key` gives the key of a token).
    pub(crate) fn superseded(
        &self,
        mut key: Key,
        now: SystemTime,
        next_key: impl Fn(&UserAccessToken) -> Key,
    ) -> Option<UserAccessToken> {
        self.with(|slots, _| {
            let mut newest = None;
            for _ in 0..MAX_HOPS {
                match slots.get(&key) {
                    Some(Slot::Done { token, at }) if age(now, *at) < KEEP => {
                        key = next_key(token);
                        newest = Some((**token).clone());
                    }
                    _ => break,
                }
            }
            newest
        })
    }
}

/// Drops what is past its time, then the oldest half if still full.
fn prune(slots: &mut HashMap<Key, Slot>, now: SystemTime) {
    slots.retain(|_, s| match s {
        Slot::Done { at, .. } => age(now, *at) < KEEP,
        Slot::InFlight { since, .. } => age(now, *since) < STALE,
    });
    if slots.len() >= MAX_ENTRIES {
        let mut ages: Vec<(Key, SystemTime)> = slots.iter().map(|(k, s)| (*k, s.at())).collect();
        ages.sort_by_key(|(_, at)| *at);
        for (k, _) in ages.into_iter().take(MAX_ENTRIES / 2) {
            slots.remove(&k);
        }
    }
}

// ---------------------------------------------------------------------------------
// The shared refresh, as a flow.

/// A claim on a refresh; released when dropped unless it completed.
struct ClaimGuard {
    sdk: Sdk,
    key: Key,
    id: u64,
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        self.sdk.refreshes().release(self.key, self.id);
    }
}

enum Shared {
    /// Not claimed yet, or another call's refresh is running.
    Waiting,
    /// This flow refreshes.
    Mine(ClaimGuard),
    Finished,
}

/// A token refresh shared with every call of the process that holds the same refresh
/// token (see the module docs): it claims the refresh and runs it, or waits for the
/// call that did and takes its token. Its result is the new token either way;
/// [`SharedRefresh::was_ours`] tells whether this flow issued it (and so must announce
/// it).
pub struct SharedRefresh {
    flow: Box<TokenFlow>,
    key: Option<Key>,
    state: Shared,
    ours: bool,
}

impl std::fmt::Debug for SharedRefresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            Shared::Waiting => "waiting",
            Shared::Mine(_) => "refreshing",
            Shared::Finished => "finished",
        };
        f.debug_struct("SharedRefresh")
            .field("flow", &self.flow)
            .field("state", &state)
            .finish()
    }
}

impl SharedRefresh {
    /// Shares `flow`, a refresh (a code exchange is never shared).
    pub(crate) fn new(flow: TokenFlow) -> Self {
        SharedRefresh {
            key: flow.refresh_key(),
            flow: Box::new(flow),
            state: Shared::Waiting,
            ours: false,
        }
    }

    /// Whether this flow refreshed (rather than taking another call's token).
    pub fn was_ours(&self) -> bool {
        self.ours
    }
}

impl Flow for SharedRefresh {
    type Output = UserAccessToken;

    fn poll(&mut self, now: SystemTime) -> Step<UserAccessToken> {
        if let Shared::Waiting = self.state {
            let Some(key) = self.key else {
                // Nothing to share by: refresh alone.
                self.ours = true;
                return self.poll_refresh(now);
            };
            let sdk = self.flow.sdk().clone();
            match sdk.refreshes().claim(key, now) {
                Claim::Mine(id) => self.state = Shared::Mine(ClaimGuard { sdk, key, id }),
                Claim::Wait => return Step::Sleep(WAIT_STEP),
                Claim::Refreshed(token) => {
                    self.state = Shared::Finished;
                    return Step::Done(Ok(token));
                }
            }
        }
        match self.state {
            Shared::Mine(_) => self.poll_refresh(now),
            Shared::Finished => Step::Done(Err(misuse("poll after Done"))),
            Shared::Waiting => Step::Done(Err(misuse("unclaimed"))),
        }
    }

    fn handle_response(&mut self, response: Response<Vec<u8>>) {
        self.flow.handle_response(response);
    }

    fn handle_transport_error(&mut self, error: TransportError) {
        self.flow.handle_transport_error(error);
    }
}

impl SharedRefresh {
    fn poll_refresh(&mut self, now: SystemTime) -> Step<UserAccessToken> {
        match self.flow.poll(now) {
            Step::Done(Ok(token)) => {
                if let Shared::Mine(guard) = std::mem::replace(&mut self.state, Shared::Finished) {
                    guard
                        .sdk
                        .refreshes()
                        .complete(guard.key, guard.id, &token, now);
                    // Completed: dropping the guard releases nothing (the id no longer
                    // names an in-flight claim).
                }
                self.ours = true;
                Step::Done(Ok(token))
            }
            Step::Done(Err(e)) => {
                // Dropping the guard releases the claim: the next call refreshes.
                self.state = Shared::Finished;
                Step::Done(Err(e))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(access: &str, refresh: &str) -> UserAccessToken {
        serde_json::from_value(serde_json::json!({
            "accessToken": {"value": access, "expiry": 1},
            "refreshToken": {"value": refresh, "expiry": 2},
        }))
        .unwrap()
    }

    #[test]
    fn one_claim_at_a_time_then_its_result_for_everyone() {
        let r = Refreshes::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let k = key("app_c", "r1");
        let Claim::Mine(id) = r.claim(k, t0) else {
            panic!()
        };
        assert!(matches!(r.claim(k, t0), Claim::Wait));
        let new = token("a2", "r2");
        r.complete(k, id, &new, t0);
        let Claim::Refreshed(got) = r.claim(k, t0) else {
            panic!()
        };
        assert_eq!(got.access_token.value.expose(), "a2");
        // A chain: r1 → r2 → r3.
        let k2 = key("app_c", "r2");
        let Claim::Mine(id2) = r.claim(k2, t0) else {
            panic!()
        };
        r.complete(k2, id2, &token("a3", "r3"), t0);
        let next = |t: &UserAccessToken| key("app_c", t.refresh_token.value.expose());
        let newest = r.superseded(k, t0, next).unwrap();
        assert_eq!(newest.access_token.value.expose(), "a3");
        // Another contract's identical token is another key.
        assert!(matches!(r.claim(key("app_d", "r1"), t0), Claim::Mine(_)));
        // Forgotten after KEEP.
        assert!(r.superseded(k, t0 + KEEP, next).is_none());
    }

    #[test]
    fn a_released_or_stale_claim_is_taken_over() {
        let r = Refreshes::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let k = key("app_c", "r1");
        let Claim::Mine(id) = r.claim(k, t0) else {
            panic!()
        };
        r.release(k, id);
        let Claim::Mine(id2) = r.claim(k, t0) else {
            panic!()
        };
        assert_ne!(id, id2);
        let Claim::Mine(id3) = r.claim(k, t0 + STALE) else {
            panic!()
        };
        // The stale claimant's late result does not overwrite the new claim.
        r.complete(k, id2, &token("late", "x"), t0 + STALE);
        assert!(matches!(r.claim(k, t0 + STALE), Claim::Wait));
        r.complete(k, id3, &token("a2", "r2"), t0 + STALE);
        assert!(
            matches!(r.claim(k, t0 + STALE), Claim::Refreshed(t) if t.access_token.value.expose() == "a2")
        );
    }

    #[test]
    fn the_table_is_bounded() {
        let r = Refreshes::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        for i in 0..(MAX_ENTRIES * 3) {
            let _ = r.claim(
                key("app_c", &i.to_string()),
                t0 + Duration::from_millis(i as u64),
            );
        }
        assert!(r.with(|s, _| s.len()) <= MAX_ENTRIES);
    }
}
