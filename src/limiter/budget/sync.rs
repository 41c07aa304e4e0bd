//! The server's word about what remains: [`Budget::sync`] and [`Budget::sync_until`] bring a
//! dimension to the server's count, [`Budget::debit`] charges what was used without a booking.
//!
//! These act on each dimension's rate (its GCRA cell) only. A dimension's longer windows (see
//! [`Budget::set_windows`]) count what this budget booked and are never brought to a server's
//! count: a server announces one window per dimension, the one the rate stands for, and what
//! it says remains of that window says nothing of a day's.

use tokio::time::Instant;

use super::{Budget, State};
use crate::limiter::cost::Dimension;
use crate::limiter::ledger::Change;

impl Budget {
    /// Brings `dimension` to `remaining` units available now, as the server says: what it
    /// counts as gone is charged ([`debit`](Self::debit)); what it says is still there and
    /// this budget believed spent (an over-estimated cost, a window that renewed) is given
    /// back, never beyond the burst. The reservations still waiting are not among what the
    /// server counted: when what it says remains is less than they need, the difference is
    /// charged ahead of them. Giving back at least `min_credit` units makes the waiting
    /// reservations book again at once, so they use it in their order instead of a newcomer.
    /// Returns the units charged (positive) or given back (negative).
    pub fn sync(&self, dimension: Dimension, remaining: u64, min_credit: u64) -> i128 {
        self.sync_until(dimension, remaining, None, min_credit)
    }

    /// [`sync`](Self::sync) for a fixed window ending at `refills_from` (`None`: a bucket,
    /// as `sync`): `remaining` is all there is until then, so what this budget's pace would
    /// refill before it is owed first. Capacity before the window's end is then `remaining`,
    /// spread over the time left, and the pace goes on past it. The reservations still waiting
    /// were not seen by the server: the change applies ahead of them, and they book again
    /// behind it in their order. `min_credit` concerns buckets only: a window's credit, however
    /// small, moves the waiters up in their order without waking them all to book again.
    ///
    /// ```
    /// use std::time::Duration;
    /// use reqwest_throttle::limiter::{Budget, Dimension, Limit};
    /// use tokio::time::Instant;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let budget = Budget::new();
    /// // 900 tokens per minute: one every 66.7 ms.
    /// let interval = Duration::from_secs(60) / 900;
    /// budget.set_limit(Dimension::Tokens, Some(Limit::new(interval, 900)));
    /// // The window ends in 30 s with 100 left: 450 would refill by then, so 350 are owed.
    /// let end = Instant::now() + Duration::from_secs(30);
    /// assert_eq!(budget.sync_until(Dimension::Tokens, 100, Some(end), 1), 1_250);
    /// assert_eq!(budget.available(Dimension::Tokens), Some(0));
    /// # }
    /// ```
    pub fn sync_until(
        &self,
        dimension: Dimension,
        remaining: u64,
        refills_from: Option<Instant>,
        min_credit: u64,
    ) -> i128 {
        let now_instant = Instant::now();
        let now = self.epoch.nanos(now_instant);
        let mut state = self.lock();
        let outstanding = state.outstanding;
        let Some(gcra) = state.gcras[dimension.index()] else {
            return 0;
        };
        let available = gcra.available(now);
        if let Some(end) = refills_from {
            // What the pace refills before the window's end is owed: the cell's level may go
            // below zero, and its next unit comes as late as the window allows.
            let until_end = end.saturating_duration_since(now_instant).as_nanos();
            let owed = until_end / gcra.interval().as_nanos().max(1);
            let owed = i128::try_from(owed).unwrap_or(i128::MAX);
            let unseen = i128::from(state.ledger.waiting_units(dimension));
            let target = i128::from(remaining.min(gcra.burst())) - owed;
            let charged = (gcra.level(now) + unseen).saturating_sub(target);
            let units = u64::try_from(charged.unsigned_abs()).unwrap_or(u64::MAX);
            let change = match charged {
                0 => return 0,
                _ if charged < 0 => Change::Credit(units),
                _ => Change::Debit(units),
            };
            let State {
                gcras,
                windows,
                ledger,
                ..
            } = &mut *state;
            let rebook = ledger.change_ahead(dimension, change, gcras, windows, now);
            if charged < 0 {
                state.cells[dimension.index()].sent.credit(units, now);
            }
            drop(state);
            if rebook {
                self.next_generation();
            }
            return charged;
        }
        // Recorded as the server's number, not as a difference: replayed without a dropped
        // reservation, the cell comes to the same `remaining` (the server never counted it).
        // Nor may more leave at once than remains: the spacing as sent follows.
        state.cells[dimension.index()].sent.cap(remaining, now);
        // The reservations still waiting were not seen by the server: their units are not
        // among what it says remains. Booked as if spent, they hide that the server has less
        // than they will need; what the server lacks for them is charged ahead of them.
        let unseen = i128::from(state.ledger.waiting_units(dimension));
        let lacking =
            (gcra.level(now) + unseen).saturating_sub(i128::from(remaining.min(gcra.burst())));
        if unseen > 0 && lacking > 0 {
            let units = u64::try_from(lacking).unwrap_or(u64::MAX);
            let State {
                gcras,
                windows,
                ledger,
                ..
            } = &mut *state;
            let rebook = ledger.change_ahead(dimension, Change::Debit(units), gcras, windows, now);
            drop(state);
            if rebook {
                self.next_generation();
            }
            return lacking;
        }
        if available > remaining {
            state.change(dimension, Change::Sync(remaining), now);
            return i128::from(available - remaining);
        }
        let missing = remaining.min(gcra.burst()) - available.min(remaining);
        if missing == 0 || missing < min_credit {
            return 0;
        }
        state.change(dimension, Change::Sync(remaining), now);
        // The spacing as sent follows: what the server gives back may leave.
        state.cells[dimension.index()].sent.credit(missing, now);
        drop(state);
        if outstanding > 0 {
            self.next_generation();
        }
        -i128::from(missing)
    }

