//! Behaviour of the simulated API (`reqwest_throttle::sim`) through its public interface:
//! as a terminal middleware (no sockets) and as a loopback server, always in virtual time.

use std::error::Error as StdError;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Extensions, StatusCode};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use reqwest_throttle::sim::{
    HeaderStyle, Outage, Outcome, RetryAfterStyle, SimulatedApi, SimulatedApiBuilder,
};
use tokio::time::{advance, Instant};

type TestResult = Result<(), Box<dyn StdError>>;

const URL: &str = "http://api.test/v1/things";

fn client(api: &SimulatedApi) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(api.clone())
        .build()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

fn number(response: &reqwest::Response, name: &str) -> Option<u64> {
    header(response, name).and_then(|v| v.parse().ok())
}

/// Seconds between a wall-clock header value and the response's own `Date`.
fn secs_after_date(response: &reqwest::Response, at: SystemTime) -> Option<i64> {
    let date = httpdate::parse_http_date(header(response, "date")?).ok()?;
    let signed = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs() as i64)
    };
    Some(signed(at)? - signed(date)?)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`),
/// written independently of the crate's formatter to check its RFC 3339 output.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn parse_rfc3339_utc(value: &str) -> Option<SystemTime> {
    let (date, time) = value.strip_suffix('Z')?.split_once('T')?;
    let date: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let time: Vec<u64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let (&[year, month, day], &[hours, minutes, seconds]) = (date.as_slice(), time.as_slice())
    else {
        return None;
    };
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(days * 86_400 + hours * 3600 + minutes * 60 + seconds))
}

/// A middleware placed after the simulated API: it must never run.
struct CountIfReached(Arc<AtomicU64>);

#[async_trait::async_trait]
impl Middleware for CountIfReached {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        self.0.fetch_add(1, Ordering::SeqCst);
        next.run(req, extensions).await
    }
}

#[tokio::test(start_paused = true)]
async fn fixed_window_admits_exactly_n_per_window_then_429_with_retry_after() -> TestResult {
    for (limit, per_secs) in [(1u64, 1u64), (5, 10), (100, 60)] {
        let per = Duration::from_secs(per_secs);
        let api = SimulatedApi::builder().limit(limit, per).build();
        let client = client(&api);
        let opened = Instant::now();
        for _ in 0..limit {
            assert_eq!(client.get(URL).send().await?.status(), StatusCode::OK);
        }
        // Late in the window: the hint is the time left, rounded up to whole seconds.
        advance(per / 4 + Duration::from_millis(1)).await;
        for _ in 0..3 {
            let refused = client.get(URL).send().await?;
            assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
            let left = per.saturating_sub(opened.elapsed());
            let expected = left.as_nanos().div_ceil(1_000_000_000) as u64;
            assert_eq!(
                number(&refused, "retry-after"),
                Some(expected),
                "{limit}/{per:?}"
            );
        }
        // Just before the window ends: still refused; at its end: a new window.
        tokio::time::sleep_until(opened + per - Duration::from_millis(1)).await;
        assert_eq!(client.get(URL).send().await?.status(), 429);
        tokio::time::sleep_until(opened + per).await;
        for _ in 0..limit {
            assert_eq!(client.get(URL).send().await?.status(), StatusCode::OK);
        }
        assert_eq!(client.get(URL).send().await?.status(), 429);

        let stats = api.stats();
        assert_eq!(stats.ok, 2 * limit);
        assert_eq!(stats.limited, 5);
        assert_eq!(stats.received, stats.ok + stats.limited);
        assert_eq!((stats.failed, stats.refused, stats.in_flight), (0, 0, 0));
        assert_eq!(stats.first_request, Some(opened));
        assert_eq!(stats.elapsed(), per);
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn the_window_opens_with_the_first_request_after_the_previous_one_ended() -> TestResult {
    let api = SimulatedApi::builder()
        .limit(2, Duration::from_secs(10))
        .headers(HeaderStyle::OpenAi)
        .build();
    let client = client(&api);
    advance(Duration::from_secs(7)).await; // idle time before the first request counts for nothing
    let first = client.get(URL).send().await?;
    assert_eq!(header(&first, "x-ratelimit-reset-requests"), Some("10s"));
    advance(Duration::from_secs(25)).await; // two idle windows later
    let fresh = client.get(URL).send().await?;
    assert_eq!(header(&fresh, "x-ratelimit-reset-requests"), Some("10s"));
    assert_eq!(number(&fresh, "x-ratelimit-remaining-requests"), Some(1));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn openai_headers_count_down_and_announce_the_reset_as_a_go_duration() -> TestResult {
    let api = SimulatedApi::builder()
        .limit(100, Duration::from_secs(10))
        .headers(HeaderStyle::OpenAi)
        .retry_after(RetryAfterStyle::Millis)
        .build();
    let client = client(&api);
    let mut resets = Vec::new();
    for sent in 1..=100u64 {
        let response = client.get(URL).send().await?;
        assert_eq!(response.status(), 200);
        assert_eq!(number(&response, "x-ratelimit-limit-requests"), Some(100));
        assert_eq!(
            number(&response, "x-ratelimit-remaining-requests"),
            Some(100 - sent)
        );
        if sent == 1 || sent == 50 || sent == 100 {
            resets.push(header(&response, "x-ratelimit-reset-requests").map(str::to_owned));
        }
        // 100 requests spread over 9.983 s of the window.
        if sent == 1 {
            advance(Duration::from_millis(3500)).await;
        } else if sent == 50 {
            advance(Duration::from_millis(6483)).await;
        }
    }
    let expected = ["10s", "6.5s", "17ms"].map(|s| Some(s.to_owned()));
    assert_eq!(resets, expected);

    let limited = client.get(URL).send().await?;
    assert_eq!(limited.status(), 429);
    assert_eq!(number(&limited, "x-ratelimit-remaining-requests"), Some(0));
    assert_eq!(number(&limited, "retry-after-ms"), Some(17));
    assert_eq!(header(&limited, "retry-after"), None);
    let body: serde_json::Value = limited.json().await?;
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["type"], "requests");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn retry_after_comes_in_every_style() -> TestResult {
    let window = Duration::from_secs(10);
    for style in [
        RetryAfterStyle::None,
        RetryAfterStyle::Seconds,
        RetryAfterStyle::Millis,
        RetryAfterStyle::HttpDate,
    ] {
        let api = SimulatedApi::builder()
            .limit(1, window)
            .retry_after(style)
            .build();
        let client = client(&api);
        assert_eq!(client.get(URL).send().await?.status(), 200);
        advance(Duration::from_millis(3500)).await;
        let limited = client.get(URL).send().await?;
        assert_eq!(limited.status(), 429);
        let (seconds, millis) = (
            header(&limited, "retry-after"),
            number(&limited, "retry-after-ms"),
        );
        match style {
            RetryAfterStyle::None => assert_eq!((seconds, millis), (None, None)),
            RetryAfterStyle::Seconds => assert_eq!((seconds, millis), (Some("7"), None)),
            RetryAfterStyle::Millis => assert_eq!((seconds, millis), (None, Some(6500))),
            RetryAfterStyle::HttpDate => {
                let at = httpdate::parse_http_date(seconds.unwrap_or_default())?;
                // Rounded up against a `Date` that is truncated: 6.5 s reads as 7 or 8.
                let delta = secs_after_date(&limited, at);
                assert!(matches!(delta, Some(7..=8)), "{delta:?}");
                assert_eq!(millis, None);
            }
            _ => unreachable!("a style this test does not know"),
        }
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn github_style_answers_403_with_epoch_reset_and_used_count() -> TestResult {
    let api = SimulatedApi::builder()
        .limit(3, Duration::from_secs(60))
        .headers(HeaderStyle::GitHub)
        .limited_status(StatusCode::FORBIDDEN)
        .retry_after(RetryAfterStyle::None)
        .build();
    let client = client(&api);
    for used in 1..=3u64 {
        let response = client.get(URL).send().await?;
        assert_eq!(response.status(), 200);
        assert_eq!(number(&response, "x-ratelimit-limit"), Some(3));
        assert_eq!(number(&response, "x-ratelimit-used"), Some(used));
        assert_eq!(number(&response, "x-ratelimit-remaining"), Some(3 - used));
        assert_eq!(header(&response, "x-ratelimit-resource"), Some("core"));
        advance(Duration::from_secs(10)).await;
    }
    let limited = client.get(URL).send().await?;
    assert_eq!(limited.status(), StatusCode::FORBIDDEN);
    assert_eq!(number(&limited, "x-ratelimit-remaining"), Some(0));
    assert_eq!(number(&limited, "x-ratelimit-used"), Some(3));
    assert_eq!(header(&limited, "retry-after"), None);
    // 30 s of the window left: the epoch reset is 30 or 31 s after `Date`.
    let reset = number(&limited, "x-ratelimit-reset").ok_or("no x-ratelimit-reset")?;
    let delta = secs_after_date(&limited, UNIX_EPOCH + Duration::from_secs(reset));
    assert!(matches!(delta, Some(30..=31)), "{delta:?}");
    assert_eq!(api.stats().limited, 1);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn ietf_structured_fields_announce_policy_and_remaining() -> TestResult {
    let api = SimulatedApi::builder()
        .limit(100, Duration::from_secs(10))
        .headers(HeaderStyle::Ietf)
        .build();
    let client = client(&api);
    for sent in 1..=43u64 {
        let response = client.get(URL).send().await?;
        assert_eq!(
            header(&response, "ratelimit-policy"),
            Some("\"default\";q=100;w=10")
        );
        if sent == 43 {
            assert_eq!(header(&response, "ratelimit"), Some("\"default\";r=57;t=4"));
        }
        if sent == 1 {
            assert_eq!(
                header(&response, "ratelimit"),
                Some("\"default\";r=99;t=10")
            );
            advance(Duration::from_millis(6200)).await;
        }
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn ietf_legacy_trio_counts_down() -> TestResult {
    let api = SimulatedApi::builder()
        .limit(2, Duration::from_secs(5))
        .headers(HeaderStyle::IetfLegacy)
        .build();
    let client = client(&api);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let response = client.get(URL).send().await?;
        seen.push((
            response.status().as_u16(),
            number(&response, "ratelimit-limit"),
            number(&response, "ratelimit-remaining"),
            number(&response, "ratelimit-reset"),
        ));
        advance(Duration::from_millis(1500)).await;
    }
    let expected = [
        (200, Some(2), Some(1), Some(5)),
        (200, Some(2), Some(0), Some(4)),
        (429, Some(2), Some(0), Some(2)),
    ];
    assert_eq!(seen, expected);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn anthropic_style_announces_an_rfc3339_reset() -> TestResult {
    let api = SimulatedApi::builder()
        .limit(50, Duration::from_secs(60))
        .headers(HeaderStyle::Anthropic)
        .build();
    let client = client(&api);
    let first = client.get(URL).send().await?;
    assert_eq!(
        number(&first, "anthropic-ratelimit-requests-limit"),
        Some(50)
    );
    assert_eq!(
        number(&first, "anthropic-ratelimit-requests-remaining"),
        Some(49)
    );
    advance(Duration::from_secs(15)).await;
    let second = client.get(URL).send().await?;
    assert_eq!(
        number(&second, "anthropic-ratelimit-requests-remaining"),
        Some(48)
    );
    let reset = header(&second, "anthropic-ratelimit-requests-reset").ok_or("no reset")?;
    let reset = parse_rfc3339_utc(reset).ok_or("reset is not RFC 3339 UTC")?;
    let delta = secs_after_date(&second, reset);
    assert!(matches!(delta, Some(45..=46)), "{delta:?}");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn token_bucket_admits_the_burst_then_the_rate() -> TestResult {
    let (rate, burst) = (2.0, 4u64);
    let api = SimulatedApi::builder()
        .token_bucket(rate, burst)
        .headers(HeaderStyle::OpenAi)
        .retry_after(RetryAfterStyle::Millis)
        .build();
    let client = client(&api);
    for remaining in (0..burst).rev() {
        let response = client.get(URL).send().await?;
        assert_eq!(response.status(), 200);
        assert_eq!(
            number(&response, "x-ratelimit-remaining-requests"),
            Some(remaining)
        );
    }
    let limited = client.get(URL).send().await?;
    assert_eq!(limited.status(), 429);
    assert_eq!(number(&limited, "retry-after-ms"), Some(500));
    // The reset is the time to refill the whole bucket.
    assert_eq!(header(&limited, "x-ratelimit-reset-requests"), Some("2s"));
    advance(Duration::from_millis(500)).await;
    assert_eq!(client.get(URL).send().await?.status(), 200);
    assert_eq!(client.get(URL).send().await?.status(), 429);

    // Under a steady overload (10 requests/s), the admitted count follows the rate.
    let start = Instant::now();
    let before = api.stats().ok;
    for _ in 0..100 {
        advance(Duration::from_millis(100)).await;
        client.get(URL).send().await?;
    }
    let admitted = api.stats().ok - before;
    let elapsed = start.elapsed().as_secs_f64();
    assert!(
        admitted as f64 <= rate * elapsed + 1.0,
        "{admitted} in {elapsed}s"
    );
    assert!(
        admitted as f64 >= rate * elapsed - 1.0,
        "{admitted} in {elapsed}s"
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn concurrent_requests_are_counted_once_each() -> TestResult {
    let api = SimulatedApi::builder()
        .limit(20, Duration::from_secs(10))
        .latency(Duration::from_millis(100))
        .build();
    let client = client(&api);
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.get(format!("{URL}?task={i}")).send().await })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await??.status().as_u16());
    }
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 20);
    assert_eq!(statuses.iter().filter(|&&s| s == 429).count(), 30);

    let stats = api.stats();
    assert_eq!((stats.received, stats.ok, stats.limited), (50, 20, 30));
    assert_eq!(
        stats.max_in_flight, 50,
        "all 50 were in their latency at once"
    );
    assert_eq!(stats.in_flight, 0);
    let log = api.requests();
    let mut seqs: Vec<u64> = log.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    assert_eq!(log.iter().filter(|r| r.outcome == Outcome::Ok).count(), 20);
    assert!(log.iter().all(|r| r.path.starts_with("/v1/things?task=")));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn answers_carry_a_json_body_the_request_url_and_a_date() -> TestResult {
    let api = SimulatedApi::builder().build();
    let client = client(&api);
    for expected_id in 1..=3u64 {
        let response = client
            .post("http://any.host.test:8443/a/b?c=d")
            .body("{}")
            .send()
            .await?;
        assert_eq!(response.url().as_str(), "http://any.host.test:8443/a/b?c=d");
        assert_eq!(header(&response, "content-type"), Some("application/json"));
        assert!(httpdate::parse_http_date(header(&response, "date").unwrap_or("")).is_ok());
        let body: serde_json::Value = response.json().await?;
        assert_eq!(body["id"], expected_id);
    }
    let log = api.requests();
    assert_eq!(log.len(), 3);
    assert!(log
        .iter()
        .all(|r| r.method == http::Method::POST && r.path == "/a/b?c=d"));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn the_simulated_api_is_terminal_and_never_calls_next() -> TestResult {
    let reached = Arc::new(AtomicU64::new(0));
    let api = SimulatedApi::builder().build();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(api.clone())
        .with(CountIfReached(reached.clone()))
        .build();
    for _ in 0..5 {
        assert_eq!(client.get(URL).send().await?.status(), 200);
    }
    assert_eq!(reached.load(Ordering::SeqCst), 0);
    assert_eq!(api.stats().ok, 5);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn outages_in_middleware_mode_fail_without_charging_the_limit() -> TestResult {
    let api = SimulatedApi::builder()
        .limit(2, Duration::from_secs(10))
        .retry_after(RetryAfterStyle::None)
        .build();
    let client = client(&api);

    api.set_outage(Some(Outage::Status(StatusCode::SERVICE_UNAVAILABLE)));
    let down = client.get(URL).send().await?;
    assert_eq!(down.status(), 503);
    assert_eq!(header(&down, "retry-after"), None);
    let body: serde_json::Value = down.json().await?;
    assert_eq!(body["error"]["code"], 503);

    api.set_outage(Some(Outage::StatusWithRetryAfter(
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_millis(4200),
    )));
    let hinted = client.get(URL).send().await?;
    assert_eq!(hinted.status(), 503);
    assert_eq!(header(&hinted, "retry-after"), Some("5"));

    for (outage, kind) in [
        (Outage::Refuse, io::ErrorKind::ConnectionRefused),
        (Outage::Hangup, io::ErrorKind::ConnectionReset),
    ] {
        api.set_outage(Some(outage));
        assert_eq!(api.outage(), Some(outage));
        let error = client
            .get(URL)
            .send()
            .await
            .err()
            .ok_or("expected an error")?;
        let io_error = match &error {
            reqwest_middleware::Error::Middleware(e) => e.downcast_ref::<io::Error>(),
            reqwest_middleware::Error::Reqwest(_) => None,
        };
        assert_eq!(io_error.map(io::Error::kind), Some(kind), "{error}");
    }

    api.set_outage(None);
    // The outage consumed nothing: the whole limit is still there.
    assert_eq!(client.get(URL).send().await?.status(), 200);
    assert_eq!(client.get(URL).send().await?.status(), 200);
    assert_eq!(client.get(URL).send().await?.status(), 429);
    let stats = api.stats();
    assert_eq!(
        (
            stats.received,
            stats.ok,
            stats.limited,
            stats.failed,
            stats.refused
        ),
        (7, 2, 1, 2, 2)
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn fail_every_answers_every_request_with_its_status() -> TestResult {
    let api = SimulatedApi::builder()
        .limit(1, Duration::from_secs(1))
        .fail_every(StatusCode::INTERNAL_SERVER_ERROR)
        .build();
    let client = client(&api);
    for _ in 0..10 {
        assert_eq!(client.post(URL).send().await?.status(), 500);
    }
    let stats = api.stats();
    assert_eq!(
        (stats.received, stats.failed, stats.ok, stats.limited),
        (10, 10, 0, 0)
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn the_history_keeps_the_first_requests_up_to_its_limit() -> TestResult {
    let api = SimulatedApi::builder().record_limit(3).build();
    let client = client(&api);
    for i in 0..5 {
        client.get(format!("{URL}/{i}")).send().await?;
    }
    let paths: Vec<String> = api.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/v1/things/0", "/v1/things/1", "/v1/things/2"]);
    assert_eq!(api.stats().received, 5);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn the_socket_server_serves_the_same_limits_and_headers() -> TestResult {
    let api = SimulatedApi::builder()
        .limit(3, Duration::from_secs(10))
        .headers(HeaderStyle::OpenAi)
        .build();
    let server = api.serve().await?;
    let plain = reqwest::Client::new();
    let through_middleware = client(&api);
    // Both paths draw from one budget.
    assert_eq!(plain.get(server.url("/x")).send().await?.status(), 200);
    assert_eq!(through_middleware.get(URL).send().await?.status(), 200);
    let third = plain
        .post(server.url("/x?y=1"))
        .body(vec![7u8; 100_000])
        .send()
        .await?;
    assert_eq!(third.status(), 200);
    assert_eq!(number(&third, "x-ratelimit-remaining-requests"), Some(0));
    let limited = plain.get(server.url("x")).send().await?;
    assert_eq!(limited.status(), 429);
    assert_eq!(number(&limited, "retry-after"), Some(10));
    let body: serde_json::Value = limited.json().await?;
    assert_eq!(body["error"]["type"], "requests");
    let paths: Vec<String> = api.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/x", "/v1/things", "/x?y=1", "/x"]);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn socket_outages_refuse_fail_and_recover_on_the_same_port() -> TestResult {
    let api = SimulatedApi::builder().build();
    let server = api.serve().await?;
    let url = server.url("/health");
    // No pooled connections, so each request shows what a new connection meets.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let pooled = reqwest::Client::new();

    assert_eq!(fresh.get(&url).send().await?.status(), 200);
    assert_eq!(pooled.get(&url).send().await?.status(), 200);

    api.set_outage(Some(Outage::Refuse));
    for _ in 0..3 {
        let error = fresh
            .get(&url)
            .send()
            .await
            .err()
            .ok_or("expected a refusal")?;
        assert!(error.is_connect(), "{error:?}");
        // A pooled connection is closed by the server: also an error, whatever its kind.
        assert!(pooled.get(&url).send().await.is_err());
    }

    api.set_outage(Some(Outage::Status(StatusCode::BAD_GATEWAY)));
    assert_eq!(fresh.get(&url).send().await?.status(), 502);
    assert_eq!(pooled.get(&url).send().await?.status(), 502);

    api.set_outage(Some(Outage::Hangup));
    let error = fresh
        .get(&url)
        .send()
        .await
        .err()
        .ok_or("expected a hang-up")?;
    assert!(
        !error.is_connect(),
        "the connection was accepted: {error:?}"
    );

    api.set_outage(None);
    assert_eq!(fresh.get(&url).send().await?.status(), 200);
    assert_eq!(pooled.get(&url).send().await?.status(), 200);

    let stats = api.stats();
    assert_eq!((stats.ok, stats.failed), (4, 2));
    // Refused connections never reach the server; the hang-up did (and perhaps pooled
    // requests that raced the closing of their connection).
    assert!(stats.refused >= 1, "{stats:?}");
    assert_eq!(stats.received, stats.ok + stats.failed + stats.refused);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_server_started_during_a_refusal_opens_when_it_ends() -> TestResult {
    let api = SimulatedApi::builder().build();
    api.set_outage(Some(Outage::Refuse));
    let server = api.serve().await?;
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let error = fresh
        .get(server.url("/"))
        .send()
        .await
        .err()
        .ok_or("expected a refusal")?;
    assert!(error.is_connect(), "{error:?}");
    api.set_outage(None);
    assert_eq!(fresh.get(server.url("/")).send().await?.status(), 200);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_dropped_server_stops_listening() -> TestResult {
    let api = SimulatedApi::builder().build();
    let server = api.serve().await?;
    let url = server.url("/");
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    assert_eq!(fresh.get(&url).send().await?.status(), 200);
    drop(server);
    // Let the aborted accept loop be dropped.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let error = fresh
        .get(&url)
        .send()
        .await
        .err()
        .ok_or("expected a refusal")?;
    assert!(error.is_connect(), "{error:?}");
    Ok(())
}

/// Odd but legal requests are answered, never a panic.
#[tokio::test(start_paused = true)]
async fn unusual_requests_are_answered() -> TestResult {
    let api: SimulatedApi = SimulatedApiBuilder::default()
        .token_bucket(f64::NAN, 0)
        .headers(HeaderStyle::Ietf)
        .retry_after(RetryAfterStyle::HttpDate)
        .build();
    let server = api.serve().await?;
    let plain = reqwest::Client::new();
    let brew = http::Method::from_bytes(b"BREW")?;
    let long_path = format!("/{}?{}", "a".repeat(4000), "q=%FF%00".repeat(100));
    for _ in 0..2 {
        let over_socket = plain
            .request(brew.clone(), server.url(&long_path))
            .send()
            .await?;
        // A burst of 0 never admits anything.
        assert_eq!(over_socket.status(), 429);
        let in_process = client(&api)
            .request(brew.clone(), format!("http://api.test{long_path}"))
            .send()
            .await?;
        assert_eq!(in_process.status(), 429);
        assert!(header(&in_process, "retry-after").is_some());
    }
    assert!(api
        .requests()
        .iter()
        .all(|r| r.method == brew && r.path == long_path));
    assert_eq!(api.stats().limited, 4);
    Ok(())
}

/// Many threads at once: every request is decided exactly once, against one budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_threads_share_one_budget_exactly() -> TestResult {
    let api = SimulatedApi::builder()
        .limit(1_000, Duration::from_secs(3600))
        .headers(HeaderStyle::OpenAi)
        .build();
    let server = api.serve().await?;
    let url = server.url("/");
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let (api, url) = (api.clone(), url.clone());
            tokio::spawn(async move {
                let in_process = client(&api);
                let plain = reqwest::Client::new();
                let mut remaining_seen = Vec::new();
                for i in 0..250 {
                    let response = if (task + i) % 2 == 0 {
                        in_process.get(URL).send().await?
                    } else {
                        plain.get(&url).send().await?
                    };
                    if response.status() == 200 {
                        remaining_seen.push(number(&response, "x-ratelimit-remaining-requests"));
                    }
                }
                Ok::<_, reqwest_middleware::Error>(remaining_seen)
            })
        })
        .collect();
    let mut remaining_seen = Vec::new();
    for task in tasks {
        remaining_seen.extend(task.await??);
    }
    // Each admitted request saw a different `remaining`: 999 down to 0, each exactly once.
    remaining_seen.sort_unstable();
    let expected: Vec<Option<u64>> = (0..1_000).map(Some).collect();
    assert_eq!(remaining_seen, expected);
    let stats = api.stats();
    assert_eq!(
        (stats.received, stats.ok, stats.limited),
        (2_000, 1_000, 1_000)
    );
    assert_eq!(stats.in_flight, 0);
    Ok(())
}
