//! Whether a dimension's rate-limit announcements describe a token bucket or a fixed window.
//!
//! OpenAI and Anthropic define `reset` as the time until the bucket is full again, and most of
//! their gateways keep that meaning; but some gateways speak the same headers over fixed,
//! clock-aligned windows (an RPM counted per calendar minute), where `reset` is the window's
//! end and nothing comes back before it. Read as a bucket, such a window looks like a refill
//! of (limit − remaining) / reset, which grows as the window runs out: near its end the lane
//! believes the bucket refills fast and is refused.
//!
//! The two shapes differ in one observable way. Take two announcements of the same dimension
//! in which `remaining` went down (something was spent), answered Δt apart:
//!
//! - a bucket is full at `now + reset`; spending c units moves that instant later by c / rate,
//!   and `remaining` can only go down if more was spent than refilled (c > rate · Δt), so the
//!   instant moved later by more than Δt;
//! - a fixed window ends at the same instant whatever is spent: it moved by nothing (up to the
//!   announcements' rounding and the answers' differing latencies).
//!
//! So `remaining` down and the announced end moved by less than half of Δt is a window;
//! moved by about Δt or more is a bucket. The answers' latencies cancel out of the bucket's
//! bound (the end is measured from each answer's arrival, and so is Δt), so no latency makes a
//! bucket look like a window. Announcements rounded to whole seconds (or milliseconds) are
//! compared only once Δt is at least twice the rounding.

use std::time::Duration;

use tokio::time::Instant;

use crate::time::later;

/// What the announcements of one dimension describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `reset` is the time until the bucket is full again: it refills continuously.
    Bucket,
    /// `reset` is the end of a fixed window: `remaining` is all there is until then.
    FixedWindow,
}

/// One announcement, as the lane received it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Announcement {
    /// When it arrived.
    at: Instant,
    /// When it said the bucket is full, or the window ends.
    end: Instant,
    remaining: u64,
}

/// Tells a bucket from a fixed window by successive announcements of one dimension (see the
/// [module documentation](self)), and learns a fixed window's length.
///
/// ```
/// use std::time::Duration;
/// use tokio::time::Instant;
/// use reqwest_throttle::limiter::shape::{Shape, ShapeReader};
///
/// let start = Instant::now();
/// let at = |ms| start + Duration::from_millis(ms);
/// let mut reader = ShapeReader::default();
/// // A minute window: 900 tokens, 843 left 59.95 s before its end...
/// assert_eq!(reader.observe(at(50), 843, Duration::from_millis(59_950)), None);
/// // ...and 786 left 200 ms later, the end where it was: a fixed window.
/// let shape = reader.observe(at(250), 786, Duration::from_millis(59_750));
/// assert_eq!(shape, Some(Shape::FixedWindow));
/// assert_eq!(reader.window_length(), Some(Duration::from_millis(59_950)));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShapeReader {
    /// The announcement the next one is compared with: the first since `remaining` last grew.
    anchor: Option<Announcement>,
    /// The coarsest unit every reset so far was a whole number of (a second, a millisecond).
    resolution: Option<Duration>,
    shape: Option<Shape>,
    /// The longest reset announced: a window is at least this long.
    longest_reset: Duration,
    /// The shortest step between two successive windows' ends.
    step: Option<Duration>,
}

impl ShapeReader {
    /// Takes one announcement (`remaining` units, `reset_in` until the bucket is full or the
    /// window ends) arrived at `now` into account; returns the shape known so far.
    pub fn observe(&mut self, now: Instant, remaining: u64, reset_in: Duration) -> Option<Shape> {
        if reset_in.is_zero() {
            return self.shape;
        }
        let resolution = resolution_of(reset_in);
        self.resolution = Some(self.resolution.map_or(resolution, |r| r.min(resolution)));
        self.longest_reset = self.longest_reset.max(reset_in);
        let current = Announcement {
            at: now,
            end: later(now, reset_in),
            remaining,
        };
        let Some(anchor) = self.anchor else {
            self.anchor = Some(current);
            return self.shape;
        };
        if remaining >= anchor.remaining {
            if remaining > anchor.remaining {
                // Capacity came back: a refill, or a window that renewed. A window's end steps
                // on by its length (a constant lateness or rounding cancels out).
                let step = current.end.saturating_duration_since(anchor.end);
                if self.shape == Some(Shape::FixedWindow)
                    && step.saturating_mul(2) > self.longest_reset
                    && step <= self.longest_reset.saturating_mul(2)
                {
                    self.step = Some(self.step.map_or(step, |known| known.min(step)));
                }
                self.anchor = Some(current);
            }
            return self.shape;
        }
        let elapsed = now.saturating_duration_since(anchor.at);
        let rounding = self.resolution.unwrap_or(resolution);
        if elapsed < rounding.saturating_mul(2) {
            return self.shape;
        }
        let moved = current.end.saturating_duration_since(anchor.end);
        if moved.saturating_mul(2) <= elapsed && moved < elapsed.saturating_sub(rounding) {
            self.shape = Some(Shape::FixedWindow);
        } else if moved.saturating_add(rounding) >= elapsed {
            self.shape = Some(Shape::Bucket);
        }
        self.anchor = Some(current);
        self.shape
    }

