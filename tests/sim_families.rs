//! The simulated API's own rules, checked without the throttle: token counts that are not the
//! client's (characters / 4, a scaled estimate), OpenAI's short-reset token buckets,
//! clock-aligned fixed windows, Flask-Limiter's headers and resets announced late.
//!
//! Every expected number here is computed from the server's documented rule, never by the
//! code that implements it.

use std::error::Error as StdError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_throttle::llm::{estimate, Endpoint};
use reqwest_throttle::sim::{HeaderStyle, RetryAfterStyle, SimulatedApi, TokenRule, UsageRule};
use serde_json::{json, Value};
use tokio::time::{advance, Instant};

type TestResult = Result<(), Box<dyn StdError>>;

const CHAT: &str = "http://api.openai.test/v1/chat/completions";
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

/// Sends one chat body and returns the answer's `usage`, checking it was admitted.
async fn usage_of(client: &ClientWithMiddleware, body: &str) -> Result<Value, Box<dyn StdError>> {
    let response = client
        .post(CHAT)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await?;
    Ok(answer["usage"].clone())
}

fn chat_body(content: &str, extra: Value) -> String {
    let mut body = json!({
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": "Be terse."},
                     {"role": "user", "content": content}],
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body.to_string()
}

#[tokio::test(start_paused = true)]
async fn chars_over_4_charges_the_whole_body_by_characters_plus_the_allowance() -> TestResult {
    let api = SimulatedApi::builder()
        .token_rule(TokenRule::CharsOver4)
        .build();
    let client = client(&api);
    // Non-ASCII on purpose: characters, not bytes, are counted.
    let body = chat_body(
        "Résumé of the café's naïve rate limits, with emoji 🚦🚦",
        json!({"max_tokens": 50, "n": 3}),
    );
    let prompt = (body.chars().count() as u64).div_ceil(4);
    assert_ne!(
        prompt,
        (body.len() as u64).div_ceil(4),
        "the body must not be ASCII"
    );
    let usage = usage_of(&client, &body).await?;
    assert_eq!(usage["prompt_tokens"], prompt);
    let completion = usage["completion_tokens"].as_u64().unwrap_or(u64::MAX);
    assert!((1..=150).contains(&completion), "{completion}");
    let stats = api.stats();
    assert_eq!(stats.tokens_charged, prompt + 50 * 3);
    assert_eq!(stats.prompt_tokens, prompt);

    // Without `max_tokens` the server books its default allowance of 1 024.
    let bare = chat_body("hello", json!({}));
    usage_of(&client, &bare).await?;
    let charged = api.stats().tokens_charged - stats.tokens_charged;
    assert_eq!(charged, (bare.chars().count() as u64).div_ceil(4) + 1_024);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn chars_over_4_disagrees_with_the_client_estimate() -> TestResult {
    // A long JSON body with many short messages: framing and keys weigh differently in the two
    // counts, which is the point of giving the server its own rule.
    let messages: Vec<Value> = (0..40)
        .map(|i| json!({"role": "user", "content": format!("m{i}")}))
        .collect();
    let body = json!({"model": "gpt-4o", "max_tokens": 10, "messages": messages}).to_string();
    let api = SimulatedApi::builder()
        .token_rule(TokenRule::CharsOver4)
        .build();
    usage_of(&client(&api), &body).await?;
    let client_estimate = estimate(Endpoint::ChatCompletions, body.as_bytes())
        .ok_or("no estimate")?
        .total();
    assert_ne!(api.stats().tokens_charged, client_estimate);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn scaled_estimate_charges_a_fixed_factor_more_or_less_than_the_client() -> TestResult {
    let body = chat_body(
        "Explain token buckets to a tired engineer, in three sentences please.",
        json!({"max_tokens": 200}),
    );
    let client_estimate =
        estimate(Endpoint::ChatCompletions, body.as_bytes()).ok_or("no estimate")?;
    // ⌈total × 5/4⌉ and ⌈total × 3/4⌉, in integers.
    let cases = [
        (1.25, 5, client_estimate.input * 5),
        (0.75, 3, client_estimate.input * 3),
    ];
    for (factor, quarters, prompt_quarters) in cases {
        let api = SimulatedApi::builder()
            .token_rule(TokenRule::ScaledEstimate(factor))
            .build();
        let usage = usage_of(&client(&api), &body).await?;
        let stats = api.stats();
        assert_eq!(
            stats.tokens_charged,
            (client_estimate.total() * quarters).div_ceil(4),
            "factor {factor}"
        );
        assert_eq!(usage["prompt_tokens"], prompt_quarters.div_ceil(4));
        assert_eq!(stats.prompt_tokens, prompt_quarters.div_ceil(4));
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn the_default_rule_is_the_servers_own_count_not_the_client_estimate() -> TestResult {
    // No rule chosen: characters of the whole body / 4, plus `max_tokens`.
    let body = chat_body("Counted by the server's rule.", json!({"max_tokens": 64}));
    let api = SimulatedApi::builder().build();
    let usage = usage_of(&client(&api), &body).await?;
    let prompt = (body.chars().count() as u64).div_ceil(4);
    assert_eq!(api.stats().tokens_charged, prompt + 64);
    assert_eq!(usage["prompt_tokens"], prompt);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_fixed_output_charge_ignores_max_tokens_but_caps_the_completion() -> TestResult {
    let api = SimulatedApi::builder()
        .token_rule(TokenRule::CharsOver4FixedOutput(20))
        .build();
    let client = client(&api);
    let bare = chat_body("No maximum named.", json!({}));
    let usage = usage_of(&client, &bare).await?;
    let prompt = (bare.chars().count() as u64).div_ceil(4);
    assert_eq!(api.stats().tokens_charged, prompt + 20);
    assert!((1..=20).contains(&usage["completion_tokens"].as_u64().unwrap_or(0)));
    // A large `max_tokens` is not what this server charges on arrival.
    let before = api.stats().tokens_charged;
    let large = chat_body("A large maximum.", json!({"max_tokens": 4_000}));
    usage_of(&client, &large).await?;
    let charged = api.stats().tokens_charged - before;
    assert_eq!(charged, (large.chars().count() as u64).div_ceil(4) + 20);
    Ok(())
}

/// The server's tokenizer, counted by hand: `system` 1, `Be terse.` 3, `user` 1,
/// `Hello, world!` 4 (two words, a comma, a mark), 3 per message and 3 for the reply.
#[tokio::test(start_paused = true)]
async fn usage_by_words_is_not_what_the_limiter_charged() -> TestResult {
    let api = SimulatedApi::builder()
        .token_rule(TokenRule::CharsOver4FixedOutput(20))
        .usage_rule(UsageRule::Words)
        .build();
    let body = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "Be terse."},
                     {"role": "user", "content": "Hello, world!"}],
    })
    .to_string();
    let usage = usage_of(&client(&api), &body).await?;
    assert_eq!(usage["prompt_tokens"], 9 + 3 + 2 * 3);
    assert_eq!(
        api.stats().tokens_charged,
        (body.chars().count() as u64).div_ceil(4) + 20
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn the_servers_routes_decide_what_an_llm_call_is() -> TestResult {
    let api = SimulatedApi::builder().build();
    let client = client(&api);
    let body = chat_body("hi", json!({"max_tokens": 5}));
    // Not a route of the server: no tokens, whatever the body.
    let models = client
        .post("http://api.openai.test/v1/models")
        .body(body.clone())
        .send()
        .await?;
    assert_eq!(models.status(), 200);
    assert_eq!(api.stats().tokens_charged, 0);
    // An Azure deployment's legacy completion: a route, after any prefix.
    let legacy = json!({"prompt": "Say hi", "max_tokens": 7}).to_string();
    let url = "http://azure.test/openai/deployments/d1/completions?api-version=2024-06-01";
    assert_eq!(
        client.post(url).body(legacy.clone()).send().await?.status(),
        200
    );
    assert_eq!(
        api.stats().tokens_charged,
        (legacy.chars().count() as u64).div_ceil(4) + 7
    );
    Ok(())
}

/// A proxy's per-key tokens per minute (LiteLLM's): admitted while anything is left in the
/// window, the usage counted once the answer has left, `remaining` as it was on arrival.
#[tokio::test(start_paused = true)]
async fn tokens_counted_after_the_answer_admit_while_anything_is_left() -> TestResult {
    let api = SimulatedApi::builder()
        .tokens_counted_after(100, Duration::from_secs(60))
        .window_origin(Instant::now())
        .usage_rule(UsageRule::Words)
        .headers(HeaderStyle::OpenAi)
        .latency(Duration::from_millis(200))
        .build();
    let client = client(&api);
    let body = chat_body("Hello, world!", json!({"max_tokens": 50}));
    // Each answer announces the window as it was on arrival: less every usage counted before,
    // none of its own; admitted while anything is left, even if it will overrun.
    let mut counted = 0;
    while counted < 100 {
        let answer = client.post(CHAT).body(body.clone()).send().await?;
        assert_eq!(answer.status(), 200);
        assert_eq!(
            number(&answer, "x-ratelimit-remaining-tokens"),
            Some(100 - counted)
        );
        let answer: Value = answer.json().await?;
        counted += answer["usage"]["total_tokens"].as_u64().ok_or("no usage")?;
        assert_eq!(api.stats().tokens_charged, counted);
    }
    let refused = client.post(CHAT).body(body).send().await?;
    assert_eq!(refused.status(), 429);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn scaled_factors_out_of_range_never_panic() -> TestResult {
    let body = chat_body("hi", json!({"max_tokens": 5}));
    for factor in [f64::NAN, -3.0, 0.0, f64::INFINITY, 1e300] {
        let api = SimulatedApi::builder()
            .token_rule(TokenRule::ScaledEstimate(factor))
            .build();
        let response = client(&api).post(CHAT).body(body.clone()).send().await?;
        assert_eq!(response.status(), 200, "factor {factor}");
    }
    Ok(())
}

/// OpenAI's shape: 20 requests/s with a burst of 10, 1 000 tokens/s with a burst of 1 000,
/// resets announced as the time until the bucket is full again, written as Go durations.
#[tokio::test(start_paused = true)]
async fn openai_short_reset_buckets_announce_resets_like_50ms() -> TestResult {
    let api = SimulatedApi::builder()
        .token_bucket(20.0, 10)
        .tokens_bucket(1_000.0, 1_000)
        .token_rule(TokenRule::CharsOver4)
        .headers(HeaderStyle::OpenAi)
        .retry_after(RetryAfterStyle::Millis)
        .build();
    let client = client(&api);
    // A body of exactly 120 characters and `max_tokens: 20`: 30 + 20 = 50 tokens, which a
    // bucket refilling 1 000/s makes whole again in 50 ms.
    let padding = "x".repeat(120 - chat_body("", json!({"max_tokens": 20})).chars().count());
    let body = chat_body(&padding, json!({"max_tokens": 20}));
    assert_eq!(body.chars().count(), 120);

    let first = client.post(CHAT).body(body.clone()).send().await?;
    assert_eq!(first.status(), 200);
    assert_eq!(number(&first, "x-ratelimit-limit-tokens"), Some(1_000));
    assert_eq!(number(&first, "x-ratelimit-remaining-tokens"), Some(950));
    assert_eq!(header(&first, "x-ratelimit-reset-tokens"), Some("50ms"));
    assert_eq!(number(&first, "x-ratelimit-limit-requests"), Some(10));
    assert_eq!(number(&first, "x-ratelimit-remaining-requests"), Some(9));
    assert_eq!(header(&first, "x-ratelimit-reset-requests"), Some("50ms"));

    // Nine more at once empty the requests bucket: 10 requests at 20/s take 500 ms to refill.
    let mut last = None;
    for _ in 0..9 {
        last = Some(client.post(CHAT).body(body.clone()).send().await?);
    }
    let last = last.ok_or("no answer")?;
    assert_eq!(number(&last, "x-ratelimit-remaining-requests"), Some(0));
    assert_eq!(header(&last, "x-ratelimit-reset-requests"), Some("500ms"));
    assert_eq!(header(&last, "x-ratelimit-reset-tokens"), Some("500ms"));
    let refused = client.post(CHAT).body(body.clone()).send().await?;
    assert_eq!(refused.status(), 429);
    assert_eq!(number(&refused, "retry-after-ms"), Some(50));
    let error: Value = refused.json().await?;
    assert_eq!(error["error"]["type"], "requests");

    // 50 ms later one request fits again.
    advance(Duration::from_millis(50)).await;
    let again = client.post(CHAT).body(body.clone()).send().await?;
    assert_eq!(again.status(), 200);

    // A call of ⌈121 / 4⌉ + 969 = 1 000 tokens fills the token bucket's debt to a whole second: `1s`.
    advance(Duration::from_secs(1)).await;
    let big = chat_body(&padding, json!({"max_tokens": 969}));
    let whole = client.post(CHAT).body(big).send().await?;
    assert_eq!(whole.status(), 200);
    assert_eq!(number(&whole, "x-ratelimit-remaining-tokens"), Some(0));
    assert_eq!(header(&whole, "x-ratelimit-reset-tokens"), Some("1s"));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn aligned_window_resets_at_the_boundary_not_a_period_after_the_first_request() -> TestResult
{
    let minute = Duration::from_secs(60);
    // The current minute began 45 s ago: 15 s are left in it, whenever the first request came.
    let api = SimulatedApi::builder()
        .limit_aligned(2, minute)
        .window_origin(Instant::now() - Duration::from_secs(45))
        .headers(HeaderStyle::IetfLegacy)
        .build();
    let client = client(&api);
    let first = client.get(URL).send().await?;
    assert_eq!(number(&first, "ratelimit-remaining"), Some(1));
    assert_eq!(number(&first, "ratelimit-reset"), Some(15));
    advance(Duration::from_secs(5)).await;
    let second = client.get(URL).send().await?;
    assert_eq!(number(&second, "ratelimit-remaining"), Some(0));
    assert_eq!(number(&second, "ratelimit-reset"), Some(10));
    let refused = client.get(URL).send().await?;
    assert_eq!(refused.status(), 429);
    assert_eq!(number(&refused, "retry-after"), Some(10));

    // At the boundary a whole new minute opens (a window opened by the first request would
    // have lasted until 60 s after it).
    advance(Duration::from_secs(10)).await;
    let next = client.get(URL).send().await?;
    assert_eq!(next.status(), 200);
    assert_eq!(number(&next, "ratelimit-remaining"), Some(1));
    assert_eq!(number(&next, "ratelimit-reset"), Some(60));

    // A minute with no request at all is a minute gone: 70 s later we are 10 s into a window.
    advance(Duration::from_secs(70)).await;
    let late = client.get(URL).send().await?;
    assert_eq!(number(&late, "ratelimit-remaining"), Some(1));
    assert_eq!(number(&late, "ratelimit-reset"), Some(50));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn aligned_token_window_counts_tokens_per_window() -> TestResult {
    let api = SimulatedApi::builder()
        .tokens_limit_aligned(1_000, Duration::from_secs(60))
        .window_origin(Instant::now() - Duration::from_secs(30))
        .token_rule(TokenRule::CharsOver4)
        .headers(HeaderStyle::OpenAi)
        .build();
    let client = client(&api);
    let body = chat_body("hello", json!({"max_tokens": 600}));
    let cost = (body.chars().count() as u64).div_ceil(4) + 600;
    let first = client.post(CHAT).body(body.clone()).send().await?;
    assert_eq!(
        number(&first, "x-ratelimit-remaining-tokens"),
        Some(1_000 - cost)
    );
    assert_eq!(header(&first, "x-ratelimit-reset-tokens"), Some("30s"));
    let refused = client.post(CHAT).body(body.clone()).send().await?;
    assert_eq!(refused.status(), 429);
    assert_eq!(number(&refused, "retry-after"), Some(30));
    advance(Duration::from_secs(30)).await;
    let next = client.post(CHAT).body(body).send().await?;
    assert_eq!(next.status(), 200);
    assert_eq!(header(&next, "x-ratelimit-reset-tokens"), Some("1m0s"));
    Ok(())
}

/// Seconds since the Unix epoch, truncated.
fn epoch_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Flask-Limiter's trio with the reset as `1 + int(window end)`. With windows aligned on wall-
/// clock minutes (the default) the window ends on a whole minute, so the reset announced is
/// one second past it. Real time (not paused), since the value is a wall-clock epoch.
#[tokio::test]
async fn flask_limiter_headers_announce_an_integer_epoch_one_second_late() -> TestResult {
    // Read before the build: a minute that turns between the two then reads as the next
    // window (accepted below), never as the one before.
    let before = epoch_secs(SystemTime::now());
    let api = SimulatedApi::builder()
        .limit_aligned(5, Duration::from_secs(60))
        .headers(HeaderStyle::FlaskLimiter)
        .build();
    let answer = client(&api).get(URL).send().await?;
    assert_eq!(number(&answer, "x-ratelimit-limit"), Some(5));
    assert_eq!(number(&answer, "x-ratelimit-remaining"), Some(4));
    assert_eq!(header(&answer, "x-ratelimit-used"), None);
    assert_eq!(header(&answer, "x-ratelimit-resource"), None);
    let reset = number(&answer, "x-ratelimit-reset").ok_or("no reset")?;
    let minute_end = (before / 60 + 1) * 60;
    // The minute may have turned between `before` and the answer.
    assert!(
        reset == minute_end + 1 || reset == minute_end + 61,
        "reset {reset}, minute ends at {minute_end}"
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_reset_announced_late_is_late_in_every_form_but_the_limit_is_not() -> TestResult {
    let api = SimulatedApi::builder()
        .limit_aligned(1, Duration::from_secs(10))
        .window_origin(Instant::now() - Duration::from_millis(2_500))
        .headers(HeaderStyle::OpenAi)
        .reset_announced_late(Duration::from_secs(1))
        .build();
    let http = client(&api);
    let first = http.get(URL).send().await?;
    // 7.5 s are left; announced 8.5 s.
    assert_eq!(header(&first, "x-ratelimit-reset-requests"), Some("8.5s"));
    let refused = http.get(URL).send().await?;
    assert_eq!(refused.status(), 429);
    // Whole seconds rounded up, then one more: ⌈7.5⌉ + 1.
    assert_eq!(number(&refused, "retry-after"), Some(9));
    // The window still ends when it ends.
    advance(Duration::from_millis(7_500)).await;
    assert_eq!(http.get(URL).send().await?.status(), 200);

    // IETF delta seconds: ⌈reset⌉ + 1.
    let legacy = SimulatedApi::builder()
        .limit(3, Duration::from_secs(4))
        .headers(HeaderStyle::IetfLegacy)
        .reset_announced_late(Duration::from_secs(1))
        .build();
    let answer = client(&legacy).get(URL).send().await?;
    assert_eq!(number(&answer, "ratelimit-reset"), Some(5));
    Ok(())
}
