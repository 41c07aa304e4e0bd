//! Cancellation-safe reservations: what [`Budget::reserve`] and [`Budget::acquire`] hand out,
//! and how the units they booked come back.
//!
//! A [`Reservation`] is units booked in a budget, waiting for their slot. Dropped before it is
//! [committed](Reservation::commit) or [settled](Reservation::settle), at any point of its wait,
//! it gives its units back wherever it stands in the queue, and the reservations booked after it
//! move up into the time it held, in their order (see the `ledger` module). A caller that gives
//! up never leaves a phantom booking behind, and the limit is never exceeded for it.
//!
//! [`Reservation::wait`] sleeps until the slot and past any cooldown of the budget, checking
//! the gate again every time it wakes; a slot that moves earlier wakes it at once, and a budget
//! [repriced](Budget::reprice) since the booking ends it with [`Waited::Repriced`]. A used
//! reservation is a [`Commitment`]: the right to bring its booking to what it really cost
//! ([`Budget::settle`]), which also teaches the budget what the server charges per unit
//! estimated.
//!
//! The budget's verbs that deal in these types (reserve, acquire, settle, and
//! [`Budget::corrected`], the price a booking carries) are defined here, beside them: this
//! module builds on the budget's booking, never the reverse.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::budget::{Booked, Budget, Queued};
use super::charge::Charges;
use super::cost::{Blocked, Cost, Dimension};
use super::ledger::{Grants, Place};

/// What settling a booking charged: the cost as charged (a report above what one answer can
/// use is charged only up to it), and whether such a report was clamped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Settled {
    pub(crate) charged: Cost,
    pub(crate) clamped: bool,
}

impl Budget {
    /// Books `cost` in every dimension at once.
    ///
    /// With `max_wait`, a reservation that could not leave within it is not made at all and the
    /// reason comes back as [`Blocked`], without sleeping: there is no point waiting for a slot
    /// that is already known to be too late.
    pub fn reserve(
        self: &Arc<Self>,
        cost: &Cost,
        max_wait: Option<Duration>,
    ) -> Result<Reservation, Blocked> {
        self.reserve_at(cost, max_wait, Instant::now())
    }

    /// [`reserve`](Self::reserve) with the clock already read: `now` is the caller's current
    /// instant (one clock read per request is enough).
    pub fn reserve_at(
        self: &Arc<Self>,
        cost: &Cost,
        max_wait: Option<Duration>,
        now: Instant,
    ) -> Result<Reservation, Blocked> {
        let queued = self.book(cost, max_wait, now)?;
        Ok(Reservation::queued(self, cost, queued))
    }

    /// Books `cost` like [`reserve_at`](Self::reserve_at), and when the units may leave at once
    /// returns them already used ([`Booking::Ready`]): one lock for the common case of a lane
    /// that is not saturated.
    pub fn acquire(
        self: &Arc<Self>,
        cost: &Cost,
        max_wait: Option<Duration>,
        now: Instant,
    ) -> Result<Booking, Blocked> {
        Ok(match self.book_or_use(cost, max_wait, now)? {
            Booked::Used { grants, applied } => Booking::Ready(Commitment {
                cost: *cost,
                grants,
                applied,
            }),
            Booked::Queued(queued) => Booking::Wait(Reservation::queued(self, cost, queued)),
        })
    }

    /// Replaces what `commitment` booked in this budget by `actual`: over-estimates are given
    /// back (when they still can be, see [`Gcra::refund`](super::Gcra::refund)), under-estimates
    /// are charged so later reservations wait for them.
    ///
    /// A reported cost is not trusted without limit: one answer is charged at most a full burst
    /// of each dimension (with a [`Rate`](crate::Rate)'s default burst, one period's allowance),
    /// or its estimate when that was larger. No server could have served more than that under
    /// this limit at once (a strict dimension even refuses such costs up front), so a larger
    /// report is an error (`prompt_tokens: 18446744073709551615`), not usage, and the wait it
    /// adds for later reservations is at most one burst's worth of time (`burst × interval`).
    /// Each clamped report is a `tracing` warning and counted ([`clamped_reports`](Self::clamped_reports)).
    ///
    /// A dimension whose charge the lane reads from the server's own `remaining` keeps what was
    /// booked: the usage is the model's count, not what the server's limiter charged, and the
    /// next `remaining` settles it ([`sync`](Self::sync)).
    pub fn settle(&self, commitment: Commitment, actual: &Cost) {
        self.settle_charged(commitment, actual);
    }

