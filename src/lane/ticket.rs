//! A request's turn in its lane: [`Lane::admit`] waits for it and hands out a [`Ticket`];
//! [`Ticket::finish`] reads what came back, once. The ticket is a guard: dropped at any point it
//! gives back its reservation, its slots, its in-flight counts and its breaker probe.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::Response;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::{Gauge, Lane};
use crate::assess::{Assessment, Attempted};
use crate::breaker::Admission;
use crate::cost::{Inspection, Settlement};
use crate::error::Error;
use crate::limiter::pace::{Answer, InFlight, Observation};
use crate::limiter::sleep_exactly_until;
use crate::limiter::Budget;
use crate::limiter::{Blocked, Booking, Commitment, Cost, Dimension, Reservation, Waited};
use crate::retry::Attempt;
use crate::signals::Signals;

/// What a request booked, until it leaves: dropped before, it gives the booking back.
enum Booked {
    /// In the lane's budget: a commitment when it could leave at once, otherwise a reservation
    /// whose slot has come.
    Local(Result<Commitment, Reservation>),
    /// In the fallback budget of a lane whose store is down, likewise.
    #[cfg(feature = "redis")]
    Fallback(Arc<Budget>, Result<Commitment, Reservation>),
    /// In the budget shared through a store; its slot has come.
    #[cfg(feature = "redis")]
    Shared(crate::store::SharedBooking),
}

/// The concurrency slots a request holds while it is in flight.
struct Permits {
    _lane: Option<OwnedSemaphorePermit>,
    _global: Option<OwnedSemaphorePermit>,
}

/// A request's turn in its lane, from [`Lane::admit`] to [`Ticket::finish`].
///
/// While it lives the request is counted in flight with its estimated cost and holds its
/// concurrency slots; dropped without `finish` it gives everything back.
pub(crate) struct Ticket {
    lane: Arc<Lane>,
    cost: Cost,
    settlement: Option<Settlement>,
    admission: Option<Admission>,
    /// How many requests the lane had sent before this one.
    departure: u64,
    departed: Instant,
    permits: Option<Permits>,
    /// Sent at once in shadow mode (see [`crate::rollout`]).
    shadowed: bool,
}

impl Lane {
    /// Waits for the request's turn: breaker, then rate and cooldown, then concurrency slots.
    ///
    /// An open circuit costs nothing (no budget, no slot). A turn beyond `deadline` fails at
    /// once with a typed error instead of sleeping.
    pub async fn admit(
        self: &Arc<Self>,
        cost: &Cost,
        deadline: Option<Instant>,
        global: Option<&Arc<Semaphore>>,
        started: Instant,
    ) -> Result<Ticket, Error> {
        let admission = match self.breaker.as_ref().map(|b| b.admit(started)) {
            None => None,
            Some(Ok(admission)) => Some(admission),
            Some(Err(rejected)) => {
                self.counters.circuit_rejected.fetch_add(1, Relaxed);
                tracing::debug!(target: "reqwest_throttle", retry_in_ms = rejected.retry_in.as_millis() as u64, "circuit open: not sent");
                return Err(Error::CircuitOpen {
                    lane: self.key.clone(),
                    retry_in: rejected.retry_in,
                });
            }
        };
        let max_wait = deadline.map(|d| d.saturating_duration_since(started));
        let _queued = Gauge::enter(&self.counters.queued);
        self.first_contact.take_turn(deadline).await;
        let mut now = started;
        loop {
            let (booked, generation) = self.book(cost, max_wait, deadline, now).await?;
            let lane_permit = acquire(self.concurrency.as_ref(), deadline)
                .await
                .map_err(|()| self.concurrency_refusal(max_wait))?;
            let global_permit = acquire(global, deadline)
                .await
                .map_err(|()| self.concurrency_refusal(max_wait))?;
            // A cooldown set while this request queued for a slot (a 429 seen by the request
            // that held it) holds it back too: nothing leaves the lane before the pause ends,
            // and then it books again under what the lane learned meanwhile.
            // Booked at a pace the server refused while this request queued for a slot: book
            // again at the new pace.
            if self.budget.generation() != generation {
                drop((lane_permit, global_permit, booked));
                now = Instant::now();
                continue;
            }
            if let Some(until) = self.budget.cooldown_until(cost) {
                drop((lane_permit, global_permit, booked));
                if deadline.is_some_and(|deadline| until > deadline) {
                    let wait = until.saturating_duration_since(Instant::now());
                    let blocked = Blocked::Cooldown {
                        dimension: None,
                        wait,
                    };
                    return Err(self.refusal(blocked, max_wait));
                }
                tokio::time::sleep_until(until).await;
                now = Instant::now();
                continue;
            }
            // Keep the spacing as sent: a slot whose timer fired after an earlier one's late
            // departure waits the difference (at most an interval), holding its slots.
            let mut leaving = Instant::now();
            while let Err(at) = self.budget.depart(cost, leaving) {
                leaving = sleep_exactly_until(at).await;
            }
            // The units leave now: they are spent even if the caller later drops the request.
            // (A reservation that had to wait is committed only here, so a caller that gave up
            // while waiting for a concurrency slot still gets it refunded.)
            let settlement = self.commit(booked);
            let waited = started.elapsed();
            tracing::Span::current().record("waited_ms", waited.as_millis() as u64);
            if !waited.is_zero() {
                self.counters.record_wait(waited);
                tracing::debug!(target: "reqwest_throttle", waited_ms = waited.as_millis() as u64, "admitted after waiting");
            }
            let departed = if waited.is_zero() {
                started
            } else {
                Instant::now()
            };
            let permits = (lane_permit, global_permit);
            let ticket = self.depart(cost, Some(settlement), admission, permits, departed);
            return Ok(ticket);
        }
    }

