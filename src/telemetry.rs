//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (`metrics` feature): any
//! exporter the application installs (Prometheus, StatsD, OpenTelemetry) receives them.
//!
//! Every figure is recorded at the moment it changes: counters are incremented when the event
//! happens (so they never fall, not even when a lane is evicted from the registry), and the
//! gauges move when a request enters or leaves the queue or flight. Nothing needs to be called
//! before a scrape. Each series is described (a `# HELP` line in Prometheus) with its unit by
//! [`describe`], which [`ThrottleBuilder::build`] calls.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `reqwest_throttle_attempts_total` | counter | `host` | attempts sent (each retry counts) |
//! | `reqwest_throttle_retries_total` | counter | `host` | attempts after the first |
//! | `reqwest_throttle_rate_limited_total` | counter | `host` | answers that said "rate limited" (429, GitHub's 403) |
//! | `reqwest_throttle_refused_total` | counter | `host`, `reason` | requests the throttle refused (`would_wait`, `window_spent`, `saturated`, `cooling_down`, `cost_too_large`, `circuit_open`) |
//! | `reqwest_throttle_breaker_transitions_total` | counter | `host`, `to` | circuit-breaker state changes (`open`, `half-open`, `closed`) |
//! | `reqwest_throttle_cooldowns_total` | counter | `host` | pauses of a whole lane (or one of its dimensions) set by server signals |
//! | `reqwest_throttle_clamped_reports_total` | counter | `host` | reported usages above what the limit admits at once, charged only up to it |
//! | `reqwest_throttle_booked_total` | counter | `host`, `dimension` | units booked by the attempts that left (`requests`, `tokens`, `input_tokens`, `output_tokens`) |
//! | `reqwest_throttle_charged_total` | counter | `host`, `dimension` | units finally charged for them: the usage a cost model reported (as charged), or the booking when nothing settled it |
//! | `reqwest_throttle_wait_seconds` | histogram | `host` | time a request waited for its turn (rate, pause, concurrency) |
//! | `reqwest_throttle_attempt_seconds` | histogram | `host` | time from an attempt leaving the lane to its response head |
//! | `reqwest_throttle_in_flight` | gauge | `host` | requests in flight now |
//! | `reqwest_throttle_queued` | gauge | `host` | requests waiting for their turn now |
//! | `reqwest_throttle_learned_limit` | gauge | `host`, `dimension` | the rate (units per second) a lane last learned from the server's headers or refusals; `+Inf` once it learned there is none |
//! | `reqwest_throttle_shadowed_total` | counter | `host` | requests sent at once in shadow mode ([`rollout`](crate::rollout)) |
//! | `reqwest_throttle_shadow_would_wait_seconds` | histogram | `host` | what a shadowed request would have waited for its turn (rate, cooldown) |
//! | `reqwest_throttle_shadow_would_refuse_total` | counter | `host`, `reason` | shadowed requests the throttle would have refused (`would_wait`, `cooling_down`, `cost_too_large`, `circuit_open`) |
//! | `reqwest_throttle_shadow_would_queue_total` | counter | `host` | shadowed requests that found no free concurrency slot |
//! | `reqwest_throttle_shadow_would_retry_total` | counter | `host` | shadowed attempts the throttle would have retried |
//! | `reqwest_throttle_store_round_trips_total` | counter | | calls to the shared store (feature `redis`) that came back with an answer |
//! | `reqwest_throttle_store_round_trip_seconds` | histogram | | time of each call to the store, answered or not (a call that timed out counts its timeout) |
//! | `reqwest_throttle_store_failures_total` | counter | | calls to the store that failed or timed out |
//! | `reqwest_throttle_store_fallbacks_total` | counter | | bookings made in this process's fallback budget because the store was down |
//! | `reqwest_throttle_store_up` | gauge | | 1 while the store answers, 0 while it is down |
//!
//! **Bounded labels**: a lane is labelled by its host only, never by its API key's fingerprint
//! or its model (the client's own text); the first [`MAX_HOST_LABELS`] hosts seen get their
//! own label, any later one is `other`, and a lane named by a key function of your own is
//! `custom`. Several lanes of one host (one per API key or model) add up in its series; the
//! `learned_limit` gauge shows the latest any of them learned.
//!
//! [`ThrottleBuilder::build`]: crate::ThrottleBuilder::build

use tokio::time::Instant;

