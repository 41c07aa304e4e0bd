//! A circuit breaker: stop sending to a service that is down, fail callers fast, probe gently,
//! and come back at full speed once it recovers.
//!
//! # States
//!
//! ```text
//!            trip: n consecutive failures,            open period elapsed
//!            or failure rate ≥ threshold              (next admit)
//!   Closed ──────────────────────────────▶ Open ─────────────────────▶ HalfOpen
//!     ▲                                     ▲                              │
//!     │                                     └── a probe fails or hangs ────┤
//!     └──────────────── successes_to_close probes succeed ─────────────────┘
//! ```
//!
//! - **Closed**: every call is admitted; outcomes feed the consecutive-failure count and the
//!   optional failure-rate window. [`Outcome::Ignored`] (429 throttling) feeds nothing.
//! - **Open**: every call is rejected at once with [`Rejected::retry_in`], the time left until
//!   the breaker half-opens. The open period starts at `base`, doubles on each repeated trip
//!   (a failed probe, or a trip within `healthy_after` of the last close), is capped at `max`,
//!   and is shortened by a random jitter so clients that tripped together probe apart.
//! - **HalfOpen**: at most `half_open_probes` calls are in flight at a time; `successes_to_close`
//!   successful probes close the breaker, any failed (or timed-out) probe reopens it.
//!
//! Operators can [`force_open`](Breaker::force_open) (held until released, not timed),
//! [`force_closed`](Breaker::force_closed) (admits everything and never trips, until released)
//! and [`reset`](Breaker::reset) (back to a fresh closed breaker).
//!
//! # Guarantees
//!
//! - **Pure functions of `now`**: the breaker never reads a clock (except the convenience
//!   [`Breaker::state`]); callers pass `tokio::time::Instant`s, so tests run in virtual time.
//! - **Cheap when closed**: [`Breaker::admit`] is one atomic load and no lock while closed;
//!   [`Breaker::record`] of a success takes no lock either unless failures were pending or a
//!   failure-rate window is configured.
//! - **No stale outcomes**: every state change starts a new generation, and an outcome recorded
//!   for an [`Admission`] of an older generation is ignored (a slow call admitted while closed
//!   neither closes a half-open breaker nor extends an open one).
//! - **Cancellation-safe probes**: an [`Admission`] holding a half-open probe slot releases it
//!   when dropped unrecorded, so a cancelled request cannot wedge the breaker half-open.
//! - **Observable**: every state change emits a `tracing` event (target
//!   `reqwest_throttle::breaker`, fields `from`, `to`, `reason`, `open_for`) and calls the
//!   [`on_transition`](Breaker::on_transition) callbacks, in order, outside the state lock.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tokio::time::Instant;
//! use reqwest_throttle::breaker::{Breaker, BreakerConfig, BreakerState, Outcome};
//!
//! let breaker = Breaker::new(
//!     BreakerConfig::default()
//!         .consecutive_failures(2)
//!         .open_for(Duration::from_secs(5), Duration::from_secs(60))
//!         .jitter(0.0),
//! );
//! let t0 = Instant::now();
//! for _ in 0..2 {
//!     let admission = breaker.admit(t0).expect("closed breakers admit");
//!     breaker.record(admission, Outcome::Failure, t0);
//! }
//! let rejected = breaker.admit(t0).unwrap_err();
//! assert_eq!(rejected.state, BreakerState::Open);
//! assert_eq!(rejected.retry_in, Duration::from_secs(5));
//!
//! // Five seconds later one probe goes through; its success closes the breaker.
//! let t1 = t0 + Duration::from_secs(5);
//! let probe = breaker.admit(t1).expect("the open period has elapsed");
//! assert!(probe.is_probe());
//! assert!(breaker.admit(t1).is_err(), "only one probe at a time");
//! breaker.record(probe, Outcome::Success, t1);
//! assert_eq!(breaker.snapshot(t1).state, BreakerState::Closed);
//! ```

mod admission;
mod config;
mod machine;
mod operator;
mod shared;
mod snapshot;
#[cfg(test)]
mod tests;
mod transition;
mod window;

pub use admission::{Admission, Rejected};
pub use config::{
    BreakerConfig, BreakerConfigError, FailureRate, FailureWindow, Outcome, MAX_COUNT_WINDOW,
};
pub use machine::Breaker;
pub use snapshot::BreakerSnapshot;
pub use transition::{BreakerState, Transition, TransitionReason};
