//! One budget shared by many processes through Redis (feature `redis`).
//!
//! Eight workers sharing one API key each keep, by default, a budget of their own, and together
//! send eight times the allowed rate. With a [`RedisStore`], the lanes it applies to keep their
//! budget in Redis (or Valkey) instead:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use reqwest_throttle::store::RedisStore;
//! use reqwest_throttle::{Policy, Rate, Throttle};
//!
//! let throttle = Throttle::builder()
//!     .host("api.partner.example", Policy::new().rate(Rate::per_second(50)))
//!     .store(RedisStore::new("redis://127.0.0.1:6379/")?.expected_workers(8))
//!     .build()?;
//! # drop(throttle);
//! # Ok(())
//! # }
//! ```
//!
//! # How a booking goes
//!
//! One round trip per request: a Lua script books the request's cost in every dimension at once
//! with the same GCRA as the in-memory [`Budget`](crate::limiter::Budget) (weighted costs,
//! oversized costs as debt, all or nothing at the slowest dimension's instant; see the
//! `script` module), against the server's clock (`TIME`), so workers whose clocks disagree
//! still share one schedule. It replies how long to wait; the worker only sleeps that long.
//! The limits are the lane's own (configured, or learned from the server's headers), sent with
//! each booking; a limit any worker learned from the server is kept in Redis and used by every
//! booking, and a `remaining` it reads charges the shared budget, so the fleet paces as one
//! client. A request dropped before it leaves gives its booking back: the latest booking puts
//! the schedule back as it was, an earlier one closes it up behind it unless a gap in the
//! schedule since absorbed it (then it is forfeited: the fleet sends a little less, never
//! more). An LLM usage report settles a booking (over-estimates refunded, as in memory only by
//! the latest booking; under-estimates charged). A pause a worker learns from the server
//! (Retry-After, a reset) is written to Redis too, so every worker honours it.
//!
//! A grant is an instant of the server's clock: each worker places it on its own clock by the
//! offset measured on its fastest recent round trip and leaves at it to some tens of
//! microseconds, and the shared cell spaces requests a little further apart than their
//! interval (2 %, at most 1 ms) against the arrival jitter between processes, so that a fleet
//! keeps a server without burst (nginx `limit_req`) as one process does. What a worker learns
//! from plain refusals (the pace and its latest decrease) is shared the same way: one refusal
//! slows the fleet once.
//!
//! Keys: one hash per lane, `{prefix:lane}` (default prefix `reqwest-throttle`), and
//! `{prefix:lane}:leases` for a fleet-wide [`concurrency`](RedisStore::concurrency) cap; the
//! braces are a hash tag, so every key of a lane stays on one Redis Cluster slot. The hash
//! expires one second after its state is back at rest, so idle lanes leave nothing behind.
//!
//! # One server, a cluster, TLS, your own connection
//!
//! - [`RedisStore::new`] takes a URL (`redis://`, or `rediss://` with the feature `tls`:
//!   rustls, the system's root certificates); [`RedisStore::from_client`] a `redis::Client`
//!   (your own root certificate through `redis::Client::build_with_tls`, RESP3, …);
//!   [`RedisStore::from_connection`] a `ConnectionManager` you already have.
//! - With the feature `cluster`, `RedisStore::cluster` takes the URLs of some of a Redis (or
//!   Valkey) Cluster's nodes; `from_cluster_client` and `from_cluster_connection` your own. A
//!   booking runs on the primary of its lane's slot; when a primary fails, bookings take the
//!   fallback until the cluster has promoted a replica, then book there.
//!
//! Settings that cannot work (a zero [`concurrency`](RedisStore::concurrency), a
//! [`timeout`](RedisStore::timeout) of zero, a fallback share that is NaN, a prefix with a
//! brace, …) make [`ThrottleBuilder::build`](crate::ThrottleBuilder::build) fail with a
//! [`PolicyError::StoreSetting`] that names the setting and the value.
//!
//! # When Redis is gone or slow
//!
//! Every call has a short timeout ([`RedisStore::timeout`], default 100 ms). A call that fails
//! or times out marks the store down; bookings then take the policy's way at once, without
//! calling it ([`OnStoreDown`]):
//!
//! - [`OnStoreDown::Fallback`] (the default): the lane books in a budget of this process at a
//!   share of each limit, by default `1 / N` with N the live workers Redis last counted (each
//!   booking worker renews a heartbeat entry that expires; see the `members` module), or
//!   `1 / expected_workers` when [`RedisStore::expected_workers`] overrides it, so the fleet as
//!   a whole stays under the limit while Redis is down;
//! - [`OnStoreDown::FailFast`]: the request fails with
//!   [`Error::StoreUnavailable`](crate::Error::StoreUnavailable) and nothing is sent.
//!
//! The connection manager reconnects in the background (on a cluster, a probe that fails
//! connects anew through the given nodes, so it reads the slot map afresh and finds a replica
//! promoted since); one booking probes the store again
//! after 250 ms, then every 500 ms (on the wall clock's multiples of the interval, so that a
//! fleet's workers come back together), and as soon as it answers every lane books in Redis
//! again. A booking never panics and never waits on Redis longer than the
//! timeout. A script that ran after its caller timed out books units nobody sends: the fleet
//! then sends a little less, never more. [`ThrottleStats::store`](crate::ThrottleStats::store)
//! counts round trips, failures, fallbacks, refusals and reconnects; the transitions are
//! `tracing` events (`warn` when the store goes down, `info` when it is back).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;

