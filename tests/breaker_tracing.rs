//! Every breaker transition is a `tracing` event. In its own test binary: tracing caches
//! per-callsite interest process-wide, so a parallel test emitting the same event with no
//! subscriber could otherwise hide it from this test's thread-local subscriber.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use reqwest_throttle::breaker::{Breaker, BreakerConfig, Outcome};
use tokio::time::Instant;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// One event's fields, as (name, recorded value).
type EventFields = Vec<(String, String)>;

#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<EventFields>>>);

struct Fields(EventFields);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Events {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() == "reqwest_throttle::breaker" {
            let mut fields = Fields(Vec::new());
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
    }
}

#[test]
fn every_transition_emits_a_tracing_event() {
    let events = Events::default();
    let subscriber = tracing_subscriber::registry().with(events.clone());
    tracing::subscriber::with_default(subscriber, || {
        let breaker = Breaker::new(BreakerConfig::default().jitter(0.0).consecutive_failures(1));
        let now = Instant::now();
        let admission = breaker.admit(now).unwrap();
        breaker.record(admission, Outcome::Failure, now);
        let retry_in = breaker.admit(now).unwrap_err().retry_in;
        let now = now + retry_in;
        let probe = breaker.admit(now).unwrap();
        breaker.record(probe, Outcome::Success, now);
    });
    let events = events.0.lock().unwrap();
    let field = |event: &EventFields, name: &str| {
        event
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let summary: Vec<_> = events
        .iter()
        .map(|e| (field(e, "from"), field(e, "to"), field(e, "reason")))
        .collect();
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(
        summary,
        [
            (some("closed"), some("open"), some("1 consecutive failures")),
            (some("open"), some("half-open"), some("open period elapsed")),
            (
                some("half-open"),
                some("closed"),
                some("1 probes succeeded")
            ),
        ]
    );
    assert_eq!(field(&events[0], "open_for"), some("Some(5s)"));
}