    /// [`settle`](Self::settle), saying what was charged.
    pub(crate) fn settle_charged(&self, commitment: Commitment, actual: &Cost) -> Settled {
        let charges = self.charges();
        charges.learn(&commitment.cost, actual, &commitment.applied);
        let learned = charges.load();
        let mut settled = *actual;
        for dimension in Dimension::ALL {
            if learned.reads_limiter(dimension) {
                settled = settled.with(dimension, commitment.cost.get(dimension));
            }
        }
        self.reconcile(&commitment.cost, &commitment.grants, &settled)
    }

    /// Learns that the server's limiter charged `charged` units of `dimension` for a request
    /// estimated at `estimated` (read from its own `remaining`): bookings are priced by such
    /// readings from then on ([`corrected`](Self::corrected)), and no longer by the usage.
    pub(crate) fn learn_charged(&self, dimension: Dimension, estimated: u64, charged: u64) {
        self.charges().learn_charged(dimension, estimated, charged);
    }

    /// `estimate` scaled by what the server has been charging per unit estimated, in every
    /// dimension but requests (a server that counts tokens by its own rule charges more than the
    /// client's estimate, and its `remaining` says so only after the requests in flight have
    /// spent it), plus how far single answers have strayed from that on average (the server's
    /// count of one request varies around the mean, and a window booked at the mean alone runs
    /// short before its last request). Once the lane reads what the server's limiter charged from
    /// its own `remaining`, those readings price the dimension instead: a fit of the charge as a
    /// multiple of the estimate plus a fixed part, and a margin. Never below the estimate: what
    /// is charged less is given back at settlement, or by the server's next `remaining`.
    ///
    /// ```
    /// use reqwest_throttle::limiter::{Budget, Cost, Dimension};
    ///
    /// let budget = Budget::new();
    /// let estimate = Cost::requests(1).with(Dimension::Tokens, 100);
    /// assert_eq!(budget.corrected(estimate), estimate);
    /// for _ in 0..20 {
    ///     let booked = budget.reserve(&budget.corrected(estimate), None).unwrap();
    ///     // The server charges 125 tokens for every 100 estimated.
    ///     budget.settle(booked.commit(), &Cost::requests(1).with(Dimension::Tokens, 125));
    /// }
    /// // 125, and a little more while the charge was still being learned.
    /// let corrected = budget.corrected(estimate).get(Dimension::Tokens);
    /// assert!((125..=128).contains(&corrected), "{corrected}");
    /// ```
    pub fn corrected(&self, estimate: Cost) -> Cost {
        self.charges().load().corrected(estimate)
    }
}

/// Units booked in a [`Budget`], waiting to leave or in use.
///
/// Dropped without [`settle`](Reservation::settle), it gives its units back, wherever it stands
/// in the queue: the reservations booked after it move up (see [`Budget`]), so a request that
/// was cancelled while waiting leaves nothing behind.
#[derive(Debug)]
#[must_use = "a reservation gives its units back when dropped"]
#[non_exhaustive]
pub struct Reservation {
    budget: Arc<Budget>,
    cost: Cost,
    /// The charge factors [`Budget::corrected`] applied when it was booked.
    applied: Charges,
    place: Place,
    settled: bool,
    generation: u64,
}

impl Reservation {
    fn queued(budget: &Arc<Budget>, cost: &Cost, queued: Queued) -> Reservation {
        Reservation {
            budget: Arc::clone(budget),
            cost: *cost,
            applied: queued.applied,
            place: queued.place,
            settled: false,
            generation: queued.generation,
        }
    }

    /// When the booked units may leave (a later cooldown can still hold them back; see
    /// [`wait`](Self::wait)). It only ever moves earlier: when a reservation booked before this
    /// one is dropped.
    pub fn ready_at(&self) -> Instant {
        self.budget.epoch().instant(self.place.slot.ready_at())
    }

    /// The cost that was booked.
    pub fn cost(&self) -> &Cost {
        &self.cost
    }

