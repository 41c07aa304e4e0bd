//! Test hooks: a store that tests drive directly, with explicit times (hidden from the docs).

use std::sync::Arc;
use std::time::Duration;

use super::runtime::Store;
use super::script::{self, Booked, Reconcile, Shape};
use super::RedisStore;
use crate::key::LaneKey;
use crate::limiter::{Cost, Dimension, Limit};
use crate::stats::StoreStats;

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

    /// Shares `limit` of requests for `lane` as a worker learned it; `on_curve`: the share of
    /// the fleet's pace learned from plain refusals the worker paces on, when `limit` is that
    /// pace.
    pub async fn learn(
        &self,
        lane: &str,
        limit: Limit,
        on_curve: Option<u64>,
    ) -> Result<(), String> {
        self.store
            .learn(
                &self.key(lane),
                Dimension::Requests,
                Some(limit),
                (false, false),
                on_curve,
            )
            .await
            .map_err(|error| error.to_string())
    }

    /// Shares a decrease of the pace learned from plain refusals for `lane`, with the
    /// requests' `limit` it set (not fresh), at `now` (`None`: the server's clock). Returns
    /// the share's number and how much it stretched the schedule booked ahead (1: not at all);
    /// `None` when the fleet already paces slower (stale: not shared).
    pub async fn share_decrease(
        &self,
        lane: &str,
        limit: Limit,
        now: Option<Duration>,
    ) -> Result<Option<(u64, f64)>, String> {
        let cubic = script::FleetCubic {
            seq: 0,
            last_max: 1.0 / limit.interval.as_secs_f64(),
            beta: 0.7,
            since_us: 0.0,
            after_us: 0.0,
            stretch: None,
        };
        self.store
            .share_cubic(&self.key(lane), cubic, Some((limit, false, false)), now)
            .await
            .map(|shared| shared.map(|(seq, stretch)| (seq, stretch.factor)))
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
