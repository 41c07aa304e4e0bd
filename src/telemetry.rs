//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (`metrics` feature): any
//! exporter the application installs (Prometheus, StatsD, OpenTelemetry) receives them.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `reqwest_throttle_attempts_total` | counter | `host` | attempts sent (each retry counts) |
//! | `reqwest_throttle_retries_total` | counter | `host` | attempts after the first |
//! | `reqwest_throttle_rate_limited_total` | counter | `host` | answers that said "rate limited" (429, GitHub's 403) |
//! | `reqwest_throttle_refused_total` | counter | `host`, `reason` | requests the throttle refused (`would_wait`, `window_spent`, `saturated`, `cooling_down`, `cost_too_large`, `circuit_open`) |
//! | `reqwest_throttle_breaker_transitions_total` | counter | `host`, `to` | circuit-breaker state changes (`open`, `half-open`, `closed`) |
//! | `reqwest_throttle_wait_seconds` | histogram | `host` | time a request waited for its turn (rate, pause, concurrency) |
//! | `reqwest_throttle_attempt_seconds` | histogram | `host` | time from an attempt leaving the lane to its response head |
//! | `reqwest_throttle_in_flight` | gauge | `host` | requests in flight now ([`Throttle::record_metrics`]) |
//! | `reqwest_throttle_queued` | gauge | `host` | requests waiting for their turn now ([`Throttle::record_metrics`]) |
//! | `reqwest_throttle_shadowed_total` | counter | `host` | requests sent at once in shadow mode ([`rollout`](crate::rollout)) |
//! | `reqwest_throttle_shadow_would_wait_seconds` | histogram | `host` | what a shadowed request would have waited for its turn (rate, cooldown) |
//! | `reqwest_throttle_shadow_would_refuse_total` | counter | `host`, `reason` | shadowed requests the throttle would have refused (`would_wait`, `cooling_down`, `cost_too_large`, `circuit_open`) |
//! | `reqwest_throttle_shadow_would_queue_total` | counter | `host` | shadowed requests that found no free concurrency slot |
//! | `reqwest_throttle_shadow_would_retry_total` | counter | `host` | shadowed attempts the throttle would have retried |
//! | `reqwest_throttle_cooldowns_total` | counter | `host` | pauses set by server signals, over the lanes kept ([`Throttle::record_metrics`]) |
//! | `reqwest_throttle_clamped_reports_total` | counter | `host` | reported usages above what the limit admits at once ([`Throttle::record_metrics`]) |
//!
//! **Bounded labels**: a lane is labelled by its host only, never by its API key's fingerprint
//! or its model (the client's own text); the first [`MAX_HOST_LABELS`] hosts seen get their
//! own label, any later one is `other`, and a lane named by a key function of your own is
//! `custom`.
//!
//! [`Throttle::record_metrics`]: crate::Throttle::record_metrics

use tokio::time::Instant;

use crate::error::Error;
use crate::key::LaneKey;
use crate::rollout::Foresight;

/// How many distinct `host` labels are used before further hosts are labelled `other`.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub const MAX_HOST_LABELS: usize = 100;

/// What one request records, labelled once by its lane's host.
#[derive(Clone, Debug)]
pub(crate) struct RequestMetrics {
    #[cfg(feature = "metrics")]
    host: ::metrics::SharedString,
}

#[cfg(feature = "metrics")]
mod labels {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};

    use ::metrics::SharedString;

    use super::MAX_HOST_LABELS;
    use crate::key::LaneKey;

    /// The `host` label of a lane (see the module doc).
    pub(super) fn host(key: &LaneKey) -> SharedString {
        static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
        let Some(host) = key.host() else {
            return SharedString::const_str("custom");
        };
        let host = host.to_ascii_lowercase();
        // The set stays consistent even if a holder panicked: every update is one insert.
        let mut seen = SEEN
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if seen.contains(&host) || seen.len() < MAX_HOST_LABELS {
            seen.insert(host.clone());
            SharedString::from(host)
        } else {
            SharedString::const_str("other")
        }
    }
}

#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
impl RequestMetrics {
    /// The metrics of a request to the lane named `key`.
    pub(crate) fn for_lane(key: &LaneKey) -> RequestMetrics {
        RequestMetrics {
            #[cfg(feature = "metrics")]
            host: labels::host(key),
        }
    }

    /// The request, in line for its turn since `since`, was admitted: records the wait and
    /// returns when the attempt leaves (`None` without the `metrics` feature: no clock read).
    pub(crate) fn admitted(&self, since: Instant) -> Option<Instant> {
        #[cfg(feature = "metrics")]
        {
            let now = Instant::now();
            ::metrics::histogram!("reqwest_throttle_wait_seconds", "host" => self.host.clone())
                .record(now.saturating_duration_since(since).as_secs_f64());
            Some(now)
        }
        #[cfg(not(feature = "metrics"))]
        None
    }

    /// The throttle refused the request with `error`.
    pub(crate) fn refused(&self, error: &Error) {
        #[cfg(feature = "metrics")]
        {
            let reason = match error {
                Error::WouldWait { .. } => "would_wait",
                Error::WindowSpent { .. } => "window_spent",
                Error::Saturated { .. } => "saturated",
                Error::CoolingDown { .. } => "cooling_down",
                Error::CostTooLarge { .. } => "cost_too_large",
                Error::CircuitOpen { .. } => "circuit_open",
                _ => "other",
            };
            ::metrics::counter!(
                "reqwest_throttle_refused_total",
                "host" => self.host.clone(),
                "reason" => reason
            )
            .increment(1);
        }
    }

