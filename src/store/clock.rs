//! The server's clock read on this worker's: where a grant's instant (decided in Redis' `TIME`)
//! falls on this process's [`Instant`]s.
//!
//! A booking's script runs somewhere between the instant the call left (`sent`) and the
//! instant its reply came back (`received`); its `now` is therefore, on this worker's clock,
//! in `[sent, received]`. Counting a grant from `received` (as a plain reply would) makes every
//! departure late by a varying part of the round trip: two workers then leave closer together
//! than their grants are, and a server without burst refuses the second. Instead the worker
//! keeps the offset between the two clocks measured by the call with the shortest round trip
//! seen recently (its midpoint errs by at most half of it, a few tens of microseconds on a
//! LAN), and places every grant with that same offset: grants one interval apart in Redis
//! leave one interval apart, whichever worker holds them.
//!
//! "Recently" is a windowed minimum over two periods of [`FRESH_FOR`]/2 (as BBR keeps its
//! minimum round trip): the fastest call of the current period and of the one before it. An
//! old sample so ages out without its place going to whichever call comes next: on a loaded
//! machine that call may be slow, and its midpoint a millisecond off, enough for a server
//! without burst to refuse every request this worker sends after another's.
//!
//! Guarantees:
//! - a grant is never placed before `sent + wait` (the script cannot have run before the call
//!   left) nor after `received + wait`: a bad estimate (a clock stepped, a stale sample) costs
//!   at most the round trip it was measured in, as counting from the reply always did;
//! - no sample older than [`FRESH_FOR`] is used once a newer one came, so a clock stepped on
//!   the server is followed within that time.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::time::{later, Epoch};

/// How long the best sample is trusted before a newer one replaces it, however slow: two
/// periods of the windowed minimum.
pub(super) const FRESH_FOR: Duration = Duration::from_secs(2);

/// One measurement: the round trip and the offset it gave, server µs minus local µs.
#[derive(Clone, Copy, Debug)]
struct Sample {
    round_trip: Duration,
    offset_us: f64,
    taken: Instant,
}

impl Sample {
    /// The one of `a` and `b` with the shorter round trip (on a tie `b`, the newer one where
    /// callers pass them in that order).
    fn faster(a: Option<Sample>, b: Option<Sample>) -> Option<Sample> {
        match (a, b) {
            (Some(a), Some(b)) if b.round_trip <= a.round_trip => Some(b),
            (Some(a), _) => Some(a),
            (None, b) => b,
        }
    }
}

/// The fastest sample of the current period and of the one before it.
#[derive(Clone, Copy, Debug, Default)]
struct Window {
    /// When the current period began (`None` before any sample).
    since: Option<Instant>,
    current: Option<Sample>,
    previous: Option<Sample>,
}

impl Window {
    /// Counts `sample`, taken at its `taken`, opening a new period first if the current one
    /// is over; nothing taken [`FRESH_FOR`] or longer before it remains.
    fn note(&mut self, sample: Sample) {
        let period = FRESH_FOR / 2;
        let elapsed = self
            .since
            .map(|since| sample.taken.saturating_duration_since(since));
        if elapsed.is_none_or(|elapsed| elapsed >= period) {
            self.previous = self.current.take();
            self.since = Some(sample.taken);
        }
        self.previous = self
            .previous
            .filter(|previous| sample.taken.saturating_duration_since(previous.taken) < FRESH_FOR);
        self.current = Sample::faster(self.current, Some(sample));
    }

    /// The fastest sample of the two periods.
    fn best(&self) -> Option<Sample> {
        Sample::faster(self.previous, self.current)
    }
}

/// The offset between Redis' clock and this process's, from the fastest recent round trip.
#[derive(Debug)]
pub(super) struct ServerClock {
    epoch: Epoch,
    window: Mutex<Window>,
}

impl Default for ServerClock {
    fn default() -> ServerClock {
        ServerClock {
            epoch: Epoch::now(),
            window: Mutex::new(Window::default()),
        }
    }
}

impl ServerClock {
    /// Microseconds of this process's clock at `instant`, counted from the epoch.
    fn local_us(&self, instant: Instant) -> f64 {
        self.epoch.nanos(instant) as f64 / 1e3
    }

    /// How far a grant placed by the best offset may be from where the server meant it: half
    /// the best round trip (zero before any: then the fixed guard alone applies).
    pub fn uncertainty(&self) -> Duration {
        self.best()
            .map_or(Duration::ZERO, |best| best.round_trip / 2)
    }

    fn offset_us(&self) -> Option<f64> {
        self.best().map(|best| best.offset_us)
    }

    fn best(&self) -> Option<Sample> {
        self.window.lock().unwrap_or_else(|e| e.into_inner()).best()
    }

    /// `instant` in µs of the server's clock, by the best offset measured; `None` before any.
    pub fn server_us(&self, instant: Instant) -> Option<f64> {
        let offset_us = self.offset_us()?;
        Some(self.local_us(instant) + offset_us)
    }

