//! Where a lane books its requests: in this process's budget, or in a budget shared with other
//! processes through a store (feature `redis`).
//!
//! This is the one seam between a lane and the store: the lane asks its [`Booker`] and never
//! knows which kind it has, and a [`Settlement`] reconciles a booking wherever it was made.
//! Without the `redis` feature a booker is always local and costs nothing.

use std::fmt;
use std::sync::Arc;
#[cfg(feature = "redis")]
use std::time::Duration;

#[cfg(feature = "redis")]
use tokio::time::Instant;

use crate::limiter::{Blocked, Budget, Commitment, Cost, Dimension, Reservation};
use crate::telemetry::Meter;

/// Where a lane books.
#[derive(Debug, Default)]
pub(crate) enum Booker {
    /// In the lane's own budget.
    #[default]
    Local,
    /// In a budget shared through a store; the lane's own budget keeps the limits (configured
    /// and learned), the cooldown gate and the spacing as sent, and books only while the store
    /// is down.
    #[cfg(feature = "redis")]
    Shared(Box<crate::store::SharedBudget>),
}

/// What the booker did with a booking in a shared budget.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) enum SharedTurn {
    /// Nothing shared: the lane books in its own budget.
    Local,
    /// Booked in the store, and its slot has come (with its fleet-wide concurrency slot, if the
    /// store caps concurrency).
    Granted(Box<Booked>),
    /// The store is down: book in this budget, the lane's share of the fleet's limits.
    Fallback(Arc<Budget>),
    /// The shared budget refused the booking.
    Blocked(Blocked),
    /// No fleet-wide concurrency slot came before the deadline.
    Saturated,
    /// The store is down and the store's policy fails fast; why.
    Unavailable(String),
}

impl Booker {
    /// The booker of the lane named `key`: shared through `store` if the store applies to it.
    #[cfg(feature = "redis")]
    pub(crate) fn for_lane(
        store: Option<&Arc<crate::store::Store>>,
        key: &crate::key::LaneKey,
    ) -> Booker {
        match store {
            Some(store) if store.applies_to(key) => {
                Booker::Shared(Box::new(crate::store::SharedBudget::new(store, key)))
            }
            _ => Booker::Local,
        }
    }

    /// Whether bookings go to a store.
    pub(crate) fn is_shared(&self) -> bool {
        !matches!(self, Booker::Local)
    }

    /// Books `cost` in the shared budget, under the limits of the lane's own `budget`, and
    /// waits for its slot; [`SharedTurn::Local`] at once when nothing is shared.
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub(crate) async fn book_shared(
        &self,
        budget: &Budget,
        cost: &Cost,
        max_wait: Option<std::time::Duration>,
        deadline: Option<tokio::time::Instant>,
    ) -> SharedTurn {
        match self {
            Booker::Local => SharedTurn::Local,
            #[cfg(feature = "redis")]
            Booker::Shared(shared) => book_in_store(shared, budget, cost, max_wait, deadline).await,
        }
    }

    /// `at` on the store's clock, µs (`None`: no store, or no offset measured yet).
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub(crate) fn server_us(&self, at: tokio::time::Instant) -> Option<f64> {
        match self {
            Booker::Local => None,
            #[cfg(feature = "redis")]
            Booker::Shared(budget) => budget.server_us(at),
        }
    }

    /// The workers of the fleet that shares the lane's budget (`None`: this process alone).
    pub(crate) fn fleet(&self) -> Option<u32> {
        match self {
            Booker::Local => None,
            #[cfg(feature = "redis")]
            Booker::Shared(budget) => Some(budget.workers()),
        }
    }

    /// Shares a limit the lane learned with the other processes. `curve`: the pace the lane
    /// learned from plain refusals, when it has one; a `dimension` of requests is then that
    /// curve's pace: a new decrease is shared with its curve in one step, and a pace on a
    /// curve the fleet has since decreased from is not shared (it would set the fleet back to
    /// the pace it gave up).
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub(crate) fn share_limit(
        &self,
        dimension: Dimension,
        limit: Option<crate::limiter::Limit>,
        (strict, fresh): (bool, bool),
        curve: Option<crate::limiter::pace::SharedCubic>,
    ) {
        #[cfg(feature = "redis")]
        if let Booker::Shared(shared) = self {
            let curve = curve.filter(|_| dimension == Dimension::Requests);
            if let Some(curve) = curve {
                let paced = limit.map(|limit| (limit, strict, fresh));
                if shared.share_cubic(curve, paced) {
                    return;
                }
            }
            shared.learn(dimension, limit, (strict, fresh), curve.is_some());
        }
    }

