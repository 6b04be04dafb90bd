//! Signing keys an identity provider publishes as a JWK set (`JWT_JWKS_URL`), kept fresh so
//! keys rotate without a restart:
//! - a background task fetches the set at start, then every `JWT_JWKS_TTL`; while it cannot,
//!   it retries (1 s, doubling, at most `JWT_JWKS_MIN_REFRESH` apart);
//! - a token whose `kid` the set lacks causes one more fetch, at most once per
//!   `JWT_JWKS_MIN_REFRESH` for the whole process, one fetch at a time: requests arriving
//!   during a fetch wait for its result instead of starting their own, so random `kid`s
//!   cannot turn into a flood of requests to the provider;
//! - a failed fetch (unreachable, error status, not a key set, no usable key) keeps the keys
//!   in hand; `/ready` reports it ([`Jwks::health`]).
//!
//! Per request the set is one `Arc` read behind a lock held for a pointer copy; nothing is
//! allocated unless a fetch is needed. Which keys are accepted and with which algorithm is
//! [`keys`]'s business, the HTTP exchange [`fetch`]'s.

mod fetch;
pub mod keys;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::Validation;

use crate::config::Settings;
use keys::{KeySet, Miss, VerifyKey};

/// The deadline of one fetch, from connect to the last byte.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The first retry after a failed fetch (then doubling, capped by `JWT_JWKS_MIN_REFRESH`).
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// What caused a fetch (a metrics label from a closed set).
#[derive(Clone, Copy)]
enum Cause {
    /// Start-up, every TTL, and retries after failures.
    Scheduled,
    /// A token named a key the set lacks.
    UnknownKey,
}

impl Cause {
    fn label(self) -> &'static str {
        match self {
            Cause::Scheduled => "scheduled",
            Cause::UnknownKey => "unknown_key",
        }
    }
}

/// The key set's state, for `/ready`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ok,
    /// Keys are in hand but the latest fetch failed (they keep working).
    Stale(String),
    /// No key was ever fetched: tokens of the provider cannot be checked.
    Unavailable(String),
}

pub struct Jwks {
    fetcher: fetch::Fetcher,
    /// The verifier's claim rules; each key gets a copy restricted to its algorithm.
    validation: Validation,
    ttl: Duration,
    min_refresh: Duration,
    current: RwLock<Arc<KeySet>>,
    /// One fetch at a time. Holds when the last fetch caused by an unknown key started.
    fetching: Arc<tokio::sync::Mutex<Option<Instant>>>,
    /// Fetches completed (either way): a request that waited for a fetch does not start one.
    completed: AtomicU64,
    /// Why the latest fetch failed; `None` after a success.
    last_error: Mutex<Option<String>>,
}

impl Jwks {
    /// `None` unless `JWT_JWKS_URL` is set. Fetches nothing yet: see [`Jwks::spawn_refresher`].
    pub fn from_settings(
        s: &Settings,
        validation: &Validation,
    ) -> anyhow::Result<Option<Arc<Jwks>>> {
        let Some(url) = &s.jwt_jwks_url else {
            return Ok(None);
        };
        Ok(Some(Arc::new(Jwks {
            fetcher: fetch::Fetcher::new(url, FETCH_TIMEOUT)?,
            validation: validation.clone(),
            ttl: s.jwt_jwks_ttl,
            min_refresh: s.jwt_jwks_min_refresh,
            current: RwLock::new(Arc::new(KeySet::default())),
            fetching: Arc::new(tokio::sync::Mutex::new(None)),
            completed: AtomicU64::new(0),
            last_error: Mutex::new(Some("the first fetch has not finished".into())),
        })))
    }