use crate::error::Error;
use crate::key::LaneKey;
use crate::limiter::{Cost, Dimension, Limit};
use crate::rollout::Foresight;

/// How many distinct `host` labels are used before further hosts are labelled `other`.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub const MAX_HOST_LABELS: usize = 100;

/// The kind of a series, for its description.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One series the throttle records: its name, kind, unit and help text (the module doc's table
/// says the same, and a test holds them together).
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
struct Series {
    name: &'static str,
    kind: Kind,
    /// `None`: a count.
    unit: Option<Unit>,
    help: &'static str,
}

/// The unit of a series, as the `metrics` facade names them.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
#[derive(Clone, Copy, Debug)]
enum Unit {
    Seconds,
    PerSecond,
}

macro_rules! series {
    ($($name:literal, $kind:ident, $unit:expr, $help:literal;)*) => {
        &[$(Series { name: $name, kind: Kind::$kind, unit: $unit, help: $help }),*]
    };
}

/// Every series, described once by [`describe`].
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
const SERIES: &[Series] = series![
    "reqwest_throttle_attempts_total", Counter, None,
        "Attempts sent (each retry counts).";
    "reqwest_throttle_retries_total", Counter, None,
        "Attempts after the first.";
    "reqwest_throttle_rate_limited_total", Counter, None,
        "Answers that said rate limited (429, GitHub's 403).";
    "reqwest_throttle_refused_total", Counter, None,
        "Requests the throttle refused, by reason.";
    "reqwest_throttle_breaker_transitions_total", Counter, None,
        "Circuit-breaker state changes, by the state entered.";
    "reqwest_throttle_cooldowns_total", Counter, None,
        "Pauses of a lane set by server signals (Retry-After, reset headers, refusals).";
    "reqwest_throttle_clamped_reports_total", Counter, None,
        "Reported usages above what the limit admits at once, charged only up to it.";
    "reqwest_throttle_booked_total", Counter, None,
        "Units booked by the attempts that left, by dimension.";
    "reqwest_throttle_charged_total", Counter, None,
        "Units finally charged for the attempts that left (reported usage, or the booking), by dimension.";
    "reqwest_throttle_wait_seconds", Histogram, Some(Unit::Seconds),
        "Time a request waited for its turn (rate, pause, concurrency).";
    "reqwest_throttle_attempt_seconds", Histogram, Some(Unit::Seconds),
        "Time from an attempt leaving the lane to its response head.";
    "reqwest_throttle_in_flight", Gauge, None,
        "Requests in flight now.";
    "reqwest_throttle_queued", Gauge, None,
        "Requests waiting for their turn now.";
    "reqwest_throttle_learned_limit", Gauge, Some(Unit::PerSecond),
        "Rate (units per second) a lane last learned from the server, by dimension; +Inf: none.";
    "reqwest_throttle_shadowed_total", Counter, None,
        "Requests sent at once in shadow mode.";
    "reqwest_throttle_shadow_would_wait_seconds", Histogram, Some(Unit::Seconds),
        "What a shadowed request would have waited for its turn.";
    "reqwest_throttle_shadow_would_refuse_total", Counter, None,
        "Shadowed requests the throttle would have refused, by reason.";
    "reqwest_throttle_shadow_would_queue_total", Counter, None,
        "Shadowed requests that found no free concurrency slot.";
    "reqwest_throttle_shadow_would_retry_total", Counter, None,
        "Shadowed attempts the throttle would have retried.";
    "reqwest_throttle_store_round_trips_total", Counter, None,
        "Calls to the shared store that came back with an answer.";
    "reqwest_throttle_store_round_trip_seconds", Histogram, Some(Unit::Seconds),
        "Time of each call to the shared store, answered or not.";
    "reqwest_throttle_store_failures_total", Counter, None,
        "Calls to the shared store that failed or timed out.";
    "reqwest_throttle_store_fallbacks_total", Counter, None,
        "Bookings made in this process's fallback budget because the store was down.";
    "reqwest_throttle_store_up", Gauge, None,
        "1 while the shared store answers, 0 while it is down.";
];