    /// The request leaves at `departed` holding `permits`: counted as sent and in flight until
    /// its ticket is finished or dropped.
    #[inline]
    pub(super) fn depart(
        self: &Arc<Self>,
        cost: &Cost,
        settlement: Option<Settlement>,
        admission: Option<Admission>,
        (lane_permit, global_permit): (Option<OwnedSemaphorePermit>, Option<OwnedSemaphorePermit>),
        departed: Instant,
    ) -> Ticket {
        let departure = self.counters.sent.fetch_add(1, Relaxed);
        self.counters.in_flight.fetch_add(1, Relaxed);
        for (dimension, units) in cost.iter() {
            self.in_flight_units[dimension as usize].fetch_add(units, Relaxed);
        }
        Ticket {
            lane: Arc::clone(self),
            cost: *cost,
            settlement,
            admission,
            departure,
            departed,
            permits: Some(Permits {
                _lane: lane_permit,
                _global: global_permit,
            }),
            shadowed: false,
        }
    }

    /// The booked units leave: what the settlement of their real cost needs.
    fn commit(&self, booked: Booked) -> Settlement {
        match booked {
            Booked::Local(booked) => Settlement::new(
                Arc::clone(&self.budget),
                booked.unwrap_or_else(Reservation::commit),
            ),
            #[cfg(feature = "redis")]
            Booked::Fallback(budget, booked) => {
                Settlement::new(budget, booked.unwrap_or_else(Reservation::commit))
            }
            #[cfg(feature = "redis")]
            Booked::Shared(booking) => Settlement::shared(booking.commit()),
        }
    }

    /// Books the request's cost and waits for its slot, in the lane's budget or, when a store
    /// shares it, in the store; with the lane budget's generation it was booked under.
    async fn book(
        &self,
        cost: &Cost,
        max_wait: Option<Duration>,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Result<(Booked, u64), Error> {
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            return self
                .book_shared(shared, cost, max_wait, deadline, now)
                .await;
        }
        let (booked, generation) = self
            .book_in(&self.budget, cost, max_wait, deadline, now)
            .await?;
        Ok((Booked::Local(booked), generation))
    }

