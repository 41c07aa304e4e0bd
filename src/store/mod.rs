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
use tokio::time::Instant;

use crate::error::for_people;
use crate::key::LaneKey;
use crate::limiter::{Cost, Dimension, Limit};
use crate::stats::StoreStats;
use crate::PolicyError;

mod connection;
mod clock;
mod health;
mod lane;
mod members;
mod script;

pub(crate) use lane::{shapes_of, SharedBooking, SharedBudget, SharedCommitment, SharedOutcome};
pub(crate) use script::{Booked, Reconcile, Shape, Shapes};

use connection::{Connection, Connector, Source};
use clock::ServerClock;
use health::{Attempt, Health};
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

/// Why a call to the store did not give an answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StoreError {
    /// Known down, and no probe due: not called.
    #[error("Redis did not answer recently; the next probe is not due yet")]
    Down,
    /// No answer within the timeout.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection or the server failed.
    #[error("Redis failed: {0}")]
    Redis(String),
    /// The reply was not what the script returns.
    #[error("unexpected reply from the Redis script: {0}")]
    Reply(String),
}

/// The store as the lanes use it: one connection (to a server or a cluster), the scripts, the
/// health state.
pub(crate) struct Store {
    /// Made on first use, inside the runtime (the manager spawns its reconnection tasks).
    connector: Connector,
    book: Script,
    settle: Script,
    cool_down: Script,
    learn: Script,
    share_cubic: Script,
    acquire: Script,
    renew: Script,
    release: Script,
    /// The fleet-wide cap of requests in flight per lane, if any.
    concurrency: Option<usize>,
    lease: Duration,
    prefix: String,
    timeout: Duration,
    on_down: OnStoreDown,
    lanes: Option<Box<LaneFilter>>,
    health: Health,
    /// Where the server's clock falls on this process's.
    clock: ServerClock,
    heartbeat: Script,
    /// The live workers, when the fallback share follows them.
    members: Option<Members>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("prefix", &self.prefix)
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Whether the lane named `key` keeps its budget here.
    pub fn applies_to(&self, key: &LaneKey) -> bool {
        self.lanes.as_ref().is_none_or(|filter| filter(key))
    }

    /// The Redis key of a lane's state, `{prefix:lane}`; every other key of the lane is this
    /// key and a suffix (`{prefix:lane}:leases`). A Redis Cluster hashes the text between the
    /// first `{` and the first `}` after it: the prefix has no braces (its setter refuses them),
    /// so that text is a non-empty start of `prefix:lane`, the same in every key of the lane,
    /// which all land in one slot (a script may touch several). A lane key with a `}` cuts the
    /// tag short: such lanes may share a slot, which costs nothing.
    pub fn key_for(&self, lane: &LaneKey) -> String {
        format!("{{{}:{}}}", self.prefix, lane.as_str())
    }

    /// What a lane does while the store is down: by default, the share of the live workers
    /// last counted.
    pub fn on_down(&self) -> OnStoreDown {
        match (&self.members, self.on_down) {
            (Some(members), OnStoreDown::Fallback { .. }) => OnStoreDown::Fallback {
                share: members.share(),
            },
            (_, on_down) => on_down,
        }
    }

    /// Renews this worker's heartbeat (in the background) if one is due: what the fallback
    /// share counts.
    pub fn beat(self: &Arc<Self>) {
        let Some(members) = &self.members else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !members.due(Instant::now()) {
            return;
        }
        let store = Arc::clone(self);
        runtime.spawn(async move {
            let Some(members) = &store.members else {
                return;
            };
            let key = format!("{{{}}}:members", store.prefix);
            let args = [
                String::new(),
                members.id().to_owned(),
                script::micros(members::MEMBER_TTL),
            ];
            match store.run::<u64>(&store.heartbeat, &key, &args).await {
                Ok(live) => {
                    if live != u64::from(members.live()) {
                        tracing::debug!(target: "reqwest_throttle", live, "live workers sharing the store");
                    }
                    members.counted(live, Instant::now());
                }
                Err(_) => members.missed(),
            }
        });
    }

    pub fn stats(&self) -> StoreStats {
        self.health.stats()
    }

    pub fn outages(&self) -> u64 {
        self.health.outages()
    }

    pub fn fell_back(&self) {
        self.health.fell_back();
    }

    pub fn refused(&self) {
        self.health.refused();
    }