    /// The pace another process learned from plain refusals, once per decrease this lane has
    /// not seen yet.
    pub(crate) fn cubic_news(&self) -> Option<crate::limiter::pace::SharedCubic> {
        match self {
            Booker::Local => None,
            #[cfg(feature = "redis")]
            Booker::Shared(budget) => budget.cubic_news(),
        }
    }

    /// Pauses every process of the fleet, not only the one the server told.
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub(crate) fn cool_down(&self, dimension: Option<Dimension>, until: tokio::time::Instant) {
        #[cfg(feature = "redis")]
        if let Booker::Shared(shared) = self {
            shared.cool_down(dimension, until);
        }
    }

    /// Charges the shared budget down to what the server says remains.
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub(crate) fn sync(
        &self,
        dimension: Dimension,
        remaining: u64,
        limit: Option<crate::limiter::Limit>,
    ) {
        #[cfg(feature = "redis")]
        if let Booker::Shared(shared) = self {
            shared.sync(dimension, remaining, limit);
        }
    }
}

/// Books in the store, one round trip, and sleeps the wait it answers.
#[cfg(feature = "redis")]
async fn book_in_store(
    shared: &crate::store::SharedBudget,
    budget: &Budget,
    cost: &Cost,
    max_wait: Option<Duration>,
    deadline: Option<Instant>,
) -> SharedTurn {
    use crate::store::SharedOutcome;

    // Booked in the store even when this lane limits nothing (yet): another worker may have
    // learned the lane's limits from the server.
    let shapes = crate::store::shapes_of(budget);
    match shared.book(cost, &shapes, max_wait).await {
        Ok(SharedOutcome::Granted(mut booking)) => {
            // Departs at its grant with the precision of one process (not on the timer's next
            // millisecond tick): the fleet's requests reach the server as far apart as their
            // grants are, moved with the fleet's schedule if a decrease stretches it meanwhile.
            // An instant already past leaves at once.
            if booking.ready_at() > Instant::now() {
                shared.wait_for(&mut booking).await;
            }
            // The fleet-wide concurrency slot, if the store caps it: after the rate.
            if shared.lease_into(&mut booking, deadline).await.is_err() {
                return SharedTurn::Saturated;
            }
            SharedTurn::Granted(Box::new(Booked::at(Place::Shared(booking))))
        }
        Ok(SharedOutcome::TooLong { dimension, wait }) => SharedTurn::Blocked(match dimension {
            Some(dimension) => Blocked::Rate { dimension, wait },
            None => Blocked::Cooldown {
                dimension: None,
                wait,
            },
        }),
        Ok(SharedOutcome::NeverFits { dimension, burst }) => {
            SharedTurn::Blocked(Blocked::NeverFits {
                dimension,
                cost: cost.get(dimension),
                burst,
            })
        }
        Err(error) => match shared.fallback(&shapes) {
            Some(fallback) => SharedTurn::Fallback(Arc::clone(fallback)),
            None => SharedTurn::Unavailable(error.to_string()),
        },
    }
}

/// What a request booked, until it leaves: dropped before, it gives the booking back.
pub(crate) struct Booked {
    place: Place,
    /// The longer windows of a lane whose rate is shared through a store: booked in this
    /// process, before the store (see [`Booked::with_windows`]). Boxed: rare, and every
    /// request's future would carry it otherwise.
    windows: Option<Box<(Arc<Budget>, Reservation)>>,
}

enum Place {
    /// In the lane's own budget: a commitment when it could leave at once, otherwise a
    /// reservation whose slot has come.
    Lane(Result<Commitment, Reservation>),
    /// In another budget of this process (the fallback of a lane whose store is down).
    Budget(Arc<Budget>, Result<Commitment, Reservation>),
    /// In the budget shared through a store; its slot has come.
    #[cfg(feature = "redis")]
    Shared(crate::store::SharedBooking),
}

impl Booked {
    /// Whether it holds a grant of the budget shared through a store: a decrease moves it with
    /// the fleet's schedule (see `store::stretch`) instead of booking it again.
    pub(crate) fn is_in_store(&self) -> bool {
        match self.place {
            Place::Lane(_) | Place::Budget(..) => false,
            #[cfg(feature = "redis")]
            Place::Shared(_) => true,
        }
    }

