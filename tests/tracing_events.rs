//! Every decision of the throttle is a `tracing` event inside the request's span. In its own
//! test binary: tracing caches per-callsite interest process-wide.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{ClientBuilder, Middleware, Next};
use reqwest_throttle::Throttle;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// (message, fields) of each event, plus the names of the spans it was in.
type Seen = Vec<(String, Vec<(String, String)>, Vec<String>)>;

#[derive(Clone, Default)]
struct Events(Arc<Mutex<Seen>>);

struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

impl<S> Layer<S> for Events
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, context: Context<'_, S>) {
        if !event.metadata().target().starts_with("reqwest_throttle") {
            return;
        }
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        let message = fields
            .0
            .iter()
            .find(|(name, _)| name == "message")
            .map(|(_, value)| value.clone())
            .unwrap_or_default();
        let spans = context
            .event_scope(event)
            .map(|scope| scope.map(|span| span.name().to_owned()).collect())
            .unwrap_or_default();
        self.0.lock().unwrap().push((message, fields.0, spans));
    }
}

/// 429 with `Retry-After: 1` to the first request, 200 after.
#[derive(Clone, Default)]
struct FirstRefused(Arc<Mutex<u32>>);

#[async_trait::async_trait]
impl Middleware for FirstRefused {
    async fn handle(
        &self,
        _request: Request,
        _extensions: &mut Extensions,
        _next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let mut seen = self.0.lock().unwrap();
        *seen += 1;
        let status = if *seen == 1 { 429 } else { 200 };
        let response = http::Response::builder()
            .status(status)
            .header("retry-after", "1")
            .body("")
            .unwrap();
        Ok(Response::from(response))
    }
}

#[test]
fn cooldown_and_retry_are_events_in_the_request_span() {
    let events = Events::default();
    let subscriber = tracing_subscriber::registry().with(events.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            let client = ClientBuilder::new(reqwest::Client::new())
                .with(Throttle::builder().build().unwrap())
                .with(FirstRefused::default())
                .build();
            let response = client.get("http://api.test/").send().await.unwrap();
            assert_eq!(response.status(), 200);
        })
    });
    let events = events.0.lock().unwrap();
    let find = |message: &str| {
        events
            .iter()
            .find(|(m, _, _)| m == message)
            .unwrap_or_else(|| panic!("no {message:?} event in {events:#?}"))
    };
    let (_, cooldown, spans) = find("lane cooling down");
    assert!(
        cooldown.iter().any(|(n, v)| n == "pause_ms" && v == "1000"),
        "{cooldown:?}"
    );
    assert!(spans.iter().any(|s| s == "throttle"), "{spans:?}");
    let (_, retrying, spans) = find("retrying");
    assert!(
        retrying.iter().any(|(n, v)| n == "delay_ms" && v == "1000"),
        "{retrying:?}"
    );
    assert!(spans.iter().any(|s| s == "throttle"), "{spans:?}");
}
