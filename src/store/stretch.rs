//! The stretches of a lane's shared schedule as this worker has heard of them, and the waiting
//! grants they move.
//!
//! A decrease shared by any worker (see `SHARE_CUBIC`) moves the fleet's schedule booked
//! beyond a pivot just after it: the grants made at the pace given up would otherwise reach the
//! server too close together, and rebooking them at the end of the queue would leave their
//! slots empty. Every worker moves each of its waiting grants booked before the share by the
//! same affine map, so that the fleet's grants keep their order and leave at the new pace. A
//! worker hears of a stretch in the reply to its own share or to any later booking; a grant
//! past the pivot of a stretch it may not have heard of (nothing heard from the store since
//! [`STRETCH_AFTER`] before the grant) asks the store just before it leaves, once the fleet
//! learns from plain refusals at all (before its first share, nothing stretches).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::script::{Stretch, ASK_BEFORE, STRETCH_AFTER};
use crate::time::later;

/// Stretches kept: a waiting grant booked before the oldest one kept is moved by those kept
/// only (a grant waits at most a few intervals; eight decreases in that time is a collapse the
/// next refusals answer anyway).
const KEPT: usize = 8;

/// The stretches this worker has heard of, by share number.
#[derive(Debug, Default)]
pub(crate) struct Stretches {
    log: Mutex<VecDeque<(u64, Stretch)>>,
    news: Notify,
    /// When the latest script this worker heard from ran, µs of the server's clock (as the
    /// bits of an `f64`: positive, so they order as the numbers do): every stretch shared
    /// before it is in the log.
    heard: AtomicU64,
}

/// A grant waiting to leave: where it stands on the server's clock and on this worker's, and
/// the latest share it has been moved by (or was booked after).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Waiting {
    /// µs of the server's clock.
    pub grant_us: f64,
    /// The same instant on this worker's clock.
    pub ready_at: Instant,
    /// The latest share of the fleet's curve already accounted for.
    pub seen: u64,
}

impl Stretches {
    /// Records the stretch made by share `seq` and wakes the waiting grants; a stretch already
    /// known, or one of factor 1, changes nothing.
    pub fn record(&self, seq: u64, stretch: Stretch) {
        if stretch.factor <= 1.0 {
            return;
        }
        {
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            let Err(at) = log.binary_search_by_key(&seq, |(seq, _)| *seq) else {
                return;
            };
            log.insert(at, (seq, stretch));
            if log.len() > KEPT {
                log.pop_front();
            }
        }
        self.news.notify_waiters();
    }

    /// Moves `waiting` by every stretch of a share after the one it has seen, in order.
    pub fn apply(&self, waiting: &mut Waiting) {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let seen = waiting.seen;
        for &(seq, stretch) in log.iter().filter(|(seq, _)| *seq > seen) {
            let moved = stretch.of(waiting.grant_us);
            let later_by =
                Duration::try_from_secs_f64((moved - waiting.grant_us) / 1e6).unwrap_or_default();
            waiting.ready_at = later(waiting.ready_at, later_by);
            waiting.grant_us = moved;
            waiting.seen = seq;
        }
    }

    /// A script that ran at `at_us` (µs of the server's clock) answered with the fleet's
    /// latest share: every stretch shared before then has been recorded.
    pub fn heard(&self, at_us: f64) {
        if at_us.is_finite() && at_us > 0.0 {
            self.heard.fetch_max(at_us.to_bits(), Relaxed);
        }
    }

    fn heard_us(&self) -> f64 {
        f64::from_bits(self.heard.load(Relaxed))
    }

