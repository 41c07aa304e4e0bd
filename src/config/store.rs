//! The `[store]` section: the Redis server lanes share their budget through (feature `redis`).

use serde::Deserialize;

use super::ConfigDuration;
use crate::policy::PolicyError;

/// What a lane does while Redis does not answer, as a file writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OnDown {
    /// `"fallback"`: book in a budget of this process, at `1 / expected_workers` of each
    /// limit (the whole limit without `expected_workers`).
    Fallback,
    /// `"fail_fast"`: refuse the request with
    /// [`Error::StoreUnavailable`](crate::Error::StoreUnavailable).
    FailFast,
}

/// The `[store]` section of a [`ThrottleConfig`](super::ThrottleConfig): a Redis (or Valkey)
/// server that every lane keeps its budget in, shared by every process that uses the same
/// server and prefix (see [`store`](crate::store)). Absent fields keep
/// [`RedisStore`](crate::store::RedisStore)'s defaults. Needs the `redis` feature; without it a
/// `[store]` section is refused when the throttle is built, rather than ignored.
///
/// ```toml
/// [store]
/// url = "redis://127.0.0.1:6379/"
/// prefix = "billing"
/// timeout = "100ms"
/// expected_workers = 8      # while Redis is down, each process books 1/8 of each limit
/// concurrency = 16          # at most 16 requests of each lane in flight across the fleet
/// lease = "5s"
/// on_down = "fallback"      # or "fail_fast"
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StoreConfig {
    /// `redis://host:port/db` or `rediss://…`.
    pub url: String,
    /// Prefix of every key (processes share a budget when they use the same one).
    pub prefix: Option<String>,
    /// How long one call to Redis may take before the store counts as down.
    pub timeout: Option<ConfigDuration>,
    /// How long a fleet-wide concurrency slot lasts without renewal.
    pub lease: Option<ConfigDuration>,
    /// At most this many requests of each lane in flight across the fleet.
    pub concurrency: Option<usize>,
    /// How many processes share the budget (each falls back to its share while Redis is down).
    pub expected_workers: Option<u32>,
    /// `"fallback"` (default) or `"fail_fast"`.
    pub on_down: Option<OnDown>,
}

/// The URL is not shown: it may hold a password.
impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &"(hidden: it may hold a password)")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("lease", &self.lease)
            .field("concurrency", &self.concurrency)
            .field("expected_workers", &self.expected_workers)
            .field("on_down", &self.on_down)
            .finish()
    }
}

impl StoreConfig {
    /// Refuses the values the store's setters would quietly bring into range, naming the field.
    fn check(&self) -> Result<(), PolicyError> {
        let zero = [
            (
                self.timeout.is_some_and(|timeout| timeout.0.is_zero()),
                "store.timeout",
                "must be longer than zero, or every call to Redis would count as a failure",
            ),
            (
                self.concurrency == Some(0),
                "store.concurrency",
                "must be at least 1; remove it for no fleet-wide cap",
            ),
            (
                self.expected_workers == Some(0),
                "store.expected_workers",
                "must be at least 1 (the processes sharing the budget)",
            ),
            (
                self.on_down == Some(OnDown::FailFast) && self.expected_workers.is_some(),
                "store.expected_workers",
                "sets the share each process falls back to, and on_down = \"fail_fast\" never falls back; keep one",
            ),
        ];
        match zero.into_iter().find(|(wrong, _, _)| *wrong) {
            Some((_, field, reason)) => Err(PolicyError::Inconsistent { field, reason }),
            None => Ok(()),
        }
    }

    /// The store this describes; a bad URL or value is refused with the field named.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn into_store(self) -> Result<crate::store::RedisStore, PolicyError> {
        use crate::store::{OnStoreDown, RedisStore};

        self.check()?;
        let mut store = RedisStore::new(&self.url)?;
        if let Some(prefix) = self.prefix {
            store = store.prefix(prefix);
        }
        if let Some(timeout) = self.timeout {
            store = store.timeout(timeout.0);
        }
        if let Some(lease) = self.lease {
            store = store.lease(lease.0);
        }
        if let Some(max) = self.concurrency {
            store = store.concurrency(max);
        }
        if let Some(workers) = self.expected_workers {
            store = store.expected_workers(workers);
        }
        if self.on_down == Some(OnDown::FailFast) {
            store = store.on_down(OnStoreDown::FailFast);
        }
        Ok(store)
    }

    /// Without the `redis` feature there is no store to build: refused, not ignored.
    #[cfg(not(feature = "redis"))]
    pub(super) fn into_store(self) -> Result<std::convert::Infallible, PolicyError> {
        self.check()?;
        Err(PolicyError::Inconsistent {
            field: "store",
            reason: "a shared store needs the `redis` feature of reqwest-throttle",
        })
    }
}
