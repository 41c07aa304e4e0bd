//! [`SimulatedApi`]: the state every way of reaching the simulated server shares (its
//! configuration, limiters, counters, outage and open ports), and the verbs a test uses on it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::SystemTime;

use tokio::sync::watch;
use tokio::time::Instant;

use super::config::Config;
use super::limiter::{Dimension, Limiter};
use super::listening::Listening;
use super::outage::Outage;
use super::stats::{RecordedRequest, SimStats};

/// A simulated rate-limited HTTP API. Cloning is cheap and every clone shares the same
/// limits, outage and counters.
///
/// Use it as the last middleware of a `reqwest_middleware` client, or serve it on a
/// loopback socket with [`serve`](Self::serve). See the [module docs](super) for what it
/// answers.
///
/// ```
/// use reqwest_throttle::sim::{Outage, SimulatedApi};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let api = SimulatedApi::builder().build();
/// let server = api.serve().await?;
/// let client = reqwest::Client::new();
///
/// assert_eq!(client.get(server.url("/health")).send().await?.status(), 200);
/// api.set_outage(Some(Outage::Status(http::StatusCode::SERVICE_UNAVAILABLE)));
/// assert_eq!(client.get(server.url("/health")).send().await?.status(), 503);
/// api.set_outage(None);
/// assert_eq!(client.get(server.url("/health")).send().await?.status(), 200);
/// assert_eq!((api.stats().ok, api.stats().failed), (2, 1));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SimulatedApi {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    /// The server's wall clock, which follows the tokio clock (virtual under paused time).
    wall: WallClock,
    /// The current outage; the socket servers subscribe to it.
    outage: watch::Sender<Option<Outage>>,
    state: Mutex<State>,
    /// The sockets of running servers, closed and reopened by `set_outage` itself so that
    /// an outage takes effect before `set_outage` returns.
    listeners: Mutex<Vec<Weak<Listening>>>,
}

/// What the server has counted so far, changed under one lock.
#[derive(Debug)]
pub(super) struct State {
    /// One limiter per limited dimension; a request must fit all of them.
    pub(super) limits: Vec<(Dimension, Limiter)>,
    pub(super) stats: SimStats,
    pub(super) log: Vec<RecordedRequest>,
}

impl SimulatedApi {
    /// A simulated API with `config`, the `limits` it starts with, no outage and no history.
    /// The server's wall clock now: the real time when the API was built, advanced by the
    /// tokio clock since, so that a `Date` or an epoch reset follows virtual time in a paused
    /// test as it follows real time elsewhere.
    pub(super) fn wall_now(&self) -> SystemTime {
        self.inner.wall.now()
    }

    pub(super) fn new(
        config: Config,
        limits: Vec<(Dimension, Limiter)>,
        wall: WallClock,
    ) -> SimulatedApi {
        let (outage, _) = watch::channel(None);
        SimulatedApi {
            inner: Arc::new(Inner {
                config,
                wall,
                outage,
                state: Mutex::new(State {
                    limits,
                    stats: SimStats::default(),
                    log: Vec::new(),
                }),
                listeners: Mutex::new(Vec::new()),
            }),
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SimStats {
        self.lock().stats.clone()
    }

    /// The requests received so far, in arrival order (at most the
    /// [`record_limit`](super::SimulatedApiBuilder::record_limit) first ones).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().log.clone()
    }

    /// The current outage, if any.
    pub fn outage(&self) -> Option<Outage> {
        *self.inner.outage.borrow()
    }

    /// Starts (`Some`) or ends (`None`) an outage. It applies to every request decided after
    /// this call, in middleware mode and on every socket server of this API; with
    /// [`Outage::Refuse`] the servers' ports are closed before this returns and reopened (on
    /// the same port) when the outage ends.
    ///
    /// During an outage the limiter is not charged.
    pub fn set_outage(&self, outage: Option<Outage>) {
        self.inner.outage.send_replace(outage);
        let refuse = matches!(outage, Some(Outage::Refuse));
        let mut listeners = self
            .inner
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        listeners.retain(|listening| listening.strong_count() > 0);
        for listening in listeners.iter().filter_map(Weak::upgrade) {
            listening.apply_outage(refuse);
        }
    }

    /// Registers a socket server's port, so that [`set_outage`](Self::set_outage) closes and
    /// reopens it, and brings it in line with the current outage. Both happen under the
    /// registry's lock, so a concurrent `set_outage` is applied either here or there, never
    /// lost.
    pub(super) fn register(&self, listening: &Arc<Listening>) {
        let mut listeners = self
            .inner
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        listeners.retain(|listening| listening.strong_count() > 0);
        listeners.push(Arc::downgrade(listening));
        listening.apply_outage(matches!(self.outage(), Some(Outage::Refuse)));
    }

    /// What the server was built to do.
    pub(super) fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // No code path panics while holding the lock; recover the state anyway rather than
        // propagate a poison into the caller's test.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The real wall-clock time at one tokio instant; later times are counted on the tokio clock.
#[derive(Clone, Copy, Debug)]
pub(super) struct WallClock {
    at_start: SystemTime,
    start: Instant,
}

impl WallClock {
    /// The clock, started now at `at_start` (the real time when `None`).
    pub(super) fn start(at_start: Option<SystemTime>) -> WallClock {
        WallClock {
            at_start: at_start.unwrap_or_else(SystemTime::now),
            start: Instant::now(),
        }
    }

    /// The wall-clock time now.
    pub(super) fn now(&self) -> SystemTime {
        let elapsed = self.start.elapsed();
        self.at_start.checked_add(elapsed).unwrap_or(self.at_start)
    }
}