    /// Charges `units` of `dimension` that were used without a reservation (the server reports
    /// less remaining than this budget believes): later reservations wait for them.
    pub fn debit(&self, dimension: Dimension, units: u64) {
        let now = self.epoch.nanos(Instant::now());
        self.lock().change(dimension, Change::Debit(units), now);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use crate::limiter::{Budget, Cost, Dimension, Limit};

    /// A server's count of what remains is replayed as that count, not as the difference it
    /// made: a waiter dropped after it gives back only what the server never counted.
    #[tokio::test(start_paused = true)]
    async fn a_sync_replayed_after_a_drop_keeps_the_servers_count() {
        let budget = Budget::new();
        budget.set_limit(Dimension::Requests, Some(Limit::per_second(1, 1)));
        budget.set_limit(Dimension::Tokens, Some(Limit::per_second(100, 100)));
        let cost = Cost::requests(1).with(Dimension::Tokens, 10);
        let first = budget.reserve(&cost, None).unwrap();
        // Held by the request dimension for 1 s; its tokens are booked for then.
        let waiting = budget.reserve(&cost, None).unwrap();
        assert_eq!(waiting.ready_at() - Instant::now(), Duration::from_secs(1));
        // The server has counted the first request only: 90 tokens remain.
        budget.sync(Dimension::Tokens, 90, 1);
        assert_eq!(budget.available(Dimension::Tokens), Some(80));
        drop(waiting);
        assert_eq!(budget.available(Dimension::Tokens), Some(90));
        first.settle(None);
    }

    /// A fixed window of 10 per 10 s with 2 left and 5 s to go: 5 would refill by its end at
    /// the even pace, so the budget's level goes to 2 − 5 = −3 (it believed 0: 3 charged);
    /// the waiters booked before the server's word stand behind it, in their order, and only
    /// 2 leave by the window's end.
    #[tokio::test(start_paused = true)]
    async fn a_window_sync_leaves_only_what_remains_before_the_end() {
        let budget = Budget::new();
        budget.set_limit(Dimension::Requests, Some(Limit::per_second(1, 10)));
        let start = Instant::now();
        let spent: Vec<_> = (0..10)
            .map(|_| budget.reserve(&Cost::requests(1), None).unwrap().commit())
            .collect();
        let waiters: Vec<_> = (0..7)
            .map(|_| budget.reserve(&Cost::requests(1), None).unwrap())
            .collect();
        // The server counted 8 of the 10 so far.
        let end = start + Duration::from_secs(5);
        assert_eq!(budget.sync_until(Dimension::Requests, 2, Some(end), 1), 3);
        let slots: Vec<_> = waiters.iter().map(|w| w.ready_at() - start).collect();
        let before_end = slots.iter().filter(|&&slot| slot <= Duration::from_secs(5));
        assert_eq!(before_end.count(), 2, "{slots:?}");
        assert!(slots.windows(2).all(|pair| pair[0] < pair[1]), "{slots:?}");
        // Said again, the same word changes nothing.
        assert_eq!(budget.sync_until(Dimension::Requests, 2, Some(end), 1), 0);
        // The server says more remains than the budget believes: the waiters move up, in order.
        let later: Vec<_> = waiters.iter().map(|w| w.ready_at()).collect();
        assert!(budget.sync_until(Dimension::Requests, 4, Some(end), 1) < 0);
        let moved: Vec<_> = waiters.iter().map(|w| w.ready_at()).collect();
        assert!(moved
            .iter()
            .zip(&later)
            .all(|(moved, later)| moved <= later));
        assert!(moved[0] < later[0]);
        assert!(moved.windows(2).all(|pair| pair[0] < pair[1]), "{moved:?}");
        drop(waiters);
        drop(spent);
    }
}