    /// Attempt number `attempt` (from 1), which left at `departed` (see
    /// [`admitted`](Self::admitted)), came back at `now`.
    pub(crate) fn attempted(
        &self,
        attempt: u32,
        departed: Option<Instant>,
        now: Instant,
        rate_limited: bool,
    ) {
        #[cfg(feature = "metrics")]
        {
            let host = &self.host;
            ::metrics::counter!("reqwest_throttle_attempts_total", "host" => host.clone())
                .increment(1);
            if attempt > 1 {
                ::metrics::counter!("reqwest_throttle_retries_total", "host" => host.clone())
                    .increment(1);
            }
            if rate_limited {
                ::metrics::counter!("reqwest_throttle_rate_limited_total", "host" => host.clone())
                    .increment(1);
            }
            if let Some(departed) = departed {
                ::metrics::histogram!("reqwest_throttle_attempt_seconds", "host" => host.clone())
                    .record(now.saturating_duration_since(departed).as_secs_f64());
            }
        }
    }
}

#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
impl RequestMetrics {
    /// A shadowed request was sent at once; `foresight` is what enforcing would have done.
    pub(crate) fn foreseen(&self, foresight: &Foresight) {
        #[cfg(feature = "metrics")]
        {
            let host = &self.host;
            ::metrics::counter!("reqwest_throttle_shadowed_total", "host" => host.clone())
                .increment(1);
            if let Some(wait) = foresight.wait {
                ::metrics::histogram!("reqwest_throttle_shadow_would_wait_seconds", "host" => host.clone())
                    .record(wait.as_secs_f64());
            }
            if let Some(reason) = foresight.refused {
                ::metrics::counter!(
                    "reqwest_throttle_shadow_would_refuse_total",
                    "host" => host.clone(),
                    "reason" => reason.as_str()
                )
                .increment(1);
            }
            if foresight.queued_for_slot {
                ::metrics::counter!("reqwest_throttle_shadow_would_queue_total", "host" => host.clone())
                    .increment(1);
            }
        }
    }

    /// The throttle would have retried a shadowed attempt.
    pub(crate) fn would_retry(&self) {
        #[cfg(feature = "metrics")]
        ::metrics::counter!("reqwest_throttle_shadow_would_retry_total", "host" => self.host.clone())
            .increment(1);
    }
}

/// A breaker of the lane named `key` entered `state`.
#[cfg(feature = "metrics")]
pub(crate) fn breaker_transition(key: &LaneKey, state: crate::breaker::BreakerState) {
    ::metrics::counter!(
        "reqwest_throttle_breaker_transitions_total",
        "host" => labels::host(key),
        "to" => state.to_string()
    )
    .increment(1);
}

/// The gauges and the counters kept per lane, summed by host label, from a stats snapshot.
#[cfg(feature = "metrics")]
pub(crate) fn record_snapshot(stats: &crate::stats::ThrottleStats) {
    use std::collections::HashMap;

    #[derive(Default)]
    struct Sums {
        in_flight: u64,
        queued: u64,
        cooldowns: u64,
        clamped_reports: u64,
    }
    let mut by_host: HashMap<::metrics::SharedString, Sums> = HashMap::new();
    for lane in &stats.lanes {
        let sums = by_host.entry(labels::host(&lane.key)).or_default();
        sums.in_flight = sums.in_flight.saturating_add(lane.in_flight);
        sums.queued = sums.queued.saturating_add(lane.queued);
        sums.cooldowns = sums.cooldowns.saturating_add(lane.cooldowns);
        sums.clamped_reports = sums.clamped_reports.saturating_add(lane.clamped_reports);
    }
    for (host, sums) in by_host {
        ::metrics::gauge!("reqwest_throttle_in_flight", "host" => host.clone())
            .set(sums.in_flight as f64);
        ::metrics::gauge!("reqwest_throttle_queued", "host" => host.clone())
            .set(sums.queued as f64);
        ::metrics::counter!("reqwest_throttle_cooldowns_total", "host" => host.clone())
            .absolute(sums.cooldowns);
        ::metrics::counter!("reqwest_throttle_clamped_reports_total", "host" => host)
            .absolute(sums.clamped_reports);
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn host_labels_are_bounded_and_never_carry_a_key() {
        let first = labels::host(&LaneKey::new("https://a0.example:443/gpt-4o/key:0a1b2c3d"));
        assert_eq!(&*first, "a0.example");
        let labelled: HashSet<String> = (0..2 * MAX_HOST_LABELS)
            .map(|n| labels::host(&LaneKey::new(format!("https://h{n}.example:443"))).to_string())
            .collect();
        assert!(labelled.contains("other"));
        assert!(labelled.len() <= MAX_HOST_LABELS + 1, "{}", labelled.len());
        // A host seen before keeps its label once the cap is reached.
        let again = labels::host(&LaneKey::new("https://a0.example:443/-/key:ffffffff"));
        assert_eq!(&*again, "a0.example");
        assert_eq!(&*labels::host(&LaneKey::new("tenant:acme")), "custom");
    }
}