use crate::error::for_people;
use crate::key::LaneKey;
use crate::PolicyError;

mod clock;
mod connection;
mod health;
mod lane;
mod members;
mod probe;
mod runtime;
mod script;
mod stretch;

pub(crate) use lane::{shapes_of, SharedBooking, SharedBudget, SharedCommitment, SharedOutcome};
pub use probe::{ProbeBooking, StoreProbe};
pub(crate) use runtime::{Store, StoreError};

use clock::ServerClock;
use connection::{Connection, Connector, Source};
use health::Health;
use members::Members;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "reqwest-throttle";
/// The default timeout of one call to Redis.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);
/// The longest timeout of one call to Redis: a request may wait this long on a Redis that does
/// not answer.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// The shortest lease of a fleet-wide concurrency slot: a running request renews its slot every
/// third of the lease, one round trip each time.
pub const MIN_LEASE: Duration = Duration::from_millis(30);

/// What a lane does while its store does not answer.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum OnStoreDown {
    /// Book in a budget of this process at `share` of each limit (rate and burst; a burst never
    /// below one unit). `share` must be in `(0, 1]`: the throttle refuses to build otherwise.
    Fallback {
        /// The part of the fleet's limit one worker may use alone.
        share: f64,
    },
    /// Refuse the request with [`Error::StoreUnavailable`](crate::Error::StoreUnavailable).
    FailFast,
}

type LaneFilter = dyn Fn(&LaneKey) -> bool + Send + Sync;

/// A Redis (or Valkey) server, or a Redis Cluster (feature `cluster`), that lanes keep their
/// budget in, shared by every process that uses the same server and prefix. See the
/// [module](self) for what is shared and what happens when Redis is gone.
///
/// Its setters check what they are given; the first setting that cannot work (a zero
/// [`concurrency`](Self::concurrency), a [`timeout`](Self::timeout) of zero, a fallback share
/// of NaN, …) is kept, and [`ThrottleBuilder::build`](crate::ThrottleBuilder::build) refuses the
/// store with it as a [`PolicyError::StoreSetting`] naming the setting and the value:
///
/// ```
/// use reqwest_throttle::store::RedisStore;
/// use reqwest_throttle::{PolicyError, Throttle};
///
/// let store = RedisStore::new("redis://127.0.0.1/").unwrap().concurrency(0);
/// let error = Throttle::builder().store(store).build().unwrap_err();
/// assert!(matches!(error, PolicyError::StoreSetting { field: "concurrency", .. }));
/// assert_eq!(
///     error.to_string(),
///     "store concurrency: must be at least 1 (got 0); leave it unset for no fleet-wide cap"
/// );
/// ```
#[must_use]
#[non_exhaustive]
pub struct RedisStore {
    source: Source,
    prefix: String,
    timeout: Duration,
    on_down: OnStoreDown,
    lanes: Option<Box<LaneFilter>>,
    concurrency: Option<usize>,
    lease: Duration,
    /// The first setting given that cannot work: the throttle's `build` refuses the store with it.
    invalid: Option<PolicyError>,
    /// Whether the fallback share follows the live workers Redis counts (until
    /// [`expected_workers`](Self::expected_workers) or [`on_down`](Self::on_down) sets it).
    membership: bool,
}