    /// The instant on this worker's clock of `server_us` (µs of the server's clock), by the best
    /// offset measured; `None` before any. An instant before this process's clock started is
    /// its start.
    pub fn local(&self, server_us: f64) -> Option<Instant> {
        let offset_us = self.offset_us()?;
        let since_epoch = ((server_us - offset_us) * 1e3).clamp(0.0, u64::MAX as f64);
        // `as` saturates.
        Some(self.epoch.instant(since_epoch as u64))
    }

    /// The instant on this worker's clock at which the script that ran at `server_now` (µs of
    /// Redis' `TIME`) lets its units leave, `wait` later; the call left at `sent` and its reply
    /// came at `received`.
    pub fn grant_at(
        &self,
        server_now: f64,
        wait: Duration,
        sent: Instant,
        received: Instant,
    ) -> Instant {
        let round_trip = received.saturating_duration_since(sent);
        let midpoint = later(sent, round_trip / 2);
        let sample = Sample {
            round_trip,
            offset_us: server_now - self.local_us(midpoint),
            taken: received,
        };
        let offset_us = {
            let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
            window.note(sample);
            window.best().unwrap_or(sample).offset_us
        };
        // Where the script's now falls on this clock, by the best offset, kept inside the
        // window the call itself proves.
        let ran_at_us = server_now - offset_us;
        let ran_after_sent = Duration::try_from_secs_f64(
            ((ran_at_us - self.local_us(sent)) / 1e6).clamp(0.0, round_trip.as_secs_f64()),
        )
        .unwrap_or_default();
        later(later(sent, ran_after_sent), wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn grants_are_placed_by_the_fastest_round_trip() {
        let clock = ServerClock::default();
        let start = Instant::now();
        // The server's clock reads 1 000 000 µs where ours reads `start` + 10 ms: a fast call
        // (1 ms) measures it within half a millisecond.
        let server = |at: Instant| 1e6 + (at - start).as_secs_f64() * 1e6 - 10_000.0;
        let sent = start + 10 * MS;
        let fast = clock.grant_at(server(sent + MS / 2), 20 * MS, sent, sent + MS);
        assert_eq!(fast, sent + MS / 2 + 20 * MS);
        // A slow call (8 ms, its script ran at the start): placed by the fast call's offset,
        // the grant falls where the server meant it, not 4 ms late.
        let sent = start + 40 * MS;
        let slow = clock.grant_at(server(sent), 20 * MS, sent, sent + 8 * MS);
        assert_eq!(slow, sent + 20 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_grant_stays_within_the_window_its_call_proves() {
        let clock = ServerClock::default();
        let start = Instant::now();
        // A fast first call, then the server's clock steps forward by a second: the stale
        // offset would place the script's run after the reply came; it is kept at the reply.
        clock.grant_at(5e6, Duration::ZERO, start, start + MS);
        let sent = start + 10 * MS;
        let stepped = clock.grant_at(5e6 + 1e6 + 10_000.0, 3 * MS, sent, sent + 2 * MS);
        assert_eq!(stepped, sent + 2 * MS + 3 * MS);
        // Stepped back: never before the call left.
        let sent = start + 20 * MS;
        let back = clock.grant_at(1e6, 3 * MS, sent, sent + 2 * MS);
        assert_eq!(back, sent + 3 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_sample_ages_out_to_the_next_fastest_not_to_the_next_call() {
        let clock = ServerClock::default();
        let start = Instant::now();
        // The script runs at its call's midpoint unless said otherwise: a call's offset is
        // then exact.
        let offset = 250_000.0;
        let server = |at: Instant| clock.local_us(at) + offset;
        let call = |sent: Instant, round_trip: Duration, ran_after: Duration| {
            clock.grant_at(
                server(sent + ran_after),
                Duration::ZERO,
                sent,
                sent + round_trip,
            )
        };
        call(start, MS / 2, MS / 4);
        // Three quarters of the way to aging out, a call a little slower than the first.
        let sent = start + FRESH_FOR * 3 / 4;
        call(sent, MS, MS / 2);
        // The first has aged out: a slow call whose reply was held up (its script ran 1 ms
        // after it left, its midpoint says 4 ms) is placed by the second call's offset, not
        // its own (which would put its grant 3 ms early).
        let sent = start + FRESH_FOR + MS;
        assert_eq!(call(sent, 8 * MS, MS), sent + MS);
        assert_eq!(clock.uncertainty(), MS / 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_sample_gives_way_to_a_newer_slower_one() {
        let clock = ServerClock::default();
        let start = Instant::now();
        clock.grant_at(0.0, Duration::ZERO, start, start + MS);
        let sent = start + FRESH_FOR + MS;
        // The server's clock moved: 4 ms slower round trip, now measured at its midpoint.
        let now_us = clock.local_us(sent + 2 * MS) + 123.0;
        clock.grant_at(now_us, Duration::ZERO, sent, sent + 4 * MS);
        let sent = sent + 10 * MS;
        let placed = clock.grant_at(
            clock.local_us(sent) + 123.0,
            Duration::ZERO,
            sent,
            sent + 6 * MS,
        );
        assert_eq!(placed, sent);
    }
}