    /// The shape known so far.
    pub fn shape(&self) -> Option<Shape> {
        self.shape
    }

    /// A fixed window's length: the shortest step between two windows' ends once one renewed,
    /// else the longest reset announced; `None` before any announcement.
    pub fn window_length(&self) -> Option<Duration> {
        self.step
            .or(Some(self.longest_reset).filter(|longest| !longest.is_zero()))
    }
}

/// The coarsest unit `reset` is a whole number of: a second, a millisecond or a microsecond.
fn resolution_of(reset: Duration) -> Duration {
    if reset.subsec_nanos() == 0 {
        Duration::from_secs(1)
    } else if reset.subsec_nanos().is_multiple_of(1_000_000) {
        Duration::from_millis(1)
    } else {
        Duration::from_micros(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A bucket of 900 refilling 15 per second, emptied faster than it refills: whatever the
    /// answers' latencies, never read as a window.
    #[test]
    fn a_bucket_spent_faster_than_it_refills_is_a_bucket() {
        let start = Instant::now();
        let rate = 15.0;
        let mut reader = ShapeReader::default();
        let mut level = 900.0_f64;
        let mut server_at = 0.0_f64;
        for (i, latency_ms) in [50u64, 400, 20, 900, 10, 300, 5, 700]
            .into_iter()
            .enumerate()
        {
            // 60 tokens every 100 ms (server time): more than the 1.5 refilled.
            server_at += 0.1;
            level = (level + rate * 0.1).min(900.0) - 60.0;
            let reset = Duration::from_secs_f64((900.0 - level) / rate);
            let arrived = start + Duration::from_secs_f64(server_at) + ms(latency_ms);
            let shape = reader.observe(arrived, level.floor() as u64, reset);
            assert_ne!(shape, Some(Shape::FixedWindow), "answer {i}");
        }
        assert_eq!(reader.shape(), Some(Shape::Bucket));
    }

    #[test]
    fn a_fixed_window_is_read_as_one_and_its_length_learned_from_renewals() {
        let start = Instant::now();
        let mut reader = ShapeReader::default();
        // A 60 s window opened 10 s before the first answer: its first reset says 50 s.
        let window = |at: u64, remaining| {
            let into = (at + 10_000) % 60_000;
            (start + ms(at), remaining, ms(60_000 - into))
        };
        for (at, remaining) in [(0, 29), (300, 28), (800, 27)] {
            let (at, remaining, reset) = window(at, remaining);
            reader.observe(at, remaining, reset);
        }
        assert_eq!(reader.shape(), Some(Shape::FixedWindow));
        // Before a renewal, the longest reset is the best guess of the length.
        assert_eq!(reader.window_length(), Some(ms(50_000)));
        // The next window: its end 60 s after the first one's.
        let (at, remaining, reset) = window(50_100, 29);
        reader.observe(at, remaining, reset);
        let (at, remaining, reset) = window(50_400, 28);
        reader.observe(at, remaining, reset);
        assert_eq!(reader.window_length(), Some(ms(60_000)));
        assert_eq!(reader.shape(), Some(Shape::FixedWindow));
    }

    #[test]
    fn resets_in_whole_seconds_are_compared_only_seconds_apart() {
        let start = Instant::now();
        let mut reader = ShapeReader::default();
        // A window whose resets are rounded up to whole seconds: 300 ms apart tells nothing.
        reader.observe(start, 10, Duration::from_secs(30));
        reader.observe(start + ms(300), 9, Duration::from_secs(30));
        assert_eq!(reader.shape(), None);
        // Three seconds later the end has not moved: a window.
        reader.observe(start + ms(3_300), 8, Duration::from_secs(27));
        assert_eq!(reader.shape(), Some(Shape::FixedWindow));
    }

    #[test]
    fn nothing_spent_tells_nothing() {
        let start = Instant::now();
        let mut reader = ShapeReader::default();
        for i in 0..5 {
            reader.observe(start + ms(i * 100), 10, ms(5_000 - i * 100));
        }
        assert_eq!(reader.shape(), None);
        assert_eq!(reader.observe(start, 10, Duration::ZERO), None);
    }
}