/// How long a fleet-wide concurrency slot is held without renewal, by default.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(5);

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("cluster", &self.source.is_cluster())
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("on_down", &self.on_down)
            .field("all_lanes", &self.lanes.is_none())
            .field("concurrency", &self.concurrency)
            .field("lease", &self.lease)
            .field("invalid", &self.invalid)
            .finish_non_exhaustive()
    }
}

/// A store setting refused: `field` was given `value`.
fn refused(
    field: &'static str,
    value: impl fmt::Display,
    expected: &'static str,
    fix: &'static str,
) -> PolicyError {
    PolicyError::StoreSetting {
        field,
        value: value.to_string(),
        expected,
        fix,
    }
}

/// A Redis URL the client refused, said for people (the URL itself is not repeated: it may
/// hold a password).
fn bad_url(url: &str, error: &redis::RedisError) -> PolicyError {
    let tls = url.trim_start().to_ascii_lowercase().starts_with("rediss:");
    let reason = if tls && !cfg!(feature = "tls") {
        format!("{error}; rediss:// needs the crate feature `tls`")
    } else {
        error.to_string()
    };
    PolicyError::StoreUrl { reason }
}

impl RedisStore {
    /// The server at `url` (`redis://host:port/db`; `rediss://…` with the feature `tls`, which
    /// trusts the system's root certificates). Nothing is connected yet: the first booking
    /// connects. Defaults: every lane, prefix [`DEFAULT_PREFIX`], timeout [`DEFAULT_TIMEOUT`],
    /// fall back to `1 / N` of every limit, N the live workers Redis last counted by heartbeat
    /// ([`expected_workers`](Self::expected_workers) overrides it).
    ///
    /// ```
    /// use reqwest_throttle::store::RedisStore;
    ///
    /// assert!(RedisStore::new("redis://127.0.0.1:6379/").is_ok());
    /// assert!(RedisStore::new("http://127.0.0.1/").is_err());
    /// ```
    pub fn new(url: &str) -> Result<RedisStore, PolicyError> {
        let client = redis::Client::open(url).map_err(|error| bad_url(url, &error))?;
        Ok(RedisStore::from_client(client))
    }

    /// The server `client` connects to: for what a URL cannot say, such as a TLS root
    /// certificate of your own (`redis::Client::build_with_tls`, feature `tls`) or a RESP3
    /// connection. The store makes its connection manager from it on first use, with its own
    /// [`timeout`](Self::timeout).
    ///
    /// ```
    /// use reqwest_throttle::store::RedisStore;
    ///
    /// let client = redis::Client::open("redis://127.0.0.1:6379/0")?;
    /// let store = RedisStore::from_client(client).prefix("billing");
    /// # drop(store);
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn from_client(client: redis::Client) -> RedisStore {
        RedisStore::from_source(Source::Client(Box::new(client)))
    }

    /// Your own connection manager, used as it is: its timeouts, its reconnection, its
    /// credentials. The store still bounds each call by its own [`timeout`](Self::timeout).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use redis::aio::ConnectionManager;
    /// use reqwest_throttle::store::RedisStore;
    /// use reqwest_throttle::Throttle;
    ///
    /// let client = redis::Client::open("redis://127.0.0.1:6379/")?;
    /// let manager = ConnectionManager::new(client).await?;
    /// let throttle = Throttle::builder()
    ///     .store(RedisStore::from_connection(manager.clone()).expected_workers(4))
    ///     .build()?;
    /// # drop(throttle);
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_connection(connection: ConnectionManager) -> RedisStore {
        RedisStore::from_source(Source::Ready(Connection::Node(connection)))
    }