    /// Runs `script` on `key` with `args`, within the timeout, through the health gate.
    async fn run<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        key: &str,
        args: &[String],
    ) -> Result<T, StoreError> {
        let probe = match self.health.attempt(Instant::now()) {
            Attempt::Skip => return Err(StoreError::Down),
            Attempt::Call { probe } => probe,
        };
        let _round_trip = crate::telemetry::store_call();
        // However this call ends, dropped included, a probe ends with it.
        let _probe = probe.then_some(ProbeEnd(&self.health));
        let call = || async {
            let mut connection = self.connector.connection(self.timeout).await?;
            let mut invocation = script.key(key);
            for arg in args {
                invocation.arg(arg);
            }
            invocation
                .invoke_async::<T>(&mut connection)
                .await
                .map_err(|error| {
                    // The connection's own response timeout is the same as ours.
                    if error.is_timeout() {
                        StoreError::Timeout(self.timeout)
                    } else {
                        StoreError::Redis(error.to_string())
                    }
                })
        };
        let result = async {
            let result = call().await;
            if probe && matches!(result, Err(StoreError::Redis(_))) {
                // A connection manager that gave up reconnecting answers the next call with
                // its last error and only then connects again: once more, within the same
                // timeout, so that a probe of a Redis that is back finds it back.
                return call().await;
            }
            result
        };
        let result = tokio::time::timeout(self.timeout, result)
            .await
            .unwrap_or(Err(StoreError::Timeout(self.timeout)));
        match &result {
            Ok(_) => {
                if self.health.answered() {
                    if let Some(members) = &self.members {
                        members.back(Instant::now());
                    }
                    tracing::info!(target: "reqwest_throttle", "Redis answers again: lanes book in the shared budget");
                }
            }
            Err(StoreError::Reply(_)) => {
                // The server answered: it is up, the reply is wrong (a script of another
                // version under the same name?). The booking takes the fallback way.
                self.health.answered();
            }
            Err(error) => {
                if probe {
                    // Still down at a probe: a cluster's next probe starts from a fresh slot
                    // map (after a failover, the promoted replica's).
                    self.connector.reconnect_cluster();
                }
                if self.health.failed(Instant::now()) {
                    tracing::warn!(target: "reqwest_throttle", %error, on_down = ?self.on_down, "Redis is unavailable: lanes book by the fallback policy until it answers");
                }
            }
        }
        result
    }

    /// Books `cost` under `shapes` in the lane at `key`; `now`, when given, replaces the
    /// server's clock and books without the fleet's guard (tests).
    pub async fn book(
        &self,
        key: &str,
        cost: &Cost,
        shapes: &Shapes,
        max_wait: Option<Duration>,
        now: Option<Duration>,
    ) -> Result<Booked, StoreError> {
        // The guard covers at least how far this worker may misplace its grant.
        let guard = now.is_none().then(|| self.clock.uncertainty());
        let args = script::book_args(cost, shapes, max_wait, now, guard);
        let reply: Vec<String> = self.run(&self.book, key, &args).await?;
        script::parse_booked(&reply)
    }

    /// Replaces what a booking holds (`grants`, booked as `booked`) by `actual`, or gives it
    /// back whole.
    pub async fn reconcile(
        &self,
        key: &str,
        grants: &script::SharedGrants,
        booked: &Cost,
        actual: &Cost,
        how: Reconcile,
        now: Option<Duration>,
    ) -> Result<u64, StoreError> {
        let args = script::settle_args(grants, booked, actual, how, now);
        self.run(&self.settle, key, &args).await
    }

    /// Fills each dimension's cell of the lane at `key` to at least `ahead` past the server's now.
    pub async fn fill(
        &self,
        key: &str,
        ahead: &[Option<Duration>; Dimension::ALL.len()],
    ) -> Result<u64, StoreError> {
        self.run(&self.settle, key, &script::fill_args(ahead)).await
    }

    /// Shares the limit of `dimension` a worker learned for the lane at `key` (`None`: forgets
    /// it); `fresh` starts its cell anew with the burst spent.
    pub async fn learn(
        &self,
        key: &str,
        dimension: Dimension,
        limit: Option<Limit>,
        strict: bool,
        fresh: bool,
    ) -> Result<(), StoreError> {
        let args = script::learn_args(dimension, limit, strict, fresh);
        self.run::<String>(&self.learn, key, &args).await.map(drop)
    }

    /// Shares the pace a worker learned from plain refusals with the lane at `key`, unless the
    /// fleet holds a later decrease.
    pub async fn share_cubic(
        &self,
        key: &str,
        cubic: script::FleetCubic,
    ) -> Result<(), StoreError> {
        let args = script::share_cubic_args(cubic);
        self.run::<u64>(&self.share_cubic, key, &args)
            .await
            .map(drop)
    }

    /// Charges `dimension` of the lane at `key` down to `remaining` units available now.
    pub async fn sync(
        &self,
        key: &str,
        dimension: Dimension,
        remaining: u64,
        limit: Limit,
    ) -> Result<(), StoreError> {
        let args = script::sync_args(dimension, remaining, limit);
        self.run::<u64>(&self.settle, key, &args).await.map(drop)
    }

    /// The fleet-wide concurrency cap and the lease length, if there is a cap.
    pub fn concurrency(&self) -> Option<(usize, Duration)> {
        self.concurrency.map(|cap| (cap, self.lease))
    }

    /// Takes a lease `id` in the lane's leases at `key`: `Ok(None)` when taken, `Ok(Some(wait))`
    /// when the cap is reached (`wait`: until the earliest lease expires).
    pub async fn acquire(&self, key: &str, id: &str) -> Result<Option<Duration>, StoreError> {
        let Some((cap, lease)) = self.concurrency() else {
            return Ok(None);
        };
        let reply: Vec<String> = self
            .run(&self.acquire, key, &script::lease_args(cap, lease, id))
            .await?;
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(None),
            Some("full") => {
                let wait = reply
                    .get(1)
                    .and_then(|us| us.parse::<f64>().ok())
                    .and_then(|us| Duration::try_from_secs_f64(us.max(0.0) / 1e6).ok())
                    .unwrap_or(lease);
                Ok(Some(wait))
            }
            _ => Err(StoreError::Reply(format!("unknown lease reply {reply:?}"))),
        }
    }

    /// Renews lease `id`; `false` when it had expired.
    pub async fn renew(&self, key: &str, id: &str) -> Result<bool, StoreError> {
        let (cap, lease) = self.concurrency().unwrap_or((1, self.lease));
        let renewed: u64 = self
            .run(&self.renew, key, &script::lease_args(cap, lease, id))
            .await?;
        Ok(renewed == 1)
    }

    /// Gives lease `id` back.
    pub async fn release(&self, key: &str, id: &str) -> Result<(), StoreError> {
        self.run::<u64>(&self.release, key, &[id.to_owned()])
            .await
            .map(drop)
    }

    /// Pauses the lane at `key` (or one dimension of it) for `pause` from the server's now.
    pub async fn cool_down(
        &self,
        key: &str,
        dimension: Option<Dimension>,
        pause: Duration,
    ) -> Result<(), StoreError> {
        let args = [
            String::new(),
            script::cooldown_field(dimension),
            script::micros(pause),
        ];
        self.run::<String>(&self.cool_down, key, &args)
            .await
            .map(drop)
    }
}

