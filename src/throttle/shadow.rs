//! A shadowed request's way through the throttle: sent at once and once, exactly as the bare
//! client would send it, with what the throttle would have done worked out and recorded.
//!
//! ```text
//! run_shadowed(req)
//!   (ticket, foresight) = lane.foresee(&cost, deadline)   breaker's verdict, would-have wait
//!                                                        (rate, cooldown), free slots; never waits
//!   resp = next.run(req)                                 within attempt_timeout, like any attempt
//!   a    = ticket.finish(&resp)                          the lane learns from the answer as usual
//!   lane.shadow_answered(&a)                             charged if the server took it uncharged;
//!                                                        would it have retried? recorded, not done
//!   return resp                                          whatever it is, as the bare client gets it
//! ```

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::Next;
use tokio::time::Instant;

use super::{inspect, timed_out, RequestPlan, Throttle};
use crate::rollout::Side;

impl Throttle {
    /// Sends a shadowed request once, at once, and records what enforcing would have done.
    pub(super) async fn run_shadowed(
        &self,
        plan: RequestPlan,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let (lane, metrics, mut retry) = (&plan.lane, &plan.metrics, plan.retry);
        let global = self.inner.global.as_ref();
        let (mut ticket, foresight) = lane.foresee(&plan.cost, plan.deadline, global, plan.started);
        metrics.foreseen(&foresight);
        let departed = metrics.admitted(plan.started);
        // Whether a retry could have resent it: only a streamed body cannot be cloned.
        let cloneable = request.body().is_none_or(|body| body.as_bytes().is_some());
        let (result, inspection) = send_attempt!(lane, ticket, request, extensions, next);
        let now = Instant::now();
        let assessment = ticket.finish(&result, inspection, now);
        metrics.attempted(1, departed, now, assessment.rate_limited);
        lane.rollout_attempted(Side::Shadowed, assessment.rate_limited);
        if lane
            .shadow_answered(
                &plan.cost,
                &foresight,
                &assessment,
                &mut retry,
                cloneable,
                now,
            )
            .is_some()
        {
            metrics.would_retry();
        }
        result
    }
}