    /// A Redis (or Valkey) Cluster reached through any of `nodes` (`redis://host:port`, or
    /// `rediss://…` with the feature `tls`); the others are found from the cluster's slot map.
    /// Nothing is connected yet: the first booking connects. Every key of a lane carries the
    /// lane's hash tag, so each booking runs on the primary of one slot; after a failover the
    /// store finds the promoted replica (bookings take the [fallback](OnStoreDown) meanwhile).
    ///
    /// ```
    /// use reqwest_throttle::store::RedisStore;
    ///
    /// let store = RedisStore::cluster(["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"]);
    /// assert!(store.is_ok());
    /// assert!(RedisStore::cluster(["http://10.0.0.1/"]).is_err());
    /// ```
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub fn cluster<I>(nodes: I) -> Result<RedisStore, PolicyError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let nodes: Vec<String> = nodes
            .into_iter()
            .map(|node| node.as_ref().to_owned())
            .collect();
        let url = nodes.first().map(String::as_str).unwrap_or_default();
        // A node that does not answer is retried soon, a few times: the store gives each call
        // its timeout anyway, and probes again later.
        let client = redis::cluster::ClusterClient::builder(nodes.iter().map(String::as_str))
            .retries(3)
            .min_retry_wait(10)
            .max_retry_wait(100)
            .build()
            .map_err(|error| bad_url(url, &error))?;
        Ok(RedisStore::from_cluster_client(client))
    }

    /// The Redis Cluster `client` connects to (its TLS certificates, credentials and retries);
    /// the store makes its cluster connection from it on first use, with its own
    /// [`timeout`](Self::timeout).
    ///
    /// ```
    /// use redis::cluster::ClusterClient;
    /// use reqwest_throttle::store::RedisStore;
    ///
    /// let client = ClusterClient::builder(["redis://10.0.0.1:6379"]).retries(2).build()?;
    /// let store = RedisStore::from_cluster_client(client).expected_workers(8);
    /// # drop(store);
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub fn from_cluster_client(client: redis::cluster::ClusterClient) -> RedisStore {
        RedisStore::from_source(Source::Cluster(Box::new(client)))
    }

    /// Your own cluster connection, used as it is. The store still bounds each call by its own
    /// [`timeout`](Self::timeout).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use redis::cluster::ClusterClient;
    /// use reqwest_throttle::store::RedisStore;
    ///
    /// let client = ClusterClient::new(["redis://10.0.0.1:6379"])?;
    /// let connection = client.get_async_connection().await?;
    /// let store = RedisStore::from_cluster_connection(connection);
    /// # drop(store);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub fn from_cluster_connection(
        connection: redis::cluster_async::ClusterConnection,
    ) -> RedisStore {
        RedisStore::from_source(Source::Ready(Connection::Cluster(connection)))
    }

    fn from_source(source: Source) -> RedisStore {
        RedisStore {
            source,
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            on_down: OnStoreDown::Fallback { share: 1.0 },
            lanes: None,
            concurrency: None,
            lease: DEFAULT_LEASE,
            invalid: None,
            membership: true,
        }
    }

    /// Keeps `error` if it is the first invalid setting.
    fn refuse(mut self, error: PolicyError) -> Self {
        self.invalid.get_or_insert(error);
        self
    }

    /// At most `max` requests of each lane in flight across the whole fleet (at least 1), on
    /// top of each process's own [`Policy::concurrency`](crate::Policy::concurrency).
    ///
    /// A request takes a slot once its rate allows it to leave (it never holds one while it
    /// waits for rate) and gives it back when its answer has been read (its headers; an LLM
    /// answer's usage); past its `max_wait` waiting for one it fails with
    /// [`Error::Saturated`](crate::Error::Saturated). A slot is a lease in Redis that expires
    /// unless renewed ([`lease`](Self::lease)); the worker renews it while the request runs, so
    /// a worker that crashes holds its slots only until they expire. While Redis is down,
    /// requests leave without a fleet-wide slot (each process's own cap still applies).
    ///
    /// ```
    /// use reqwest_throttle::store::RedisStore;
    ///
    /// let store = RedisStore::new("redis://127.0.0.1/").unwrap().concurrency(16);
    /// assert_eq!(store.configured_concurrency(), Some(16));
    /// ```
    pub fn concurrency(mut self, max: usize) -> Self {
        if max == 0 {
            return self.refuse(refused(
                "concurrency",
                max,
                "must be at least 1",
                "leave it unset for no fleet-wide cap",
            ));
        }
        self.concurrency = Some(max);
        self
    }

    /// How long a fleet-wide concurrency slot lasts without renewal (default [`DEFAULT_LEASE`],
    /// at least [`MIN_LEASE`]); a running request renews it every third of that. What a
    /// crashed worker's slots cost the fleet.
    pub fn lease(mut self, lease: Duration) -> Self {
        if lease < MIN_LEASE {
            return self.refuse(refused(
                "lease",
                for_people(&lease),
                "must be at least 30ms",
                "a running request renews its slot every third of the lease, one round trip to Redis each time; the default is 5s",
            ));
        }
        self.lease = lease;
        self
    }

    /// Keys start with `prefix` (default [`DEFAULT_PREFIX`]): processes share a budget when
    /// they use the same server, prefix and lane key. No `{` or `}`: the store writes each
    /// lane's keys under the hash tag `{prefix:lane}`, which a Redis Cluster reads up to the
    /// first `}`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        if prefix.contains(['{', '}']) {
            return self.refuse(refused(
                "prefix",
                format_args!("{prefix:?}"),
                "must not contain `{` or `}`",
                "the store writes each lane's keys under the hash tag {prefix:lane}, so that a Redis Cluster keeps them on one slot",
            ));
        }
        self.prefix = prefix;
        self
    }

    /// How long one call to Redis may take before the store counts as down (default 100 ms;
    /// longer than zero, at most [`MAX_TIMEOUT`]): a request waits at most this long for a
    /// Redis that does not answer, then takes the [`on_down`](Self::on_down) way.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        if timeout.is_zero() || timeout > MAX_TIMEOUT {
            return self.refuse(refused(
                "timeout",
                for_people(&timeout),
                "must be longer than zero and at most 60s",
                "a request waits this long for a Redis that does not answer; the default is 100ms",
            ));
        }
        self.timeout = timeout;
        self
    }

    /// How many processes share the budget (at least 1), as an override: while Redis is down,
    /// each falls back to `1 / workers` of every limit. Without it, the share is `1 / N` of the
    /// live workers Redis last counted (each booking worker renews a heartbeat entry every
    /// 500 ms; an entry lives 3 s), which follows a fleet that scales.
    ///
    /// ```
    /// use reqwest_throttle::store::{OnStoreDown, RedisStore};
    ///
    /// let store = RedisStore::new("redis://127.0.0.1/").unwrap().expected_workers(4);
    /// assert_eq!(store.configured_on_down(), OnStoreDown::Fallback { share: 0.25 });
    /// ```
    pub fn expected_workers(mut self, workers: u32) -> Self {
        if workers == 0 {
            return self.refuse(refused(
                "expected_workers",
                workers,
                "must be at least 1",
                "the number of processes that share the budget",
            ));
        }
        self.on_down = OnStoreDown::Fallback {
            share: 1.0 / f64::from(workers),
        };
        self.membership = false;
        self
    }

    /// What a lane does while Redis does not answer (default: fall back to `1 / N` of every
    /// limit, N the live workers last counted; see [`expected_workers`](Self::expected_workers)).
    /// A fallback share must be in `(0, 1]`.
    pub fn on_down(mut self, on_down: OnStoreDown) -> Self {
        if let OnStoreDown::Fallback { share } = on_down {
            // Written so that NaN fails it too.
            if !(share > 0.0 && share <= 1.0) {
                return self.refuse(refused(
                    "on_down",
                    format_args!("a fallback share of {share}"),
                    "a fallback share must be a number above 0 and at most 1",
                    "use 1/N for a fleet of N workers (expected_workers(N)), or OnStoreDown::FailFast",
                ));
            }
        }
        self.on_down = on_down;
        self.membership = false;
        self
    }

    /// Only lanes whose key passes `filter` keep their budget in Redis (default: every lane).
    /// The default key is `scheme://host:port`.
    ///
    /// ```
    /// use reqwest_throttle::store::RedisStore;
    ///
    /// let store = RedisStore::new("redis://127.0.0.1/")
    ///     .unwrap()
    ///     .lanes(|lane| lane.as_str().contains("api.openai.com"));
    /// # drop(store);
    /// ```
    pub fn lanes(mut self, filter: impl Fn(&LaneKey) -> bool + Send + Sync + 'static) -> Self {
        self.lanes = Some(Box::new(filter));
        self
    }

    /// The key prefix set by [`prefix`](Self::prefix).
    pub fn configured_prefix(&self) -> &str {
        &self.prefix
    }

    /// The timeout of one call, set by [`timeout`](Self::timeout).
    pub fn configured_timeout(&self) -> Duration {
        self.timeout
    }

    /// What lanes do while Redis is down, set by [`on_down`](Self::on_down) or
    /// [`expected_workers`](Self::expected_workers).
    pub fn configured_on_down(&self) -> OnStoreDown {
        self.on_down
    }

    /// The fleet-wide cap of requests in flight per lane, set by
    /// [`concurrency`](Self::concurrency).
    pub fn configured_concurrency(&self) -> Option<usize> {
        self.concurrency
    }

    /// How long a fleet-wide slot lasts without renewal, set by [`lease`](Self::lease).
    pub fn configured_lease(&self) -> Duration {
        self.lease
    }

    /// The store as the lanes use it, or the first setting given that cannot work.
    pub(crate) fn into_store(self) -> Result<Arc<Store>, PolicyError> {
        match self.invalid {
            Some(error) => Err(error),
            None => Ok(self.into_store_unchecked()),
        }
    }

    fn into_store_unchecked(self) -> Arc<Store> {
        Arc::new(Store {
            connector: Connector::new(self.source),
            book: Script::new(script::BOOK),
            settle: Script::new(script::SETTLE),
            cool_down: Script::new(script::COOL_DOWN),
            learn: Script::new(script::LEARN),
            share_cubic: Script::new(script::SHARE_CUBIC),
            curve: Script::new(script::CURVE),
            acquire: Script::new(script::ACQUIRE),
            renew: Script::new(script::RENEW),
            release: Script::new(script::RELEASE),
            concurrency: self.concurrency,
            lease: self.lease,
            prefix: self.prefix,
            timeout: self.timeout,
            on_down: self.on_down,
            lanes: self.lanes,
            health: Health::default(),
            clock: ServerClock::default(),
            heartbeat: Script::new(members::HEARTBEAT_SCRIPT),
            members: self.membership.then(|| Members::new(lane::lease_id())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a Redis Cluster hashes of `key` to find its slot (the cluster specification): the
    /// text between the first `{` and the first `}` after it when that is not empty, else the
    /// whole key.
    fn hashed(key: &str) -> &str {
        key.find('{')
            .and_then(|open| {
                let rest = &key[open + 1..];
                rest.find('}').map(|close| &rest[..close])
            })
            .filter(|tag| !tag.is_empty())
            .unwrap_or(key)
    }

    #[test]
    fn every_key_of_a_lane_hashes_to_the_lanes_slot() {
        for prefix in ["reqwest-throttle", "", "a:b"] {
            let store = RedisStore::new("redis://127.0.0.1/")
                .unwrap()
                .prefix(prefix)
                .into_store()
                .unwrap();
            for lane in ["https://api.example.com:443", "odd}lane", "{odd", "}", ""] {
                let key = store.key_for(&LaneKey::new(lane));
                let tag = hashed(&key);
                assert_ne!(tag, key, "{key:?} has no hash tag");
                // The leases, and any key a lane adds the same way.
                for other in [format!("{key}:leases"), format!("{key}:anything{{x}}")] {
                    assert_eq!(hashed(&other), tag, "{other:?} beside {key:?}");
                }
            }
            let one = store.key_for(&LaneKey::new("https://a.example:443"));
            let two = store.key_for(&LaneKey::new("https://b.example:443"));
            assert_ne!(hashed(&one), hashed(&two), "two lanes share one tag");
        }
    }

    #[test]
    fn a_prefix_that_would_break_the_hash_tag_is_refused() {
        // `}x` would make the tag `{}`: empty, so each key of a lane would hash whole.
        let store = RedisStore::new("redis://127.0.0.1/").unwrap().prefix("}x");
        assert!(matches!(
            store.into_store(),
            Err(PolicyError::StoreSetting {
                field: "prefix",
                ..
            })
        ));
    }
}