    /// Sleeps until the units may leave and no cooldown holds them back.
    ///
    /// A cooldown set while this reservation waits (a 429 seen by another request) is honoured:
    /// the gate is checked again each time the sleep ends, and the result says so
    /// ([`Waited::PastCooldown`]): the slot was booked before the server spoke, so a caller may
    /// prefer to book again under what the lane learned meanwhile. With a `deadline`, a cooldown
    /// that would end after it fails at once with [`Blocked::Cooldown`] instead of sleeping in vain.
    /// A slot that moves earlier (a reservation ahead was dropped) wakes the wait at once.
    pub async fn wait(&self, deadline: Option<Instant>) -> Result<Waited, Blocked> {
        // However the wait ends (even dropped), the next waiter learns whether its slot moved.
        let _relay = Relay(self);
        let mut waited = Waited::OnTime;
        loop {
            let now = Instant::now();
            // Registered before the generation is read, so a reprice in between still wakes us.
            let repriced = self.budget.repriced();
            tokio::pin!(repriced);
            repriced.as_mut().enable();
            if self.budget.generation() != self.generation {
                return Ok(Waited::Repriced);
            }
            // Made before the slot is read: a move in between leaves a permit that wakes us.
            let moved = self.place.slot.arming();
            let ready_at = self.ready_at();
            let cooldown = self.budget.cooldown_until(&self.cost);
            if cooldown.is_some_and(|cooldown| cooldown > ready_at) {
                waited = Waited::PastCooldown;
            }
            let until = cooldown.map_or(ready_at, |c| c.max(ready_at));
            if until <= now {
                return Ok(waited);
            }
            self.place.slot.armed(self.budget.epoch().nanos(ready_at));
            if let (Some(deadline), Some(cooldown)) = (deadline, cooldown) {
                if cooldown > deadline {
                    return Err(Blocked::Cooldown {
                        dimension: self.budget.cooldown_dimension(&self.cost),
                        wait: cooldown - now,
                    });
                }
            }
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                () = repriced => {}
                () = moved => {}
            }
        }
    }

    /// Ends the reservation as *used*, keeping the right to reconcile it later with what it
    /// really cost (for example the token usage an LLM API reports in its response).
    pub fn commit(mut self) -> Commitment {
        self.settled = true;
        let grants = self.budget.release(&self.place, true);
        Commitment {
            cost: self.cost,
            grants,
            applied: self.applied,
        }
    }

    /// Ends the reservation: the units were used.
    ///
    /// With `actual`, the booking is reconciled with what was really used: units reserved but not
    /// used are given back (when they still can be, see [`Gcra::refund`](super::Gcra::refund))
    /// and units used beyond the reservation are charged (up to what one answer can use, see
    /// [`Budget::settle`]), so later reservations wait for them.
    pub fn settle(self, actual: Option<&Cost>) {
        let budget = Arc::clone(&self.budget);
        let commitment = self.commit();
        if let Some(actual) = actual {
            budget.settle(commitment, actual);
        }
    }
}

/// Ends a [`Reservation::wait`]: passes on the news of moved slots (see the `ledger` module).
struct Relay<'r>(&'r Reservation);

impl Drop for Relay<'_> {
    fn drop(&mut self) {
        let reservation = self.0;
        reservation.place.slot.disarmed();
        reservation.budget.relay(&reservation.place);
    }
}

/// How a [`Reservation::wait`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Waited {
    /// At the reserved slot.
    OnTime,
    /// Later than the reserved slot, held back by a cooldown set after the booking.
    PastCooldown,
    /// Not sent: the budget was [repriced](Budget::reprice) after the booking; book again.
    Repriced,
}

/// The outcome of [`Budget::acquire`].
///
/// This type is frozen: a booking can leave now or must wait, and nothing else.
#[derive(Debug)]
pub enum Booking {
    /// The units may leave now; they are already counted as used.
    Ready(Commitment),
    /// The units leave at [`Reservation::ready_at`]; wait for them.
    Wait(Reservation),
}

/// A used reservation that can still be reconciled with what it really cost, through
/// [`Budget::settle`] on the budget it came from.
///
/// Dropped without that, the estimate stands. It holds no reference to its budget, so the
/// common case (nothing to reconcile) costs nothing.
#[derive(Debug)]
#[non_exhaustive]
pub struct Commitment {
    cost: Cost,
    grants: Grants,
    /// The charge factors [`Budget::corrected`] applied when it was booked.
    applied: Charges,
}