/// Registers the description and unit of every series with the installed recorder (a
/// Prometheus exporter writes them as `# HELP` lines). Building a throttle does it; call it
/// yourself only if you install the recorder after building your throttles. Calling it again
/// changes nothing.
///
/// ```
/// reqwest_throttle::telemetry::describe();
/// ```
pub fn describe() {
    #[cfg(feature = "metrics")]
    for series in SERIES {
        let unit = match series.unit {
            None => ::metrics::Unit::Count,
            Some(Unit::Seconds) => ::metrics::Unit::Seconds,
            Some(Unit::PerSecond) => ::metrics::Unit::CountPerSecond,
        };
        match series.kind {
            Kind::Counter => ::metrics::describe_counter!(series.name, unit, series.help),
            Kind::Gauge => ::metrics::describe_gauge!(series.name, unit, series.help),
            Kind::Histogram => ::metrics::describe_histogram!(series.name, unit, series.help),
        }
    }
}

/// The `dimension` label of `dimension`.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
fn dimension_label(dimension: Dimension) -> &'static str {
    match dimension {
        Dimension::Requests => "requests",
        Dimension::Tokens => "tokens",
        Dimension::InputTokens => "input_tokens",
        Dimension::OutputTokens => "output_tokens",
    }
}

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

/// A gauge counted up while this lives: dropped at any point (the request was cancelled), it
/// counts down again. Without the `metrics` feature it is nothing.
#[must_use]
pub(crate) struct Held {
    #[cfg(feature = "metrics")]
    gauge: ::metrics::Gauge,
}

