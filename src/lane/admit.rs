//! A request's turn in its lane: [`Lane::admit`] hands out a [`Ticket`].
//!
//! An enforced request waits for its turn: breaker, then rate and cooldown (in the lane's
//! budget, or in the store's through the lane's [`Booker`](crate::booker::Booker)), then the
//! lane's and the global concurrency slots, then the spacing as sent. Rate comes first, so a
//! task never holds a slot while it waits for rate. A turn beyond the request's deadline fails at
//! once with a typed error instead of sleeping. A shadowed request takes its turn at once (see
//! `rollout.rs`): what the wait would have been is recorded, never waited on.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::plan::Plan;
use super::ticket::{Permits, Ticket};
use super::{Gauge, Lane};
use crate::booker::{Booked, SharedTurn};
use crate::breaker::Admission;
use crate::cost::Settlement;
use crate::error::Error;
use crate::limiter::{
    sleep_exactly_until, Blocked, Booking, Budget, Commitment, Cost, Reservation, Waited,
};
use crate::rollout::Side;

impl Lane {
    /// The request's turn for its next attempt: waited for when it is enforced, taken at once
    /// (and recorded) when it is shadowed.
    pub async fn admit<'p>(
        self: &Arc<Self>,
        plan: &'p Plan<'_>,
        global: Option<&Arc<Semaphore>>,
    ) -> Result<Ticket<'p>, Error> {
        // One clock read served the lane lookup, the deadline and the first attempt.
        let now = if plan.attempt() == 1 {
            plan.entered
        } else {
            Instant::now()
        };
        let admitted = match plan.side {
            Side::Enforced => self.enforced_turn(plan, global, now).await,
            Side::Shadowed => Ok(self.shadow_turn(plan, global, now)),
        };
        match admitted {
            Ok(ticket) => Ok(ticket.timed(plan.metrics.admitted(now))),
            Err(error) => {
                plan.metrics.refused(&error);
                Err(error)
            }
        }
    }

    /// An enforced request's turn: taken at once when nothing makes it wait, otherwise waited
    /// for. The waiting is boxed, so that the common turn, which never waits, does not carry
    /// the waiting's state in every request's future.
    async fn enforced_turn<'p>(
        self: &Arc<Self>,
        plan: &'p Plan<'_>,
        global: Option<&Arc<Semaphore>>,
        now: Instant,
    ) -> Result<Ticket<'p>, Error> {
        let admission = self.breaker_admission(now)?;
        match self.turn_now(plan, global, now)? {
            Now::Go(cost, commitment, permits) => {
                tracing::Span::current().record("waited_ms", 0u64);
                self.rollout_admitted(&cost, now);
                let settlement = Settlement::new(Arc::clone(&self.budget), commitment);
                Ok(self.depart(plan, cost, Some(settlement), admission, permits, now))
            }
            Now::Space(cost, commitment, permits, at) => {
                let departed = Box::pin(self.space_out(&cost, at)).await;
                let waited = departed.saturating_duration_since(now);
                tracing::Span::current().record("waited_ms", waited.as_millis() as u64);
                self.counters.record_wait(waited);
                self.rollout_admitted(&cost, now);
                let settlement = Settlement::new(Arc::clone(&self.budget), commitment);
                Ok(self
                    .depart(plan, cost, Some(settlement), admission, permits, departed)
                    .booked_at(now))
            }
            Now::Wait => Box::pin(self.wait_turn(plan, global, now, admission)).await,
        }
    }

    /// Waits until the spacing as sent lets `cost` leave, from `at` on; returns when it left.
    async fn space_out(&self, cost: &Cost, mut at: Instant) -> Instant {
        loop {
            let leaving = sleep_exactly_until(at).await;
            match self.budget.depart(cost, leaving) {
                Ok(()) => return leaving,
                Err(next) => at = next,
            }
        }
    }

    /// The turn of a request that need not wait: no store to ask, no first contact pending, no
    /// cooldown, free slots, and a booking (with its departure) that may go now. [`Now::Wait`]
    /// when any of these fails, having kept nothing: a booking that would wait is given back
    /// whole, and the waiting way books again.
    fn turn_now(
        &self,
        plan: &Plan<'_>,
        global: Option<&Arc<Semaphore>>,
        now: Instant,
    ) -> Result<Now, Error> {
        if self.booker.is_shared()
            || !self.first_contact.is_clear()
            || self.budget.cooldown_until(&plan.cost).is_some()
        {
            return Ok(Now::Wait);
        }
        let (Some(lane_permit), Some(global_permit)) =
            (try_acquire(self.concurrency.as_ref()), try_acquire(global))
        else {
            return Ok(Now::Wait);
        };
        self.tick(now);
        let cost = self.price(plan);
        let max_wait = plan
            .deadline
            .map(|deadline| deadline.saturating_duration_since(now));
        match self.budget.acquire(&cost, max_wait, now) {
            Ok(Booking::Ready(commitment)) => {
                let permits = Permits::new(lane_permit, global_permit);
                Ok(match self.budget.depart(&cost, now) {
                    Ok(()) => Now::Go(cost, commitment, permits),
                    Err(at) => Now::Space(cost, commitment, permits, at),
                })
            }
            Ok(Booking::Wait(_given_back)) => Ok(Now::Wait),
            Err(blocked) => Err(self.refusal(blocked, max_wait)),
        }
    }

    /// Waits for an enforced request's turn.
    async fn wait_turn<'p>(
        self: &Arc<Self>,
        plan: &'p Plan<'_>,
        global: Option<&Arc<Semaphore>>,
        started: Instant,
        admission: Option<Admission>,
    ) -> Result<Ticket<'p>, Error> {
        let deadline = plan.deadline;
        let max_wait = deadline.map(|d| d.saturating_duration_since(started));
        let _queued = Gauge::enter(&self.counters.queued);
        let _queued_metric = plan.metrics.queued();
        self.first_contact.take_turn(deadline).await;
        let mut now = started;
        loop {
            let (booked, generation, cost) = self.book(plan, max_wait, deadline, now).await?;
            let cost = &cost;
            let lane_permit = acquire(self.concurrency.as_ref(), deadline)
                .await
                .map_err(|()| self.concurrency_refusal(max_wait))?;
            let global_permit = acquire(global, deadline)
                .await
                .map_err(|()| self.concurrency_refusal(max_wait))?;
            // Booked at a pace the server refused while this request queued for a slot: book
            // again at the new pace. A grant of the fleet's schedule was moved with it instead
            // (its slot would be left empty, the request sent to the back of the queue).
            if self.budget.generation() != generation && !booked.is_in_store() {
                drop((lane_permit, global_permit, booked));
                now = Instant::now();
                continue;
            }
            // A cooldown set while this request queued for a slot (a 429 seen by the request
            // that held it) holds it back too: nothing leaves the lane before the pause ends,
            // and then it books again under what the lane learned meanwhile.
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
            if let Err(at) = self.budget.depart(cost, Instant::now()) {
                self.space_out(cost, at).await;
            }
            // The units leave now: spent even if the caller later drops the request. (A
            // reservation that had to wait is committed only here, so a caller that gave up
            // while waiting for a concurrency slot still gets it refunded.)
            tracing::trace!(target: "reqwest_throttle", departed_us = self.booker.server_us(Instant::now()), "departing");
            let settlement = booked.commit(&self.budget);
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
            self.rollout_admitted(cost, started);
            let permits = Permits::new(lane_permit, global_permit);
            let ticket = self.depart(plan, *cost, Some(settlement), admission, permits, departed);
            return Ok(ticket.booked_at(now));
        }
    }

    /// The breaker's admission; an open circuit refuses at once and costs nothing.
    fn breaker_admission(&self, now: Instant) -> Result<Option<Admission>, Error> {
        match self.breaker.as_ref().map(|breaker| breaker.admit(now)) {
            None => Ok(None),
            Some(Ok(admission)) => Ok(Some(admission)),
            Some(Err(rejected)) => {
                self.counters.circuit_rejected.fetch_add(1, Relaxed);
                tracing::debug!(target: "reqwest_throttle", retry_in_ms = rejected.retry_in.as_millis() as u64, "circuit open: not sent");
                Err(Error::CircuitOpen {
                    lane: self.key.clone(),
                    retry_in: rejected.retry_in,
                })
            }
        }
    }

    /// The request leaves at `departed` holding `permits`, having booked `cost`: counted as
    /// sent and in flight until its ticket is finished or dropped.
    #[inline]
    pub(super) fn depart<'p>(
        self: &Arc<Self>,
        plan: &'p Plan<'_>,
        cost: Cost,
        settlement: Option<Settlement>,
        admission: Option<Admission>,
        permits: Permits,
        departed: Instant,
    ) -> Ticket<'p> {
        let departure = self.counters.sent.fetch_add(1, Relaxed);
        self.counters.in_flight.fetch_add(1, Relaxed);
        plan.metrics.took_off();
        for (dimension, units) in cost.iter() {
            self.in_flight_units[dimension as usize].fetch_add(units, Relaxed);
        }
        Ticket::new(
            Arc::clone(self),
            plan,
            cost,
            settlement,
            admission,
            (departure, departed),
            permits,
        )
    }

    /// What `plan`'s request books now: its estimate at what the server was learned to charge
    /// by now (a request that waited long, or a retry after a refusal of its tokens, is not
    /// booked at a price learned before), or the cost it was given.
    fn price(&self, plan: &Plan<'_>) -> Cost {
        if plan.estimate == Cost::zero() {
            plan.cost
        } else {
            self.budget.corrected(plan.estimate)
        }
    }

    /// What a booking made at `now` is made under: the learner's due actions applied, the lane
    /// budget's generation, the request's price as of now, and how long it may still wait.
    fn book_turn(
        &self,
        plan: &Plan<'_>,
        max_wait: Option<Duration>,
        deadline: Option<Instant>,
        now: Instant,
    ) -> (u64, Cost, Option<Duration>) {
        // Another worker of the fleet was refused: pace on its decrease, as if this lane had
        // made it (and take refusals of what left before it as answered).
        if let Some(shared) = self.booker.cubic_news() {
            let mut pace = self.pace();
            let actions = pace.adopt_cubic(shared, now);
            self.apply(&pace, &actions);
        }
        self.tick(now);
        let generation = self.budget.generation();
        let max_wait = deadline
            .map(|d| d.saturating_duration_since(now))
            .or(max_wait);
        (generation, self.price(plan), max_wait)
    }

    /// Books the request's cost and waits for its slot, through the lane's booker; with the
    /// lane budget's generation it was booked under, and the cost booked.
    async fn book(
        &self,
        plan: &Plan<'_>,
        max_wait: Option<Duration>,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Result<(Booked, u64, Cost), Error> {
        if !self.booker.is_shared() {
            let (booked, generation, cost) = self
                .book_in(&self.budget, plan, max_wait, deadline, now)
                .await?;
            return Ok((Booked::in_lane(booked), generation, cost));
        }
        // The longer windows are this process's: booked first, so that a request waiting for
        // a day's window holds no slot of the fleet's rate meanwhile.
        let windows = match self.windows() {
            Some(windows) => Some((
                Arc::clone(windows),
                self.book_windows(windows, &self.price(plan), max_wait, deadline, now)
                    .await?,
            )),
            None => None,
        };
        let now = if windows.is_some() {
            Instant::now()
        } else {
            now
        };
        let with_windows = |booked: Booked| match windows {
            Some((budget, reservation)) => booked.with_windows(budget, reservation),
            None => booked,
        };
        let (generation, cost, max_wait) = self.book_turn(plan, max_wait, deadline, now);
        let cost = &cost;
        match self
            .booker
            .book_shared(&self.budget, cost, max_wait, deadline)
            .await
        {
            SharedTurn::Local => {
                let (booked, generation, cost) = self
                    .book_in(&self.budget, plan, max_wait, deadline, now)
                    .await?;
                Ok((with_windows(Booked::in_lane(booked)), generation, cost))
            }
            SharedTurn::Granted(booked) => Ok((with_windows(*booked), generation, *cost)),
            SharedTurn::Fallback(fallback) => {
                let (booked, _, cost) = self
                    .book_in(&fallback, plan, max_wait, deadline, now)
                    .await?;
                Ok((
                    with_windows(Booked::in_budget(fallback, booked)),
                    generation,
                    cost,
                ))
            }
            SharedTurn::Blocked(blocked) => Err(self.refusal(blocked, max_wait)),
            SharedTurn::Saturated => Err(self.concurrency_refusal(max_wait)),
            SharedTurn::Unavailable(reason) => {
                self.counters.rejected.fetch_add(1, Relaxed);
                let error = Error::StoreUnavailable {
                    lane: self.key.clone(),
                    reason,
                };
                tracing::info!(target: "reqwest_throttle", error = %error, "request refused");
                Err(error)
            }
        }
    }

    /// Books the request's cost in `budget` (priced anew at each booking) and waits for its
    /// slot: `Ok(commitment)` when it could leave at once, `Err(reservation)` once a
    /// reservation's slot has come; with the lane budget's generation it was booked under, and
    /// the cost booked.
    async fn book_in(
        &self,
        budget: &Arc<Budget>,
        plan: &Plan<'_>,
        max_wait: Option<Duration>,
        deadline: Option<Instant>,
        mut now: Instant,
    ) -> Result<(Result<Commitment, Reservation>, u64, Cost), Error> {
        loop {
            let (generation, cost, max_wait) = self.book_turn(plan, max_wait, deadline, now);
            let cost = &cost;
            let reservation = match budget.acquire(cost, max_wait, now) {
                Ok(Booking::Ready(commitment)) => return Ok((Ok(commitment), generation, *cost)),
                Ok(Booking::Wait(reservation)) => reservation,
                Err(blocked) => return Err(self.refusal(blocked, max_wait)),
            };
            // A slot booked beyond the server's reset was priced with a pace that ends there:
            // at the reset the lane learns what the next window allows (a much faster pace
            // reprices, and the wait ends `Repriced`); otherwise the request keeps its place in
            // the queue, ahead of every newcomer.
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
                // Priced before the server's charge was learned (or while it changed): booked
                // too little, it would be refused at its slot. Book again at the new price, from
                // where the queue stands now.
                Waited::OnTime if exceeds(&self.price(plan), cost) => {
                    drop(reservation);
                    now = Instant::now();
                }
                Waited::OnTime => return Ok((Err(reservation), generation, *cost)),
                // Booked before the server asked for a pause, or at a pace the server has since
                // refused: book again, so the waiters leave at the pace learned meanwhile
                // instead of all at once.
                Waited::PastCooldown | Waited::Repriced => {
                    drop(reservation);
                    now = Instant::now();
                }
            }
        }
    }

    /// Books the request's cost in `windows`, the longer windows this process keeps beside a
    /// rate shared through a store, and waits for their room. Always a reservation (never used
    /// at once), so that a refusal from the store afterwards gives the windows back.
    async fn book_windows(
        &self,
        windows: &Arc<Budget>,
        cost: &Cost,
        max_wait: Option<Duration>,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Result<Reservation, Error> {
        let max_wait = deadline
            .map(|d| d.saturating_duration_since(now))
            .or(max_wait);
        let reservation = windows
            .reserve_at(cost, max_wait, now)
            .map_err(|blocked| self.refusal(blocked, max_wait))?;
        // Nothing cools down or reprices these windows: any end of the wait is its turn.
        reservation
            .wait(deadline)
            .await
            .map_err(|blocked| self.refusal(blocked, max_wait))?;
        Ok(reservation)
    }

    pub(super) fn refusal(&self, blocked: Blocked, max_wait: Option<Duration>) -> Error {
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
            Blocked::Window {
                dimension,
                window,
                wait,
            } => Error::WindowSpent {
                lane,
                dimension,
                quota: window.quota,
                period: window.period,
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

/// What an enforced turn comes to without waiting.
enum Now {
    /// Booked at this price and holding its slots: it leaves now.
    Go(Cost, Commitment, Permits),
    /// Booked at this price and holding its slots, but the spacing as sent holds it until
    /// this instant.
    Space(Cost, Commitment, Permits, Instant),
    /// Something would make it wait: it takes the waiting way.
    Wait,
}

/// A free slot of `semaphore`: `Some(None)` when there is no semaphore, `None` when it is full.
pub(super) fn try_acquire(
    semaphore: Option<&Arc<Semaphore>>,
) -> Option<Option<OwnedSemaphorePermit>> {
    match semaphore {
        None => Some(None),
        Some(semaphore) => Arc::clone(semaphore).try_acquire_owned().ok().map(Some),
    }
}

/// Whether `price` books more than `booked` in some dimension.
fn exceeds(price: &Cost, booked: &Cost) -> bool {
    price
        .iter()
        .any(|(dimension, units)| units > booked.get(dimension))
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
