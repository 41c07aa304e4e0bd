//! The store at work: the connection, its health and the fleet's clock and membership, and
//! the calls a lane makes (booking, settling, leases, pauses, learned limits).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::Script;
use tokio::time::Instant;

use super::clock::ServerClock;
use super::connection::Connector;
use super::health::{Attempt, Health};
use super::members::{self, Members};
use super::script::{self, Booked, Reconcile, Shapes};
use super::{LaneFilter, OnStoreDown};
use crate::key::LaneKey;
use crate::limiter::{Cost, Dimension, Limit};
use crate::stats::StoreStats;

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
    pub(super) connector: Connector,
    pub(super) book: Script,
    pub(super) settle: Script,
    pub(super) cool_down: Script,
    pub(super) learn: Script,
    pub(super) share_cubic: Script,
    pub(super) curve: Script,
    pub(super) acquire: Script,
    pub(super) renew: Script,
    pub(super) release: Script,
    /// The fleet-wide cap of requests in flight per lane, if any.
    pub(super) concurrency: Option<usize>,
    pub(super) lease: Duration,
    pub(super) prefix: String,
    pub(super) timeout: Duration,
    pub(super) on_down: OnStoreDown,
    pub(super) lanes: Option<Box<LaneFilter>>,
    pub(super) health: Health,
    /// Where the server's clock falls on this process's.
    pub(super) clock: ServerClock,
    pub(super) heartbeat: Script,
    /// The live workers, when the fallback share follows them.
    pub(super) members: Option<Members>,
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

    /// The workers sharing the store as last counted (at least this one).
    pub fn live_workers(&self) -> u32 {
        self.members
            .as_ref()
            .map_or(1, |members| members.live().max(1))
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
    /// it); `fresh` starts its cell anew with the burst spent. `on_curve`: the share of the
    /// fleet's pace learned from plain refusals the worker paces on, when the limit is that
    /// pace: refused if the fleet has a later one.
    pub async fn learn(
        &self,
        key: &str,
        dimension: Dimension,
        limit: Option<Limit>,
        (strict, fresh): (bool, bool),
        on_curve: Option<u64>,
    ) -> Result<(), StoreError> {
        let args = script::learn_args(dimension, limit, strict, fresh, on_curve);
        self.run::<String>(&self.learn, key, &args).await.map(drop)
    }

    /// Shares the pace a worker learned from plain refusals with the lane at `key`, with the
    /// requests' limit it set (`(limit, strict, fresh)`), in one step, at `now` (`None`: the
    /// server's clock). Returns the share's number and how it stretched the schedule booked
    /// ahead; `None` when stale (the fleet paces slower already): not shared.
    pub async fn share_cubic(
        &self,
        key: &str,
        cubic: script::FleetCubic,
        paced: Option<(Limit, bool, bool)>,
        now: Option<Duration>,
    ) -> Result<Option<(u64, script::Stretch)>, StoreError> {
        let args = script::share_cubic_args(cubic, paced, now);
        let reply: Vec<String> = self.run(&self.share_cubic, key, &args).await?;
        script::parse_shared(&reply)
            .map_err(|()| StoreError::Reply(format!("not a share: {reply:?}")))
    }

    /// The fleet's pace learned from plain refusals for the lane at `key`, and when the store
    /// read it (µs of its clock).
    pub async fn curve(&self, key: &str) -> Result<(f64, Option<script::FleetCubic>), StoreError> {
        let reply: Vec<String> = self.run(&self.curve, key, &[String::new()]).await?;
        script::parse_curve(&reply)
            .ok_or_else(|| StoreError::Reply(format!("not a curve: {reply:?}")))
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