#[cfg(feature = "metrics")]
impl Drop for Held {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

/// The units an attempt booked, until their charge is known: a [`Settlement`] carries it, and
/// records what was charged when it is settled, or the booking itself when it is dropped
/// unsettled (the estimate stands). Without the `metrics` feature it is nothing.
///
/// [`Settlement`]: crate::cost::Settlement
#[derive(Debug, Default)]
pub(crate) struct Meter {
    #[cfg(feature = "metrics")]
    booked: Option<(::metrics::SharedString, Cost)>,
}

#[cfg_attr(not(feature = "metrics"), allow(unused_variables, unused_mut))]
impl Meter {
    /// The booking was settled: `charged` units were charged, and the report was `clamped`
    /// to what one answer can use.
    pub(crate) fn settled(mut self, charged: &Cost, clamped: bool) {
        #[cfg(feature = "metrics")]
        if let Some((host, _)) = self.booked.take() {
            record_units("reqwest_throttle_charged_total", &host, charged);
            if clamped {
                ::metrics::counter!("reqwest_throttle_clamped_reports_total", "host" => host)
                    .increment(1);
            }
        }
    }
}

#[cfg(feature = "metrics")]
impl Drop for Meter {
    fn drop(&mut self) {
        if let Some((host, booked)) = self.booked.take() {
            record_units("reqwest_throttle_charged_total", &host, &booked);
        }
    }
}

/// The most one attempt adds to a counter of units: no answer uses four billion tokens, and a
/// report of `u64::MAX` (garbage, or hostile) must not wrap the counter round to a fall.
#[cfg(feature = "metrics")]
const MOST_UNITS_PER_ATTEMPT: u64 = u32::MAX as u64;

/// Adds each dimension of `cost` to the counter `name` of `host`.
#[cfg(feature = "metrics")]
fn record_units(name: &'static str, host: &::metrics::SharedString, cost: &Cost) {
    for (dimension, units) in cost.iter() {
        ::metrics::counter!(name, "host" => host.clone(), "dimension" => dimension_label(dimension))
            .increment(units.min(MOST_UNITS_PER_ATTEMPT));
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

    /// The request waits for its turn while the guard lives.
    pub(crate) fn queued(&self) -> Held {
        Held {
            #[cfg(feature = "metrics")]
            gauge: hold(::metrics::gauge!("reqwest_throttle_queued", "host" => self.host.clone())),
        }
    }

    /// An attempt left: it is in flight until [`landed`](Self::landed).
    pub(crate) fn took_off(&self) {
        #[cfg(feature = "metrics")]
        ::metrics::gauge!("reqwest_throttle_in_flight", "host" => self.host.clone()).increment(1.0);
    }

    /// An attempt that [took off](Self::took_off) is no longer in flight (answered, failed or
    /// dropped).
    pub(crate) fn landed(&self) {
        #[cfg(feature = "metrics")]
        ::metrics::gauge!("reqwest_throttle_in_flight", "host" => self.host.clone()).decrement(1.0);
    }

    /// An attempt left having booked `booked`: records it, and returns what records its charge.
    pub(crate) fn booked(&self, booked: &Cost) -> Meter {
        #[cfg(feature = "metrics")]
        {
            record_units("reqwest_throttle_booked_total", &self.host, booked);
            Meter {
                booked: Some((self.host.clone(), *booked)),
            }
        }
        #[cfg(not(feature = "metrics"))]
        Meter::default()
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

/// `gauge`, counted up by one.
#[cfg(feature = "metrics")]
fn hold(gauge: ::metrics::Gauge) -> ::metrics::Gauge {
    gauge.increment(1.0);
    gauge
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

/// The lane named `key` paused for a server signal.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn cooled_down(key: &LaneKey) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!("reqwest_throttle_cooldowns_total", "host" => labels::host(key))
        .increment(1);
}

/// The lane named `key` learned `limit` for `dimension` (`None`: it has none).
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn learned_limit(key: &LaneKey, dimension: Dimension, limit: Option<Limit>) {
    #[cfg(feature = "metrics")]
    {
        let per_second = limit.map_or(f64::INFINITY, |limit| {
            1.0 / limit.interval.as_secs_f64().max(f64::MIN_POSITIVE)
        });
        ::metrics::gauge!(
            "reqwest_throttle_learned_limit",
            "host" => labels::host(key),
            "dimension" => dimension_label(dimension)
        )
        .set(per_second);
    }
}

/// A call to the shared store, timed while this lives (made by
/// [`store_call`]). Without the `metrics` feature it is nothing, and reads no clock.
#[cfg(feature = "redis")]
#[must_use]
pub(crate) struct StoreCall {
    #[cfg(feature = "metrics")]
    started: Instant,
}

/// A call to the shared store starts: its time is recorded when the guard drops, however the
/// call ended.
#[cfg(feature = "redis")]
pub(crate) fn store_call() -> StoreCall {
    StoreCall {
        #[cfg(feature = "metrics")]
        started: Instant::now(),
    }
}

#[cfg(all(feature = "metrics", feature = "redis"))]
impl Drop for StoreCall {
    fn drop(&mut self) {
        ::metrics::histogram!("reqwest_throttle_store_round_trip_seconds")
            .record(self.started.elapsed().as_secs_f64());
    }
}

/// The shared store answered a call.
#[cfg(feature = "redis")]
pub(crate) fn store_answered() {
    #[cfg(feature = "metrics")]
    {
        ::metrics::counter!("reqwest_throttle_store_round_trips_total").increment(1);
        ::metrics::gauge!("reqwest_throttle_store_up").set(1.0);
    }
}

/// A call to the shared store failed or timed out.
#[cfg(feature = "redis")]
pub(crate) fn store_failed() {
    #[cfg(feature = "metrics")]
    {
        ::metrics::counter!("reqwest_throttle_store_failures_total").increment(1);
        ::metrics::gauge!("reqwest_throttle_store_up").set(0.0);
    }
}

/// A booking went to the fallback budget because the store was down.
#[cfg(feature = "redis")]
pub(crate) fn store_fell_back() {
    #[cfg(feature = "metrics")]
    ::metrics::counter!("reqwest_throttle_store_fallbacks_total").increment(1);
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use std::collections::{BTreeSet, HashSet};

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

    /// The module doc's table and the described series are the same list, kind for kind.
    #[test]
    fn the_documented_table_is_what_is_described() {
        let documented: BTreeSet<(String, String)> = include_str!("telemetry.rs")
            .lines()
            .filter_map(|line| {
                let mut cells = line.strip_prefix("//! | `")?.split(" | ");
                let name = cells.next()?.strip_suffix('`')?;
                Some((name.to_owned(), cells.next()?.to_owned()))
            })
            .collect();
        let described: BTreeSet<(String, String)> = SERIES
            .iter()
            .map(|series| {
                let kind = match series.kind {
                    Kind::Counter => "counter",
                    Kind::Gauge => "gauge",
                    Kind::Histogram => "histogram",
                };
                (series.name.to_owned(), kind.to_owned())
            })
            .collect();
        assert_eq!(documented, described);
        for series in SERIES {
            assert_eq!(
                series.name.ends_with("_total"),
                series.kind == Kind::Counter,
                "{}: counters, and only they, end in _total",
                series.name
            );
            assert!(!series.help.is_empty());
        }
    }
}