    /// Booked in the lane's own budget.
    pub(crate) fn in_lane(booked: Result<Commitment, Reservation>) -> Booked {
        Booked::at(Place::Lane(booked))
    }

    fn at(place: Place) -> Booked {
        Booked {
            place,
            windows: None,
        }
    }

    /// With `reservation`, booked in `budget`: the lane's longer windows, kept in this process
    /// when its rate is shared through a store. It leaves (and settles) with the rest, or is
    /// given back with it.
    pub(crate) fn with_windows(mut self, budget: Arc<Budget>, reservation: Reservation) -> Booked {
        self.windows = Some(Box::new((budget, reservation)));
        self
    }

    /// Booked in `budget`, not the lane's own.
    pub(crate) fn in_budget(
        budget: Arc<Budget>,
        booked: Result<Commitment, Reservation>,
    ) -> Booked {
        Booked::at(Place::Budget(budget, booked))
    }

    /// The booked units leave: spent even if the caller later drops the request. Returns what
    /// settles their real cost; `lane` is the lane's own budget.
    pub(crate) fn commit(self, lane: &Arc<Budget>) -> Settlement {
        let committed = match self.place {
            Place::Lane(booked) => Committed::Local {
                budget: Arc::clone(lane),
                commitment: booked.unwrap_or_else(Reservation::commit),
            },
            Place::Budget(budget, booked) => Committed::Local {
                budget,
                commitment: booked.unwrap_or_else(Reservation::commit),
            },
            #[cfg(feature = "redis")]
            Place::Shared(booking) => Committed::Shared(booking.commit()),
        };
        Settlement {
            committed,
            windows: self.windows.map(|windows| {
                let (budget, reservation) = *windows;
                Box::new((budget, reservation.commit()))
            }),
            meter: Meter::default(),
        }
    }
}

/// The reconciliation of one request's booking, handed to
/// [`CostModel::inspect`](crate::cost::CostModel::inspect).
///
/// Call [`settle`](Settlement::settle) with the real cost once it is known — now, or later
/// from a wrapped streaming body. Dropped without it, the estimate stands.
#[non_exhaustive]
pub struct Settlement {
    committed: Committed,
    /// The lane's longer windows, when they were booked apart (see [`Booked::with_windows`]).
    windows: Option<Box<(Arc<Budget>, Commitment)>>,
    /// Records what is charged in the metrics (nothing when unmetered, or without them).
    meter: Meter,
}

/// Where the settled units were booked.
enum Committed {
    /// In a budget of this process.
    Local {
        budget: Arc<Budget>,
        commitment: Commitment,
    },
    /// In a budget shared through a store.
    #[cfg(feature = "redis")]
    Shared(crate::store::SharedCommitment),
}

impl fmt::Debug for Settlement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settlement")
            .field("estimate", self.estimate())
            .finish()
    }
}

impl Settlement {
    /// The settlement of `commitment`, booked in `budget`.
    pub(crate) fn new(budget: Arc<Budget>, commitment: Commitment) -> Settlement {
        Settlement {
            committed: Committed::Local { budget, commitment },
            windows: None,
            meter: Meter::default(),
        }
    }

    /// This settlement, recording what it charges through `meter`.
    pub(crate) fn metered(mut self, meter: Meter) -> Settlement {
        self.meter = meter;
        self
    }

    /// What was booked before sending.
    pub fn estimate(&self) -> &Cost {
        match &self.committed {
            Committed::Local { commitment, .. } => commitment.cost(),
            #[cfg(feature = "redis")]
            Committed::Shared(commitment) => commitment.cost(),
        }
    }

    /// Replaces the estimate with the real cost: an over-estimate is given back (when nothing
    /// was booked after it), an under-estimate is charged, so later requests wait for it.
    pub fn settle(self, actual: &Cost) {
        if let Some(windows) = self.windows {
            let (budget, commitment) = *windows;
            budget.settle(commitment, actual);
        }
        let settled = match self.committed {
            Committed::Local { budget, commitment } => budget.settle_charged(commitment, actual),
            #[cfg(feature = "redis")]
            Committed::Shared(commitment) => commitment.settle(actual),
        };
        self.meter.settled(&settled.charged, settled.clamped);
    }
}
