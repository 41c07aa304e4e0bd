//! What state a breaker is in, and how its changes are told: [`BreakerState`], each
//! [`Transition`] with its [`TransitionReason`], and the `tracing` event of a transition.

use std::fmt;
use std::time::Duration;

/// The `tracing` target of breaker events.
pub(super) const TARGET: &str = "reqwest_throttle::breaker";

/// The state of a breaker as callers see it.
///
/// This type is frozen: a circuit breaker has exactly these three states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls flow; outcomes are counted.
    Closed,
    /// Calls are rejected until the open period elapses (or an operator releases it).
    Open,
    /// A limited number of probe calls test whether the service has recovered.
    HalfOpen,
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        })
    }
}

/// Why a breaker changed state.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum TransitionReason {
    /// Closed → open: this many failures in a row.
    ConsecutiveFailures {
        /// Failures in a row when it tripped.
        failures: u32,
    },
    /// Closed → open: the failure rate over the window reached the threshold.
    FailureRate {
        /// Failed calls in the window.
        failures: u32,
        /// All counted calls in the window.
        calls: u32,
    },
    /// Open → half-open: the open period elapsed.
    OpenElapsed,
    /// Half-open → open: a probe failed.
    ProbeFailed,
    /// Half-open → open: a probe was neither recorded nor dropped within the probe timeout.
    ProbeTimedOut,
    /// Half-open → closed: enough probes succeeded.
    ProbesSucceeded {
        /// Successful probes.
        successes: u32,
    },
    /// An operator called [`Breaker::force_open`](super::Breaker::force_open).
    ForcedOpen,
    /// An operator called [`Breaker::force_closed`](super::Breaker::force_closed).
    ForcedClosed,
    /// An operator called [`Breaker::reset`](super::Breaker::reset).
    Reset,
}

impl fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransitionReason::ConsecutiveFailures { failures } => {
                write!(f, "{failures} consecutive failures")
            }
            TransitionReason::FailureRate { failures, calls } => {
                write!(f, "{failures} of the last {calls} calls failed")
            }
            TransitionReason::OpenElapsed => f.write_str("open period elapsed"),
            TransitionReason::ProbeFailed => f.write_str("probe failed"),
            TransitionReason::ProbeTimedOut => f.write_str("probe timed out"),
            TransitionReason::ProbesSucceeded { successes } => {
                write!(f, "{successes} probes succeeded")
            }
            TransitionReason::ForcedOpen => f.write_str("forced open by operator"),
            TransitionReason::ForcedClosed => f.write_str("forced closed by operator"),
            TransitionReason::Reset => f.write_str("reset by operator"),
        }
    }
}

/// One state change, as given to [`Breaker::on_transition`](super::Breaker::on_transition)
/// callbacks.
///
/// Forced states report as their plain counterparts (`Open`, `Closed`), so a change of mode
/// only (timed open → held open) is a transition from `Open` to `Open`; `reason` tells them apart.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Transition {
    /// The state left.
    pub from: BreakerState,
    /// The state entered.
    pub to: BreakerState,
    /// Why.
    pub reason: TransitionReason,
    /// For a timed open: how long it stays open (jitter applied). `None` otherwise.
    pub open_for: Option<Duration>,
}

/// Emits the `tracing` event of one transition: a warning when the breaker opens, info
/// otherwise.
pub(super) fn trace_transition(t: &Transition) {
    match t.to {
        BreakerState::Open => tracing::warn!(
            target: TARGET,
            from = %t.from, to = %t.to, reason = %t.reason, open_for = ?t.open_for,
            "circuit breaker opened"
        ),
        BreakerState::HalfOpen => tracing::info!(
            target: TARGET,
            from = %t.from, to = %t.to, reason = %t.reason,
            "circuit breaker half-open: probing"
        ),
        BreakerState::Closed => tracing::info!(
            target: TARGET,
            from = %t.from, to = %t.to, reason = %t.reason,
            "circuit breaker closed"
        ),
    }
}