    /// Books in the store, one round trip, and sleeps the wait it answers. While the store is
    /// down the policy decides: the fallback budget (a share of the limits), or a typed error.
    #[cfg(feature = "redis")]
    async fn book_shared(
        &self,
        shared: &crate::store::SharedBudget,
        cost: &Cost,
        max_wait: Option<Duration>,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Result<(Booked, u64), Error> {
        use crate::store::SharedOutcome;

        self.tick(now);
        let generation = self.budget.generation();
        // Booked in the store even when this lane limits nothing (yet): another worker may have
        // learned the lane's limits from the server.
        let shapes = crate::store::shapes_of(&self.budget);
        let max_wait = deadline
            .map(|d| d.saturating_duration_since(now))
            .or(max_wait);
        match shared.book(cost, &shapes, max_wait).await {
            Ok(SharedOutcome::Granted(mut booking)) => {
                // A timer set for an instant already past still waits for the timer wheel's next
                // tick (a millisecond): a booking that may leave at once leaves at once.
                if booking.ready_at() > Instant::now() {
                    tokio::time::sleep_until(booking.ready_at()).await;
                }
                // The fleet-wide concurrency slot, if the store caps it: after the rate.
                if shared.lease_into(&mut booking, deadline).await.is_err() {
                    return Err(self.concurrency_refusal(max_wait));
                }
                Ok((Booked::Shared(booking), generation))
            }
            Ok(SharedOutcome::TooLong { dimension, wait }) => {
                let blocked = match dimension {
                    Some(dimension) => Blocked::Rate { dimension, wait },
                    None => Blocked::Cooldown {
                        dimension: None,
                        wait,
                    },
                };
                Err(self.refusal(blocked, max_wait))
            }
            Ok(SharedOutcome::NeverFits { dimension, burst }) => Err(self.refusal(
                Blocked::NeverFits {
                    dimension,
                    cost: cost.get(dimension),
                    burst,
                },
                max_wait,
            )),
            Err(error) => match shared.fallback(&shapes) {
                Some(fallback) => {
                    let fallback = Arc::clone(fallback);
                    let (booked, _) = self
                        .book_in(&fallback, cost, max_wait, deadline, now)
                        .await?;
                    Ok((Booked::Fallback(fallback, booked), generation))
                }
                None => {
                    self.counters.rejected.fetch_add(1, Relaxed);
                    let error = Error::StoreUnavailable {
                        lane: self.key.clone(),
                        reason: error.to_string(),
                    };
                    tracing::info!(target: "reqwest_throttle", error = %error, "request refused");
                    Err(error)
                }
            },
        }
    }

    /// Books the request's cost in `budget` and waits for its slot: `Ok(commitment)` when it
    /// could leave at once, `Err(reservation)` once a reservation's slot has come; with the lane
    /// budget's generation it was booked under.
    async fn book_in(
        &self,
        budget: &Arc<Budget>,
        cost: &Cost,
        max_wait: Option<Duration>,
        deadline: Option<Instant>,
        mut now: Instant,
    ) -> Result<(Result<Commitment, Reservation>, u64), Error> {
        loop {
            self.tick(now);
            let generation = self.budget.generation();
            let max_wait = deadline
                .map(|d| d.saturating_duration_since(now))
                .or(max_wait);
            let reservation = match budget.acquire(cost, max_wait, now) {
                Ok(Booking::Ready(commitment)) => return Ok((Ok(commitment), generation)),
                Ok(Booking::Wait(reservation)) => reservation,
                Err(blocked) => return Err(self.refusal(blocked, max_wait)),
            };
            // A slot booked beyond the server's reset was priced with a pace that ends there:
            // at the reset, the lane learns what the next window allows (a much faster pace
            // reprices, and the wait ends `Repriced`), and the request keeps its place in the
            // queue otherwise. Giving the slot back and booking again at the reset, as before,
            // sent the requests at the back of the queue behind every newcomer, window after
            // window.
            let waited = loop {
                let now = Instant::now();
                let reset = self
                    .pace()
                    .reset_at()
                    .filter(|&reset| reset > now && reservation.ready_at() > reset);
                let Some(reset) = reset else {
                    break reservation.wait(deadline).await;
                };
                tokio::select! {
                    waited = reservation.wait(deadline) => break waited,
                    () = tokio::time::sleep_until(reset) => self.tick(Instant::now()),
                }
            }
            .map_err(|blocked| self.refusal(blocked, max_wait))?;
            match waited {
                Waited::OnTime => return Ok((Err(reservation), generation)),
                // Booked before the server asked for a pause: its slot is long past, and the
                // lane may have learned a pace since. Book again, so the waiters that the pause
                // piled up leave at that pace instead of all at once.
                // Booked at a pace the server has since refused: book again at the new one.
                Waited::PastCooldown | Waited::Repriced => {
                    drop(reservation);
                    now = Instant::now();
                }
            }
        }
    }

    fn refusal(&self, blocked: Blocked, max_wait: Option<Duration>) -> Error {
        self.counters.rejected.fetch_add(1, Relaxed);
        let lane = self.key.clone();
        let max_wait = max_wait.unwrap_or(Duration::MAX);
        let error = match blocked {
            Blocked::Rate { dimension, wait } => Error::WouldWait {
                lane,
                dimension,
                wait,
                max_wait,
            },
            Blocked::Cooldown { dimension, wait } => Error::CoolingDown {
                lane,
                dimension,
                wait,
                max_wait,
            },
            Blocked::NeverFits {
                dimension,
                cost,
                burst,
            } => Error::CostTooLarge {
                lane,
                dimension,
                cost,
                burst,
            },
        };
        tracing::info!(target: "reqwest_throttle", error = %error, "request refused");
        error
    }

    fn concurrency_refusal(&self, max_wait: Option<Duration>) -> Error {
        self.counters.rejected.fetch_add(1, Relaxed);
        let error = Error::Saturated {
            lane: self.key.clone(),
            max_wait: max_wait.unwrap_or(Duration::MAX),
        };
        tracing::info!(target: "reqwest_throttle", error = %error, "no concurrency slot within max_wait");
        error
    }
}

impl Ticket {
    /// This ticket's request is shadowed: sent at once, its refusals teach no pace.
    pub(super) fn shadowed(mut self) -> Ticket {
        self.shadowed = true;
        self
    }

