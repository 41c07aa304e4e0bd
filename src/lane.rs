//! One lane: the runtime state shared by every request to one host (or API key, or model).
//!
//! A lane owns its budget (rate and cooldown), its concurrency semaphore and its counters. It is
//! created from a [`Policy`] the first time its key is seen and lives in the
//! [`Lanes`](crate::lanes::Lanes) registry while it matters.

use std::borrow::Borrow;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::limiter::{Budget, Dimension};
use crate::policy::Policy;
use crate::stats::LaneStats;

/// The name of a lane: by default `scheme://host:port` of the request's URL.
///
/// ```
/// use reqwest_throttle::LaneKey;
///
/// let url = reqwest::Url::parse("https://API.github.com/repos").unwrap();
/// assert_eq!(LaneKey::for_url(&url).unwrap().as_str(), "https://api.github.com:443");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LaneKey(Arc<str>);

impl LaneKey {
    /// A lane key from any text (for a custom key function: an API key's hash, a route).
    pub fn new(key: impl Into<Arc<str>>) -> LaneKey {
        LaneKey(key.into())
    }

    /// The default key of a URL: `scheme://host:port` (host lower-cased by the URL parser, port
    /// made explicit). `None` when the URL has no host.
    pub fn for_url(url: &reqwest::Url) -> Option<LaneKey> {
        let host = url.host_str()?;
        let port = url.port_or_known_default().unwrap_or(0);
        Some(LaneKey(format!("{}://{host}:{port}", url.scheme()).into()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for LaneKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LaneKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for LaneKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Counters of one lane, updated without locks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub sent: AtomicU64,
    pub completed: AtomicU64,
    pub errors: AtomicU64,
    pub rejected: AtomicU64,
    pub waited_total_ns: AtomicU64,
    pub waited_max_ns: AtomicU64,
    pub in_flight: AtomicU64,
    pub queued: AtomicU64,
}

impl Counters {
    pub fn record_wait(&self, waited: Duration) {
        let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.waited_total_ns.fetch_add(nanos, Relaxed);
        self.waited_max_ns.fetch_max(nanos, Relaxed);
    }
}

/// Decrements a gauge when dropped, so a cancelled request never leaves it counted.
pub(crate) struct Gauge<'a>(&'a AtomicU64);

impl<'a> Gauge<'a> {
    pub fn enter(gauge: &'a AtomicU64) -> Gauge<'a> {
        gauge.fetch_add(1, Relaxed);
        Gauge(gauge)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// The runtime state of one lane.
#[derive(Debug)]
pub(crate) struct Lane {
    pub key: LaneKey,
    pub policy: Arc<Policy>,
    pub budget: Arc<Budget>,
    pub concurrency: Option<Arc<Semaphore>>,
    pub counters: Counters,
    /// Nanoseconds since the registry's epoch at the last use, for idle eviction.
    pub last_used: AtomicU64,
}

impl Lane {
    pub fn new(key: LaneKey, policy: Arc<Policy>) -> Lane {
        let budget = Budget::new();
        if let Some(rate) = policy.rate {
            // Validated when the rules were built; an invalid rate here means no proactive limit.
            budget.set_limit(Dimension::Requests, rate.limit().ok());
        }
        let concurrency = policy.concurrency.map(|max| Arc::new(Semaphore::new(max)));
        Lane {
            key,
            policy,
            budget,
            concurrency,
            counters: Counters::default(),
            last_used: AtomicU64::new(0),
        }
    }

    /// Whether the lane could be forgotten without changing anything: nobody is using it (the
    /// caller checks the `Arc` count), nothing waits or flies, and its budget is at rest.
    pub fn is_idle(&self) -> bool {
        self.counters.in_flight.load(Relaxed) == 0
            && self.counters.queued.load(Relaxed) == 0
            && self
                .concurrency
                .as_ref()
                .zip(self.policy.concurrency)
                .is_none_or(|(semaphore, max)| semaphore.available_permits() == max)
    }

    /// Whether forgetting the lane would lose rate or cooldown state.
    pub fn holds_state(&self) -> bool {
        !self.budget.is_at_rest()
    }

    pub fn stats(&self, now: Instant) -> LaneStats {
        let c = &self.counters;
        LaneStats {
            key: self.key.clone(),
            sent: c.sent.load(Relaxed),
            completed: c.completed.load(Relaxed),
            errors: c.errors.load(Relaxed),
            rejected: c.rejected.load(Relaxed),
            waited_total: Duration::from_nanos(c.waited_total_ns.load(Relaxed)),
            waited_max: Duration::from_nanos(c.waited_max_ns.load(Relaxed)),
            in_flight: c.in_flight.load(Relaxed),
            queued: c.queued.load(Relaxed),
            rate: self.budget.limit(Dimension::Requests).map(|limit| {
                if limit.interval.is_zero() {
                    f64::INFINITY
                } else {
                    1.0 / limit.interval.as_secs_f64()
                }
            }),
            cooldown_remaining: self
                .budget
                .cooldown_until(&crate::limiter::Cost::requests(1))
                .map(|until| until.saturating_duration_since(now)),
        }
    }
}