    /// Starts the task that fetches the set now and keeps it fresh; it ends when the last
    /// handle to this `Jwks` is dropped.
    pub fn spawn_refresher(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut retry = FIRST_RETRY;
            loop {
                let Some(jwks) = weak.upgrade() else { return };
                let seen = jwks.completed.load(Ordering::Acquire);
                let fetched = {
                    let _one_at_a_time = jwks.fetching.lock().await;
                    if jwks.completed.load(Ordering::Acquire) == seen {
                        jwks.refresh(Cause::Scheduled).await
                    } else {
                        // A request's fetch just finished: its outcome stands for this one.
                        jwks.health() == Health::Ok
                    }
                };
                let pause = if fetched {
                    retry = FIRST_RETRY;
                    jwks.ttl
                } else {
                    let pause = retry.min(jwks.min_refresh);
                    retry = (retry * 2).min(jwks.min_refresh);
                    pause
                };
                drop(jwks);
                tokio::time::sleep(pause).await;
            }
        });
    }

    fn snapshot(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn lookup(&self, kid: Option<&str>) -> Result<Arc<VerifyKey>, Miss> {
        let set = self.current.read().unwrap_or_else(|p| p.into_inner());
        set.find(kid).cloned()
    }

    /// The key to check a token with `kid` against. When the set lacks it, fetches the set
    /// again first, unless a fetch finished while this call waited its turn or the last
    /// unknown-key fetch is younger than `JWT_JWKS_MIN_REFRESH`.
    pub async fn key(self: &Arc<Self>, kid: Option<&str>) -> Result<Arc<VerifyKey>, Miss> {
        let seen = self.completed.load(Ordering::Acquire);
        match self.lookup(kid) {
            Ok(key) => return Ok(key),
            Err(Miss::KidRequired) => return Err(Miss::KidRequired),
            Err(Miss::NoKeys | Miss::UnknownKid) => {}
        }
        let mut last = self.fetching.clone().lock_owned().await;
        let waited_for_a_fetch = self.completed.load(Ordering::Acquire) != seen;
        let too_soon = last.is_some_and(|at| at.elapsed() < self.min_refresh);
        if !waited_for_a_fetch && !too_soon {
            *last = Some(Instant::now());
            // In a task of its own: a caller that goes away does not cut the fetch short.
            let jwks = self.clone();
            let fetch = tokio::spawn(async move {
                jwks.refresh(Cause::UnknownKey).await;
                drop(last);
            });
            let _ = fetch.await;
        }
        self.lookup(kid)
    }

    /// Fetches the set and installs it when it holds a usable key. The caller holds
    /// `fetching`. Returns whether the set was installed.
    async fn refresh(&self, cause: Cause) -> bool {
        let outcome = match self.fetcher.get().await {
            Ok(body) => keys::parse_set(&body, &self.validation),
            Err(e) => Err(e),
        };
        let installed = match outcome {
            Ok(parsed) => {
                for why in &parsed.skipped {
                    tracing::debug!(skipped = %why, "JWKS key not used");
                }
                if parsed.set.keys.is_empty() {
                    Err(format!(
                        "the set holds no usable signing key (RSA, EC P-256/P-384){}",
                        match parsed.skipped.first() {
                            Some(first) => format!("; e.g. {first}"),
                            None => String::new(),
                        }
                    ))
                } else {
                    Ok(parsed)
                }
            }
            Err(e) => Err(e),
        };
        let ok = installed.is_ok();
        metrics::counter!(
            "tenantry_jwks_fetches_total",
            "cause" => cause.label(),
            "outcome" => if ok { "ok" } else { "error" }
        )
        .increment(1);
        let mut last_error = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        match installed {
            Ok(parsed) => {
                let before = self.snapshot();
                if before.kids() != parsed.set.kids() {
                    tracing::info!(
                        kids = ?parsed.set.kids(),
                        skipped = ?parsed.skipped,
                        "JWKS signing keys loaded"
                    );
                }
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(parsed.set);
                *last_error = None;
            }
            Err(why) => {
                let held = self.snapshot().keys.len();
                tracing::warn!(error = %why, keys_kept = held, cause = cause.label(), "cannot fetch JWT_JWKS_URL");
                *last_error = Some(why);
            }
        }
        drop(last_error);
        self.completed.fetch_add(1, Ordering::Release);
        ok
    }

    pub fn health(&self) -> Health {
        let error = self
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match (error, self.snapshot().keys.is_empty()) {
            (None, _) => Health::Ok,
            (Some(why), true) => Health::Unavailable(format!(
                "no signing keys from JWT_JWKS_URL yet ({why}); retrying"
            )),
            (Some(why), false) => Health::Stale(format!(
                "JWT_JWKS_URL cannot be fetched ({why}); the keys fetched before are in use"
            )),
        }
    }
}