/// Ends a probe of a down store when its call ends, however it ends.
struct ProbeEnd<'h>(&'h Health);

impl Drop for ProbeEnd<'_> {
    fn drop(&mut self) {
        self.0.probe_ended();
    }
}

/// Test hook: a store that tests drive directly, with explicit times.
#[doc(hidden)]
pub struct StoreProbe {
    store: Arc<Store>,
}

impl RedisStore {
    /// Test hook: the store without a throttle, to drive its script with explicit times.
    #[doc(hidden)]
    pub fn __probe(self) -> StoreProbe {
        StoreProbe {
            store: self.into_store_unchecked(),
        }
    }
}

/// Test hook: a booking [`StoreProbe::book_at`] made.
#[doc(hidden)]
#[derive(Debug)]
pub struct ProbeBooking {
    /// How long the caller would wait.
    pub wait: Duration,
    cost: Cost,
    grants: Box<script::SharedGrants>,
}

impl StoreProbe {
    fn key(&self, lane: &str) -> String {
        self.store.key_for(&LaneKey::new(lane))
    }

    /// Books `cost` in the lane `lane` under `limits` at the explicit instant `now` (a span
    /// since any origin the test keeps), never strict; `None` when refused.
    pub async fn book_at(
        &self,
        lane: &str,
        cost: &Cost,
        limits: &[Option<Limit>; Dimension::ALL.len()],
        now: Duration,
    ) -> Result<Option<ProbeBooking>, String> {
        let shapes = limits.map(|limit| {
            limit.map(|limit| Shape {
                limit,
                strict: false,
            })
        });
        let booked = self
            .store
            .book(&self.key(lane), cost, &shapes, None, Some(now))
            .await;
        match booked {
            Ok(Booked::Granted { wait, grants, .. }) => Ok(Some(ProbeBooking {
                wait,
                cost: *cost,
                grants,
            })),
            Ok(_) => Ok(None),
            Err(error) => Err(error.to_string()),
        }
    }

    /// Gives `booking` back at `now`, as a request dropped before it left; how many dimensions
    /// gave time back.
    pub async fn cancel_at(
        &self,
        lane: &str,
        booking: &ProbeBooking,
        now: Duration,
    ) -> Result<u64, String> {
        self.reconcile_at(lane, booking, &Cost::zero(), Reconcile::Cancel, now)
            .await
    }

    /// Settles `booking` with what it really cost, at `now`; how many dimensions gave time back.
    pub async fn settle_at(
        &self,
        lane: &str,
        booking: &ProbeBooking,
        actual: &Cost,
        now: Duration,
    ) -> Result<u64, String> {
        self.reconcile_at(lane, booking, actual, Reconcile::Settle, now)
            .await
    }

    async fn reconcile_at(
        &self,
        lane: &str,
        booking: &ProbeBooking,
        actual: &Cost,
        how: Reconcile,
        now: Duration,
    ) -> Result<u64, String> {
        self.store
            .reconcile(
                &self.key(lane),
                &booking.grants,
                &booking.cost,
                actual,
                how,
                Some(now),
            )
            .await
            .map_err(|error| error.to_string())
    }

    /// The store's counters.
    pub fn stats(&self) -> StoreStats {
        self.store.stats()
    }

    /// Takes a fleet-wide concurrency slot of `lane` as a worker that then dies would: never
    /// renewed, never given back. `false` when the cap was reached.
    pub async fn lease_and_crash(&self, lane: &str) -> Result<bool, String> {
        let key = format!("{}:leases", self.key(lane));
        self.store
            .acquire(&key, "crashed-worker")
            .await
            .map(|full| full.is_none())
            .map_err(|error| error.to_string())
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
