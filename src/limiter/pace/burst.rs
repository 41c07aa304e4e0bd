//! Earned bursts: a configured rate whose burst nobody stated (see
//! [`Rate::is_burst_stated`](crate::Rate::is_burst_stated)) starts one request at a time.
//!
//! A defaulted burst is a guess, and a server that allows none refuses it at once. So the lane
//! first sends spaced, and the burst is earned once the server has accepted as many requests
//! as it holds without a refusal in between; a refusal first keeps it at one for good.
//!
//! An earned burst opens only at the lane's next lull, and empty: a burst is for after a lull,
//! and a busy lane with a burst catches up on every late departure with gaps shorter than its
//! interval, which a server without burst refuses. The lane opens it; a lane whose budget a
//! fleet shares never does (its own budget at rest is no lull of the fleet's).

use super::pacing::Pacing;
use super::protocol::{Action, Actions, Answer};
use crate::limiter::{Dimension, Limit};

/// How far the lane is in earning its configured burst.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Burst {
    /// Requests still to be accepted, one at a time, before the configured burst is earned.
    earning: Option<u64>,
    /// The configured burst was earned, and opens at the lane's next lull.
    earned: bool,
}

impl Burst {
    /// Starts earning the configured requests burst, if there is one to earn; returns the
    /// limit to start with.
    pub(super) fn start(&mut self, pacing: &mut Pacing) -> Option<Limit> {
        let configured = pacing.config().configured(Dimension::Requests)?;
        if configured.burst <= 1 {
            return None;
        }
        let spaced = Limit {
            burst: 1,
            ..configured
        };
        pacing.record(Dimension::Requests, Some(spaced));
        self.earning = Some(configured.burst);
        Some(spaced)
    }

    /// Whether the burst was earned and waits for a lull to open.
    pub(super) fn is_earned(&self) -> bool {
        self.earned
    }

    /// Opens an earned burst, as empty as the spaced bucket was: it fills during the lull that
    /// follows. Nothing if none was earned, or if something else was learned meanwhile (a
    /// server's headers, a refusal).
    pub(super) fn open(&mut self, pacing: &mut Pacing) -> Actions {
        let mut actions = Actions::default();
        if !std::mem::take(&mut self.earned) {
            return actions;
        }
        let configured = pacing.config().configured(Dimension::Requests);
        let spaced = configured.map(|limit| Limit { burst: 1, ..limit });
        if pacing.limit(Dimension::Requests) == spaced {
            pacing.set(Dimension::Requests, configured, false, false, &mut actions);
            actions.push(Action::Sync {
                dimension: Dimension::Requests,
                remaining: 0,
                credit: false,
                refills_from: None,
            });
        }
        actions
    }

    /// Counts an answer towards the burst.
    pub(super) fn earn(&mut self, answer: Answer) {
        match (answer, self.earning) {
            (Answer::RateLimited, _) => {
                self.earning = None;
                self.earned = false;
            }
            (Answer::Accepted, Some(left)) if left <= 1 => {
                self.earning = None;
                self.earned = true;
            }
            (Answer::Accepted, Some(left)) => self.earning = Some(left - 1),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::super::fixtures::plain;
    use super::super::protocol::PaceConfig;
    use super::super::PaceLearner;
    use super::*;

    #[test]
    fn an_unstated_burst_starts_one_request_at_a_time() {
        let configured = Limit {
            interval: Duration::from_millis(20),
            burst: 50,
        };
        let mut learner = PaceLearner::new(PaceConfig {
            configured: [Some(configured), None, None, None],
            max_wait: Duration::from_secs(10),
        });
        let start = learner.earn_burst().unwrap();
        assert_eq!(start.burst, 1);
        assert_eq!(learner.limit(Dimension::Requests), Some(start));
    }

    /// A burst nobody stated starts at one and opens, empty, once the server has accepted as
    /// many requests as it holds; a refusal first keeps it at one.
    #[test]
    fn an_unstated_burst_is_earned() {
        let configured = Limit {
            interval: Duration::from_millis(20),
            burst: 5,
        };
        let config = PaceConfig {
            configured: [Some(configured), None, None, None],
            max_wait: Duration::from_secs(10),
        };
        let now = Instant::now();
        let mut learner = PaceLearner::new(config);
        let spaced = learner.earn_burst().unwrap();
        assert_eq!(
            spaced,
            Limit {
                burst: 1,
                ..configured
            }
        );
        for _ in 0..5 {
            assert!(learner.observe(&plain(now, Answer::Accepted)).is_empty());
            assert_eq!(learner.limit(Dimension::Requests), Some(spaced));
        }
        // Earned: it opens when the lane has a lull, empty.
        assert!(learner.has_earned_burst());
        let opened: Vec<_> = learner.open_earned_burst().iter().collect();
        assert_eq!(
            opened,
            [
                Action::SetLimit {
                    dimension: Dimension::Requests,
                    limit: Some(configured),
                    strict: false,
                    fresh: false,
                },
                Action::Sync {
                    dimension: Dimension::Requests,
                    remaining: 0,
                    credit: false,
                    refills_from: None,
                },
            ]
        );
        assert!(learner.open_earned_burst().is_empty());
        // Refused before the burst was earned: it stays at one, however much is accepted after.
        let mut learner = PaceLearner::new(config);
        learner.earn_burst();
        learner.observe(&plain(now, Answer::Accepted));
        learner.observe(&plain(now, Answer::RateLimited));
        for _ in 0..10 {
            learner.observe(&plain(now, Answer::Accepted));
        }
        assert!(!learner.has_earned_burst());
        assert!(learner.open_earned_burst().is_empty());
        assert_eq!(learner.limit(Dimension::Requests).unwrap().burst, 1);
        // A stated burst (or none to earn) starts as configured.
        let mut learner = PaceLearner::new(PaceConfig {
            configured: [Some(spaced), None, None, None],
            ..config
        });
        assert_eq!(learner.earn_burst(), None);
    }
}