    /// Waits until `waiting` may leave, moved by every stretch heard of meanwhile, and returns
    /// where it stands then. Unless the store answered since [`STRETCH_AFTER`] before the grant,
    /// a stretch may have moved it unheard: `ask` then reads the fleet's latest share (and
    /// records it) [`ASK_BEFORE`] the grant.
    pub async fn wait<F, Fut>(&self, mut waiting: Waiting, ask: F) -> Waiting
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = ()>,
    {
        let asks = loop {
            let news = self.news.notified();
            tokio::pin!(news);
            // Registered before the log is read: a stretch recorded in between still wakes us.
            news.as_mut().enable();
            self.apply(&mut waiting);
            let Some(asks) = waiting
                .ready_at
                .checked_sub(ASK_BEFORE)
                .filter(|&asks| asks > Instant::now())
            else {
                break false;
            };
            tokio::select! {
                () = tokio::time::sleep_until(asks) => break true,
                () = &mut news => {}
            }
        };
        let unheard = waiting.grant_us - STRETCH_AFTER.as_secs_f64() * 1e6 > self.heard_us();
        if asks && unheard {
            ask().await;
        }
        self.apply(&mut waiting);
        crate::limiter::sleep_exactly_until(waiting.ready_at).await;
        waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grant at `grant_us` of a server whose clock reads 1 s at this worker's now.
    fn waiting(grant_us: f64, seen: u64) -> Waiting {
        let now = Instant::now();
        let from_now = Duration::from_secs_f64((grant_us - 1e6).abs() / 1e6);
        let ready_at = if grant_us >= 1e6 {
            now + from_now
        } else {
            now.checked_sub(from_now).unwrap_or(now)
        };
        Waiting {
            grant_us,
            ready_at,
            seen,
        }
    }

    #[test]
    fn a_grant_booked_before_a_stretch_moves_by_it_and_one_booked_after_does_not() {
        let stretches = Stretches::default();
        // Share 3 halved the pace at 1 s: what was 100 ms past it is now 200 ms past.
        let halved = Stretch {
            at_us: 1e6,
            factor: 2.0,
        };
        stretches.record(3, halved);
        let mut before = waiting(1.1e6, 2);
        let start = before.ready_at;
        stretches.apply(&mut before);
        assert_eq!(before.grant_us, 1.2e6);
        assert_eq!(before.ready_at - start, Duration::from_millis(100));
        assert_eq!(before.seen, 3);
        // Applied once: hearing of it again moves nothing.
        stretches.record(3, halved);
        stretches.apply(&mut before);
        assert_eq!(before.grant_us, 1.2e6);
        let mut after = waiting(1.1e6, 3);
        stretches.apply(&mut after);
        assert_eq!(after.grant_us, 1.1e6);
        // A grant due before the stretch was made leaves at its instant.
        let mut due = waiting(0.9e6, 2);
        stretches.apply(&mut due);
        assert_eq!(due.grant_us, 0.9e6);
    }

    #[test]
    fn stretches_apply_in_the_order_they_were_shared_whatever_the_order_heard() {
        let stretches = Stretches::default();
        let second = Stretch {
            at_us: 2e6,
            factor: 1.5,
        };
        let first = Stretch {
            at_us: 1e6,
            factor: 2.0,
        };
        stretches.record(5, second);
        stretches.record(4, first);
        let mut grant = waiting(1.6e6, 0);
        stretches.apply(&mut grant);
        // 1.6 s → 2.2 s (by share 4), then 2.2 s → 2.3 s (by share 5).
        assert!((grant.grant_us - 2.3e6).abs() < 1e-3, "{}", grant.grant_us);
        assert_eq!(grant.seen, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_grant_leaves_at_its_stretched_instant() {
        let stretches = std::sync::Arc::new(Stretches::default());
        let start = Instant::now();
        let grant = waiting(1_100_000.0, 0);
        // Heard from the store up to past the grant's instant, moved or not: nothing to ask.
        stretches.heard(1_200_000.0);
        let waiter = tokio::spawn({
            let stretches = std::sync::Arc::clone(&stretches);
            async move {
                stretches
                    .wait(grant, || async { panic!("heard already: nothing to ask") })
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // 50 ms in, the pace halves past 1.06 s: the grant 40 ms past that is now 80 ms past.
        stretches.record(
            1,
            Stretch {
                at_us: 1_060_000.0,
                factor: 2.0,
            },
        );
        let left = waiter.await.expect("the waiter finishes");
        assert_eq!(left.grant_us, 1_140_000.0);
        assert_eq!(left.ready_at, start + Duration::from_millis(140));
        assert!(Instant::now() >= start + Duration::from_millis(139));
    }

    /// A grant past the pivot of a stretch this worker has not heard of asks the store just
    /// before it leaves, and leaves where the answer moves it.
    #[tokio::test(start_paused = true)]
    async fn a_grant_not_heard_of_for_a_while_asks_before_it_leaves() {
        let stretches = Stretches::default();
        let start = Instant::now();
        let grant = waiting(1_100_000.0, 0);
        stretches.heard(1_000_000.0);
        let asked = std::cell::Cell::new(None);
        let left = stretches
            .wait(grant, || async {
                asked.set(Some(Instant::now()));
                stretches.record(
                    2,
                    Stretch {
                        at_us: 1_050_000.0,
                        factor: 1.5,
                    },
                );
                stretches.heard(1_095_000.0);
            })
            .await;
        assert_eq!(asked.get(), Some(start + Duration::from_millis(95)));
        assert_eq!(left.grant_us, 1_125_000.0);
        assert_eq!(left.seen, 2);
    }
}