impl Commitment {
    /// The cost that was booked.
    pub fn cost(&self) -> &Cost {
        &self.cost
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            self.budget.release(&self.place, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::cost::{Dimension, Limit};
    use super::*;

    /// Waiters booked at a slow pace, then a pace ten times faster with a reprice: each wakes
    /// `Repriced` and books again at the new pace, in order, all within a second.
    #[tokio::test(start_paused = true)]
    async fn waiters_repriced_faster_book_again_at_the_new_pace() {
        let budget = Arc::new(Budget::new());
        budget.set_limit(Dimension::Requests, Some(Limit::per_second(1, 1)));
        let first = budget.reserve(&Cost::requests(1), None).unwrap();
        first.settle(None);
        let start = Instant::now();
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let budget = Arc::clone(&budget);
                let reservation = budget.reserve(&Cost::requests(1), None).unwrap();
                tokio::spawn(async move {
                    let mut reservation = reservation;
                    loop {
                        match reservation.wait(None).await.unwrap() {
                            Waited::OnTime => break,
                            _ => {
                                drop(reservation);
                                reservation = budget.reserve(&Cost::requests(1), None).unwrap();
                            }
                        }
                    }
                    reservation.settle(None);
                    Instant::now()
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        budget.reprice(
            Dimension::Requests,
            Some(Limit {
                interval: Duration::from_millis(100),
                burst: 1,
            }),
        );
        let mut left = Vec::new();
        for waiter in waiters {
            left.push(waiter.await.unwrap() - start);
        }
        let last = *left.iter().max().unwrap();
        assert!(last <= Duration::from_millis(1_000), "{left:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_reservation_refunds() {
        let budget = Budget::new();
        budget.set_limit(Dimension::Requests, Some(Limit::per_second(1, 1)));
        let first = budget.reserve(&Cost::requests(1), None).unwrap();
        let queued = budget.reserve(&Cost::requests(1), None).unwrap();
        drop(queued);
        let again = budget.reserve(&Cost::requests(1), None).unwrap();
        assert_eq!(again.ready_at() - Instant::now(), Duration::from_secs(1));
        first.settle(None);
        again.settle(None);
        assert_eq!(budget.outstanding(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_dropped_mid_queue_lets_the_ones_behind_move_up() {
        let budget = Budget::new();
        budget.set_limit(Dimension::Requests, Some(Limit::per_second(10, 1)));
        let start = Instant::now();
        let queue: Vec<_> = (0..5)
            .map(|_| budget.reserve(&Cost::requests(1), None).unwrap())
            .collect();
        let slots = |queue: &[Reservation]| -> Vec<u128> {
            queue
                .iter()
                .map(|r| (r.ready_at() - start).as_millis())
                .collect()
        };
        assert_eq!(slots(&queue), vec![0, 100, 200, 300, 400]);
        let mut queue = queue;
        drop(queue.remove(2));
        assert_eq!(slots(&queue), vec![0, 100, 200, 300]);
        // A newcomer goes after every live waiter, into the slot the dropped one freed.
        let newcomer = budget.reserve(&Cost::requests(1), None).unwrap();
        assert_eq!((newcomer.ready_at() - start).as_millis(), 400);
        // The front is dropped at its slot's instant: the others keep the spacing from now.
        tokio::time::advance(Duration::from_millis(50)).await;
        drop(queue.remove(0));
        assert_eq!(slots(&queue), vec![50, 150, 250]);
        assert_eq!((newcomer.ready_at() - start).as_millis(), 350);
        // A waiter that is asleep is woken at its new slot.
        let last = queue.pop().unwrap();
        let waiting = tokio::spawn(async move {
            last.wait(None).await.unwrap();
            Instant::now()
        });
        tokio::task::yield_now().await;
        drop(queue.remove(0));
        assert_eq!(waiting.await.unwrap() - start, Duration::from_millis(150));
        drop((queue, newcomer));
        assert_eq!(budget.outstanding(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn cooldown_holds_back_waiting_and_new_reservations() {
        let budget = Budget::new();
        let waiting = budget.reserve(&Cost::requests(1), None).unwrap();
        let start = Instant::now();
        budget.cool_down(None, start + Duration::from_secs(5));
        // An earlier cooldown never shortens the running one.
        budget.cool_down(None, start + Duration::from_secs(1));
        waiting.wait(None).await.unwrap();
        assert_eq!(Instant::now() - start, Duration::from_secs(5));

        budget.cool_down(None, Instant::now() + Duration::from_secs(3));
        let blocked = budget
            .reserve(&Cost::requests(1), Some(Duration::from_secs(1)))
            .unwrap_err();
        assert_eq!(
            blocked,
            Blocked::Cooldown {
                dimension: None,
                wait: Duration::from_secs(3)
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cooldown_beyond_the_deadline_fails_without_sleeping() {
        let budget = Budget::new();
        let r = budget.reserve(&Cost::requests(1), None).unwrap();
        let start = Instant::now();
        budget.cool_down(Some(Dimension::Requests), start + Duration::from_secs(10));
        let err = r
            .wait(Some(start + Duration::from_secs(2)))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            Blocked::Cooldown {
                dimension: Some(Dimension::Requests),
                wait: Duration::from_secs(10)
            }
        );
        assert_eq!(Instant::now(), start);
    }

    #[tokio::test(start_paused = true)]
    async fn settle_reconciles_over_and_under_estimates() {
        let budget = Budget::new();
        budget.set_limit(Dimension::Tokens, Some(Limit::per_second(100, 1_000)));
        let estimate = Cost::requests(1).with(Dimension::Tokens, 600);
        let r = budget.reserve(&estimate, None).unwrap();
        r.settle(Some(&Cost::requests(1).with(Dimension::Tokens, 200)));
        assert_eq!(budget.available(Dimension::Tokens), Some(800));
        let r = budget.reserve(&estimate, None).unwrap();
        r.settle(Some(&Cost::requests(1).with(Dimension::Tokens, 1_000)));
        // 200 + 1 000 used out of 1 000: 2 s of debt at 100 tokens/s.
        assert_eq!(budget.available(Dimension::Tokens), Some(0));
        let next = budget
            .reserve(&Cost::requests(1).with(Dimension::Tokens, 1), None)
            .unwrap();
        assert_eq!(
            next.ready_at() - Instant::now(),
            Duration::from_millis(2_010)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_reported_cost_is_charged_at_most_one_burst() {
        for reported in [u64::MAX, 4_000_000] {
            // 40 000 tokens a minute, the whole minute as burst.
            let budget = Budget::new();
            budget.set_limit(
                Dimension::Tokens,
                Some(Limit {
                    interval: Duration::from_millis(1_500),
                    burst: 40_000,
                }),
            );
            let estimate = Cost::requests(1).with(Dimension::Tokens, 1_000);
            let r = budget.reserve(&estimate, None).unwrap();
            r.settle(Some(&Cost::requests(1).with(Dimension::Tokens, reported)));
            assert_eq!(budget.clamped_reports(), 1);
            // The whole minute is spent, no more: 1 000 more tokens wait 1 000 intervals.
            let next = budget.reserve(&estimate, None).unwrap();
            assert_eq!(next.ready_at() - Instant::now(), Duration::from_secs(1_500));
            // Within the limit nothing is clamped: a report below one burst is charged whole.
            let budget = Budget::new();
            budget.set_limit(Dimension::Tokens, Some(Limit::per_second(100, 1_000)));
            let r = budget
                .reserve(&Cost::requests(1).with(Dimension::Tokens, 10), None)
                .unwrap();
            r.settle(Some(&Cost::requests(1).with(Dimension::Tokens, 1_000)));
            assert_eq!(budget.clamped_reports(), 0);
            assert_eq!(budget.available(Dimension::Tokens), Some(0));
        }
    }

    /// A reservation keeps the charge factor it was priced at, and its settlement is learned
    /// against it: requests that waited while the factor grew are not read as charged more
    /// again (read at the newer factor, the factor would feed into itself).
    #[tokio::test(start_paused = true)]
    async fn the_charge_factor_is_learned_at_the_price_booked() {
        let budget = Budget::new();
        budget.set_limit(Dimension::Tokens, Some(Limit::per_second(1_000, 1_000)));
        // The server charges 1.5 × the estimate on average (1.2 and 1.8 in turn).
        let estimate = Cost::requests(1).with(Dimension::Tokens, 100);
        let actual = |i: usize| Cost::requests(1).with(Dimension::Tokens, [120, 180][i % 2]);
        // A queue of 8: each request is settled eight bookings after it was priced.
        let mut queue = std::collections::VecDeque::new();
        let mut factors = Vec::new();
        for i in 0..200 {
            queue.push_back(budget.reserve(&budget.corrected(estimate), None).unwrap());
            if queue.len() > 8 {
                queue.pop_front().unwrap().settle(Some(&actual(i)));
            }
            factors.push(budget.corrected(estimate).get(Dimension::Tokens) as f64 / 100.0);
        }
        // The average charge plus its learned spread (0.3), steady.
        let settled = &factors[100..];
        assert!(
            settled.iter().all(|f| (1.5..2.0).contains(f)),
            "{settled:?}"
        );
    }
}
