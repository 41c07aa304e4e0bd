//! A request's admitted attempt: [`Ticket::send`] sends it and reads what came back, once.
//!
//! The ticket is a guard: dropped at any point (the caller gave up) it gives back its
//! reservation, its concurrency slots, its in-flight counts and its breaker probe.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::Next;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::plan::Plan;
use super::Lane;
use crate::assess::{Assessment, Attempted};
use crate::breaker::Admission;
use crate::cost::{CostModel, Inspection, Settlement};
use crate::error::Error;
use crate::limiter::pace::{Answer, InFlight, Observation, Pause};
use crate::limiter::{Cost, Dimension};
use crate::retry::Attempt;
use crate::rollout::Side;
use crate::signals::Signals;
use crate::telemetry::RequestMetrics;

/// The concurrency slots a request holds while it is in flight.
pub(super) struct Permits {
    _lane: Option<OwnedSemaphorePermit>,
    _global: Option<OwnedSemaphorePermit>,
}

impl Permits {
    pub(super) fn new(
        lane: Option<OwnedSemaphorePermit>,
        global: Option<OwnedSemaphorePermit>,
    ) -> Permits {
        Permits {
            _lane: lane,
            _global: global,
        }
    }
}

/// A request's turn in its lane, from [`Lane::admit`] to [`Ticket::send`].
///
/// While it lives the request is counted in flight with its estimated cost and holds its
/// concurrency slots; dropped before its answer it gives everything back.
pub(crate) struct Ticket<'p> {
    lane: Arc<Lane>,
    cost: Cost,
    /// The estimate before correction (zero when not estimated).
    estimate: Cost,
    settlement: Option<Settlement>,
    /// The lane's budget was charged when the request left (always, unless it was shadowed
    /// and could not have left at once).
    charged: bool,
    admission: Option<Admission>,
    /// How many requests the lane had sent before this one.
    departure: u64,
    /// When the attempt was booked: its departure, unless it waited for its slot.
    booked: Instant,
    departed: Instant,
    permits: Option<Permits>,
    side: Side,
    attempt: u32,
    metrics: &'p RequestMetrics,
    /// When the attempt left, for the metrics (`None` without the `metrics` feature).
    timed: Option<Instant>,
    /// The `remaining` of each dimension the lane had last heard when the attempt left.
    remaining_before: [Option<u64>; Dimension::ALL.len()],
}