    /// How long the attempt this ticket admits may take, by the lane's policy.
    pub fn attempt_timeout(&self) -> Option<Duration> {
        self.lane.policy.attempt_timeout
    }

    /// The booking's reconciliation, for the policy's cost model; once.
    pub fn settlement(&mut self) -> Option<Settlement> {
        self.settlement.take()
    }

    /// Reads what came back, once: the lane's classifier makes the one [`Assessment`], and the
    /// counters, the pace learner and the breaker all act on it. Frees the request's slots.
    pub fn finish(
        mut self,
        result: &reqwest_middleware::Result<Response>,
        inspection: Inspection,
        now: Instant,
    ) -> Assessment {
        let lane = Arc::clone(&self.lane);
        let (attempt, signals) = match result {
            Ok(response) => (
                Attempt::Status(response.status()),
                // The wall clock only turns HTTP-dates and epoch resets into delays.
                Signals::read_with_clock(response.headers(), SystemTime::now),
            ),
            Err(error) => (Attempt::of_error(error), Signals::default()),
        };
        let counter = match result {
            Ok(_) => &lane.counters.completed,
            Err(_) => &lane.counters.errors,
        };
        counter.fetch_add(1, Relaxed);
        let assessment = lane.classifier.assess(
            &Attempted::new(attempt, &signals)
                .with_inspection(inspection)
                .with_breaker(lane.policy.breaker.as_ref()),
        );
        if assessment.rate_limited {
            lane.counters.rate_limited.fetch_add(1, Relaxed);
        }
        if result.is_ok() {
            // The server answered this request having seen those that left before it (it took
            // them in order); of the others still in flight, only those that left after it may
            // be unseen.
            let sent_after = lane
                .counters
                .sent
                .load(Relaxed)
                .saturating_sub(self.departure.saturating_add(1));
            let others = lane.counters.in_flight.load(Relaxed).saturating_sub(1);
            let in_flight = InFlight {
                requests: 1 + others.min(sent_after),
                units: std::array::from_fn(|i| lane.in_flight_units[i].load(Relaxed)),
            };
            // A shadowed request was refused for a pace it was never held to: the refusal
            // says nothing of the lane's pace, only the server's announcements are learned.
            let (answer, pause) = if self.shadowed && assessment.rate_limited {
                (Answer::Other, None)
            } else {
                (assessment.answer, assessment.pause)
            };
            let observation = Observation {
                now,
                departed: self.departed,
                answer,
                pause,
                limits: signals.rate_limits.as_ref(),
                answered: std::array::from_fn(|i| self.cost.get(Dimension::ALL[i])),
                in_flight,
            };
            let mut pace = lane.pace();
            let actions = pace.observe(&observation);
            if !actions.is_empty() {
                lane.apply(&pace, &actions);
            }
        }
        // What this answer taught is learned: requests held for the lane's first answer go.
        lane.first_contact.heard();
        // Out of flight and out of its slots before the breaker hears of it.
        self.release();
        if let (Some(breaker), Some(admission)) = (lane.breaker.as_ref(), self.admission.take()) {
            breaker.record(admission, assessment.breaker, now);
        }
        assessment
    }

    fn release(&mut self) {
        if self.permits.take().is_some() {
            let lane = &self.lane;
            lane.counters.in_flight.fetch_sub(1, Relaxed);
            for (dimension, units) in self.cost.iter() {
                lane.in_flight_units[dimension as usize].fetch_sub(units, Relaxed);
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.release();
    }
}

/// A permit from `semaphore` (if there is one), waiting no later than `deadline`.
async fn acquire(
    semaphore: Option<&Arc<Semaphore>>,
    deadline: Option<Instant>,
) -> Result<Option<OwnedSemaphorePermit>, ()> {
    let Some(semaphore) = semaphore else {
        return Ok(None);
    };
    // The common case, a free slot, needs no future and no clock.
    if let Ok(permit) = Arc::clone(semaphore).try_acquire_owned() {
        return Ok(Some(permit));
    }
    let acquire = Arc::clone(semaphore).acquire_owned();
    let permit = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, acquire)
            .await
            .map_err(|_| ())?,
        None => acquire.await,
    };
    // The semaphores are never closed.
    permit.map(Some).map_err(|_| ())
}
