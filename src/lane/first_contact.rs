//! First contact: until a lane has heard its first answer, only one request is out.
//!
//! A lane that nothing configured learns its pace from the server's rate-limit headers, but only
//! once an answer brings them: sixteen callers starting together against an OpenAI-shaped API
//! with a burst of ten sent all sixteen and six were refused. With first contact on, the first
//! request goes alone and the others wait for its answer (at most the configured wait, so a slow
//! first answer, or one that never comes because its caller gave up, holds nobody for long);
//! they then book under what the answer taught. The cost is one round trip, once per lane.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::time::later;

const UNHEARD: u8 = 0;
const PROBING: u8 = 1;
const HEARD: u8 = 2;

/// Whether a lane has heard from its server yet, and who waits for it.
#[derive(Debug)]
pub(crate) struct FirstContact {
    /// How long a request waits for the first answer; `None`: first contact is off.
    wait: Option<Duration>,
    state: AtomicU8,
    heard: Notify,
}

impl FirstContact {
    /// First contact waiting at most `wait` (`None` or zero: off).
    pub(crate) fn new(wait: Option<Duration>) -> FirstContact {
        let wait = wait.filter(|wait| !wait.is_zero());
        FirstContact {
            wait,
            state: AtomicU8::new(if wait.is_some() { UNHEARD } else { HEARD }),
            heard: Notify::new(),
        }
    }

    /// Whether a request may go without taking a turn: first contact is off, or the lane has
    /// heard its server.
    pub(crate) fn is_clear(&self) -> bool {
        self.wait.is_none() || self.state.load(Ordering::Acquire) == HEARD
    }

    /// Returns at once for the lane's first request and once the lane has heard its server;
    /// otherwise when the first answer arrives, after the configured wait, or at `deadline`,
    /// whichever comes first. Never longer than the configured wait.
    pub(crate) async fn take_turn(&self, deadline: Option<Instant>) {
        let Some(wait) = self.wait else {
            return;
        };
        if self.state.load(Ordering::Acquire) == HEARD {
            return;
        }
        if self
            .state
            .compare_exchange(UNHEARD, PROBING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // This request is the first: it goes, and its answer releases the others.
            return;
        }
        let notified = self.heard.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.state.load(Ordering::Acquire) == HEARD {
            return;
        }
        let mut until = later(Instant::now(), wait);
        if let Some(deadline) = deadline {
            until = until.min(deadline);
        }
        if tokio::time::timeout_at(until, notified).await.is_err() {
            // Waited long enough for an answer that may never come: nobody waits again.
            self.heard();
        }
    }

    /// The lane heard from its server (an answer, or a transport error): everybody goes.
    pub(crate) fn heard(&self) {
        if self.state.swap(HEARD, Ordering::AcqRel) != HEARD {
            self.heard.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_first_request_goes_and_the_others_wait_for_its_answer() {
        let contact = Arc::new(FirstContact::new(Some(Duration::from_secs(1))));
        let start = Instant::now();
        contact.take_turn(None).await;
        let waiter = {
            let contact = Arc::clone(&contact);
            tokio::spawn(async move {
                contact.take_turn(None).await;
                Instant::now()
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        contact.heard();
        assert_eq!(waiter.await.unwrap() - start, Duration::from_millis(50));
        // Heard: nobody waits any more.
        contact.take_turn(None).await;
        assert_eq!(Instant::now() - start, Duration::from_millis(50));
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_that_never_comes_holds_the_others_only_the_wait() {
        let contact = FirstContact::new(Some(Duration::from_millis(300)));
        let start = Instant::now();
        contact.take_turn(None).await;
        contact.take_turn(None).await;
        assert_eq!(Instant::now() - start, Duration::from_millis(300));
        // After the wait the lane no longer waits for a first answer.
        contact.take_turn(None).await;
        assert_eq!(Instant::now() - start, Duration::from_millis(300));
        // A deadline shorter than the wait ends it sooner; off, nothing waits.
        let other = FirstContact::new(Some(Duration::from_secs(5)));
        other.take_turn(None).await;
        other
            .take_turn(Some(Instant::now() + Duration::from_millis(20)))
            .await;
        assert_eq!(Instant::now() - start, Duration::from_millis(320));
        let off = FirstContact::new(None);
        off.take_turn(None).await;
        off.take_turn(None).await;
        assert_eq!(Instant::now() - start, Duration::from_millis(320));
    }
}