impl<'p> Ticket<'p> {
    /// The ticket of `plan`'s attempt, which booked `cost` and left as the lane's
    /// `departure`-th request at `departed`.
    pub(super) fn new(
        lane: Arc<Lane>,
        plan: &'p Plan<'_>,
        cost: Cost,
        settlement: Option<Settlement>,
        admission: Option<Admission>,
        (departure, departed): (u64, Instant),
        permits: Permits,
    ) -> Ticket<'p> {
        Ticket {
            cost,
            estimate: plan.estimate,
            charged: settlement.is_some(),
            settlement,
            admission,
            departure,
            booked: departed,
            departed,
            permits: Some(permits),
            side: plan.side,
            attempt: plan.attempt(),
            metrics: &plan.metrics,
            timed: None,
            remaining_before: lane.remaining_seen(),
            lane,
        }
    }

    /// When the attempt left the lane (got its turn).
    pub(crate) fn departed(&self) -> Instant {
        self.departed
    }

    /// This ticket, booked at `booked` (before it left): the pace a refusal answers is the one
    /// it was booked at.
    pub(super) fn booked_at(mut self, booked: Instant) -> Ticket<'p> {
        self.booked = booked.min(self.departed);
        self
    }

    /// This ticket with the instant its attempt left, as the metrics saw it.
    pub(super) fn timed(mut self, timed: Option<Instant>) -> Ticket<'p> {
        self.timed = timed;
        self.settlement = self
            .settlement
            .take()
            .map(|s| s.metered(self.metrics.booked(&self.cost)));
        self
    }

    /// Sends the attempt (within the policy's `attempt_timeout`, whose expiry is a transport
    /// failure), lets the policy's cost model read the answer and settle the booking, and reads
    /// what came back once: the lane's classifier makes the one [`Assessment`], and the
    /// counters, the pace learner and the breaker all act on it. Frees the request's slots.
    pub async fn send(
        mut self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> (reqwest_middleware::Result<Response>, Assessment) {
        let settlement = self.settlement.take();
        let model = self.lane.cost_model();
        let attempt = async {
            let result = next.run(request, extensions).await;
            inspect(result, settlement, model).await
        };
        let (result, inspection) = match self.lane.policy.attempt_timeout {
            None => attempt.await,
            Some(timeout) => tokio::time::timeout(timeout, attempt)
                .await
                .unwrap_or_else(|_| timed_out(&self.lane, timeout)),
        };
        let now = Instant::now();
        let assessment = self.finish(&result, inspection, now);
        (result, assessment)
    }

    fn finish(
        mut self,
        result: &reqwest_middleware::Result<Response>,
        inspection: Inspection,
        now: Instant,
    ) -> Assessment {
        let lane = Arc::clone(&self.lane);
        let (attempt, signals) = match result {
            Ok(response) => (
                Attempt::Status(response.status()),
                // The wall clock only turns HTTP-dates and epoch resets into delays.
                Signals::read_with_clock(response.headers(), SystemTime::now),
            ),
            Err(error) => (Attempt::of_error(error), Signals::default()),
        };
        let counter = match result {
            Ok(_) => &lane.counters.completed,
            Err(_) => &lane.counters.errors,
        };
        counter.fetch_add(1, Relaxed);
        let mut assessment = lane.classifier.assess(
            &Attempted::new(attempt, &signals)
                .with_inspection(inspection)
                .with_breaker(lane.policy.breaker.as_ref()),
        );
        if assessment.rate_limited {
            lane.counters.rate_limited.fetch_add(1, Relaxed);
        }
        if result.is_ok() {
            assessment.paced = self.learn(&lane, &assessment, &signals, now);
        }
        if lane.cost_model().is_some() {
            self.trace(&lane, &assessment, &signals);
        }
        // What this answer taught is learned: requests held for the lane's first answer go.
        lane.first_contact.heard();
        // Out of flight and out of its slots before the breaker hears of it.
        self.release();
        if let (Some(breaker), Some(admission)) = (lane.breaker.as_ref(), self.admission.take()) {
            breaker.record(admission, assessment.breaker, now);
        }
        self.metrics
            .attempted(self.attempt, self.timed, now, assessment.rate_limited);
        lane.rollout_attempted(self.side, assessment.rate_limited);
        assessment
    }

    /// The pace learner reads the answer; returns whether the lane paces itself (a refusal is
    /// then retried at the lane's pace).
    fn learn(&self, lane: &Lane, assessment: &Assessment, signals: &Signals, now: Instant) -> bool {
        // The server answered this request having seen those that left before it (it took them
        // in order); of the others still in flight, only those that left after it may be unseen.
        let sent_after = lane
            .counters
            .sent
            .load(Relaxed)
            .saturating_sub(self.departure.saturating_add(1));
        let others = lane.counters.in_flight.load(Relaxed).saturating_sub(1);
        let in_flight = InFlight {
            requests: 1 + others.min(sent_after),
            units: std::array::from_fn(|i| lane.in_flight_units[i].load(Relaxed)),
        };
        // A shadowed request was refused for a pace it was never held to: the refusal says
        // nothing of the lane's pace, only the server's announcements are learned.
        let (answer, pause) = if self.side == Side::Shadowed && assessment.rate_limited {
            (Answer::Other, None)
        } else {
            (assessment.answer, assessment.pause)
        };
        let observation = Observation {
            now,
            departed: self.departed,
            booked: self.booked,
            answer,
            pause,
            limits: signals.rate_limits.as_ref(),
            answered: std::array::from_fn(|i| self.cost.get(Dimension::ALL[i])),
            estimated: std::array::from_fn(|i| self.estimate.get(Dimension::ALL[i])),
            seq: self.departure,
            in_flight,
        };
        let mut pace = lane.pace();
        pace.set_fleet(lane.booker.fleet());
        // What another worker of the fleet learned first: a refusal that answers its decrease
        // is then not a congestion of its own.
        if let Some(shared) = lane.booker.cubic_news() {
            let actions = pace.adopt_cubic(shared, now);
            lane.apply(&pace, &actions);
        }
        let actions = pace.observe(&observation);
        if actions.is_empty() {
            // An answer that changed no limit may still have earned the burst.
            lane.note_earned_burst(&pace);
        } else {
            lane.apply(&pace, &actions);
        }
        if self.side == Side::Shadowed && answer == Answer::Accepted {
            lane.shadow_accepted(&self.cost, self.charged);
        }
        assessment.rate_limited && pace.is_pacing()
    }

    /// One line per attempt on a lane with a cost model, at debug level: what was estimated and
    /// booked, what the server said remained before and after (per dimension, indexed as
    /// [`Dimension::ALL`]: requests, tokens, input, output), and why it refused, if it did: the
    /// token dimension its refusal named, or `lane` when it named none.
    fn trace(&self, lane: &Lane, assessment: &Assessment, signals: &Signals) {
        let limits = signals.rate_limits.as_ref();
        let remaining_after: [Option<u64>; Dimension::ALL.len()] =
            limits.map_or([None; 4], |limits| {
                [
                    limits.requests,
                    limits.tokens,
                    limits.input_tokens,
                    limits.output_tokens,
                ]
                .map(|window| window.and_then(|window| window.remaining))
            });
        lane.note_remaining(&remaining_after);
        if !tracing::enabled!(target: "reqwest_throttle", tracing::Level::DEBUG) {
            return;
        }
        let per_dimension = |cost: &Cost| Dimension::ALL.map(|dimension| cost.get(dimension));
        let refusal = match (assessment.rate_limited, assessment.pause) {
            (false, _) => "none",
            (
                true,
                Some(Pause {
                    dimension: Some(dimension),
                    ..
                }),
            ) => dimension.name(),
            (true, _) => "lane",
        };
        tracing::debug!(
            target: "reqwest_throttle",
            lane = %lane.key,
            attempt = self.attempt,
            departure = self.departure,
            outcome = ?assessment.attempt,
            estimated = ?per_dimension(&self.estimate),
            booked = ?per_dimension(&self.cost),
            remaining_before = ?self.remaining_before,
            remaining_after = ?remaining_after,
            refusal,
            retry_after_ms = assessment.pause.map(|pause| pause.delay.as_millis() as u64),
            "attempt answered"
        );
    }

    fn release(&mut self) {
        if self.permits.take().is_some() {
            let lane = &self.lane;
            lane.counters.in_flight.fetch_sub(1, Relaxed);
            self.metrics.landed();
            for (dimension, units) in self.cost.iter() {
                lane.in_flight_units[dimension as usize].fetch_sub(units, Relaxed);
            }
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// An attempt abandoned at the policy's `attempt_timeout` (dropping it closes its connection):
/// a transport failure, assessed like any other.
fn timed_out(lane: &Lane, timeout: Duration) -> (reqwest_middleware::Result<Response>, Inspection) {
    tracing::info!(target: "reqwest_throttle", timeout_ms = timeout.as_millis() as u64, "attempt timed out");
    let error = Error::AttemptTimedOut {
        lane: lane.key().clone(),
        timeout,
    };
    (Err(error.into()), Inspection::NOTHING)
}

/// Lets the policy's cost model read the response and settle the booking; without a cost model
/// (or a response to read) the estimate stands.
async fn inspect(
    result: reqwest_middleware::Result<Response>,
    settlement: Option<Settlement>,
    model: Option<&Arc<dyn CostModel>>,
) -> (reqwest_middleware::Result<Response>, Inspection) {
    match (result, model, settlement) {
        (Ok(response), Some(model), Some(settlement)) => {
            let (response, inspection) = model.inspect(response, settlement).await;
            (Ok(response), inspection)
        }
        (result, _, _) => (result, Inspection::NOTHING),
    }
}
