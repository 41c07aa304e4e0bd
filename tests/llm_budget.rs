//! Token budgets against the simulated OpenAI-compatible server, in virtual time: 2 000 chat
//! requests of mixed sizes from 50 tasks under RPM 500 and TPM 40 000, with the limits known
//! to the client and with the limits only announced in headers; a request larger than the whole
//! budget; refusals that name the token limit; `insufficient_quota`. The server counts by its
//! own rules (about four characters a token of the whole body on arrival, its `usage` by its own
//! tokenizer), never by the client's estimator. The same two batches run again against a server
//! that counts 25 % more and 25 % fewer tokens than the client estimates
//! (`TokenRule::ScaledEstimate`, the one rule that reads the client's estimate, on purpose).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_throttle::sim::{
    HeaderStyle, Outage, RetryAfterStyle, SimStats, SimulatedApi, TokenRule, UsageRule,
};
use reqwest_throttle::{Dimension, Error, Policy, Rate, Throttle};
use serde_json::json;
use tokio::time::Instant;

const URL: &str = "http://api.openai.test/v1/chat/completions";
const RPM: u64 = 500;
const TPM: u64 = 40_000;

fn client(throttle: &Throttle, api: &SimulatedApi) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(throttle.clone())
        .with(api.clone())
        .build()
}

/// The OpenAI-shaped server with its own counts: its limiter charges ⌈characters of the whole
/// body / 4⌉ + `max_tokens` on arrival, and its `usage` reports its own tokenizer's count.
fn openai_sim() -> SimulatedApi {
    openai_sim_counting(TokenRule::CharsOver4)
}

/// The OpenAI-shaped server, charging tokens by `rule`.
fn openai_sim_counting(rule: TokenRule) -> SimulatedApi {
    SimulatedApi::builder()
        .token_rule(rule)
        .usage_rule(UsageRule::Words)
        .requests_per_minute(RPM)
        .tokens_per_minute(TPM)
        .headers(HeaderStyle::OpenAi)
        .retry_after(RetryAfterStyle::Millis)
        .latency(Duration::from_millis(400))
        .build()
}

/// A reproducible spread of numbers (splitmix64).
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const WORDS: [&str; 12] = [
    "rate", "limits", "tokens", "minute", "budget", "the", "server", "answers", "quickly", "when",
    "clients", "behave",
];

/// The `i`-th request body: a system prompt, a user prompt of 5 to 600 words, `max_tokens`
/// from 16 to 400; one in five is streamed with a usage chunk.
fn body(i: u64) -> serde_json::Value {
    let words = 5 + mix(i) % 600;
    let prompt: Vec<&str> = (0..words)
        .map(|w| WORDS[(mix(i * 1_000 + w) % WORDS.len() as u64) as usize])
        .collect();
    let mut body = json!({
        "model": if i.is_multiple_of(3) { "gpt-4o-mini" } else { "gpt-4o" },
        "max_tokens": 16 + mix(i + 7) % 385,
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": prompt.join(" ")},
        ],
    });
    if i.is_multiple_of(5) {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// The mixed chats of the 2 000-request batches, all on one model (the simulated server has one
/// budget for all, and the lane is per model).
fn mixed_chat(i: u64) -> String {
    let mut body = body(i);
    body["model"] = json!("gpt-4o");
    body.to_string()
}

/// Sends `total` chats made by `chat` from `tasks` tasks, all with one API key so that they
/// share the server's budget; returns how many the callers saw fail.
async fn run_batch(
    client: &ClientWithMiddleware,
    tasks: usize,
    total: usize,
    chat: fn(u64) -> String,
) -> usize {
    let next = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let client = client.clone();
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                let mut failed = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let response = client
                        .post(URL)
                        .bearer_auth("sk-test-key")
                        .header("content-type", "application/json")
                        .body(chat(i as u64))
                        .send()
                        .await;
                    match response {
                        Ok(response) if response.status().is_success() => {
                            // Read the whole body, as a caller would (a stream settles at its end).
                            response.bytes().await.expect("body");
                        }
                        _ => failed += 1,
                    }
                }
                failed
            })
        })
        .collect();
    let mut failed = 0;
    for handle in handles {
        failed += handle.await.expect("task panicked");
    }
    failed
}

/// Prints when the server refused and how the batch went (shown when a test fails), and
/// returns the server's counters with the batch's efficiency.
fn report(label: &str, api: &SimulatedApi) -> (SimStats, f64) {
    let stats = api.stats();
    let efficiency = efficiency(&stats);
    let requests = api.requests();
    if let Some(first) = requests.first() {
        let refused: Vec<_> = requests
            .iter()
            .filter(|r| r.status == Some(http::StatusCode::TOO_MANY_REQUESTS))
            .map(|r| (r.at - first.at).as_millis())
            .collect();
        println!("refused at {refused:?}");
    }
    println!(
        "{label}: {} ok, {} limited, {} tokens in {:?}, efficiency {:.3}",
        stats.ok,
        stats.limited,
        stats.tokens_charged,
        stats.elapsed(),
        efficiency
    );
    (stats, efficiency)
}

/// How close to the binding limit the batch ran: the least time the server's own buckets allow
/// for what was admitted (each starts full, then refills at its rate), over the time it took.
fn efficiency(stats: &SimStats) -> f64 {
    let minute = 60.0;
    let by_tokens = (stats.tokens_charged.saturating_sub(TPM)) as f64 / TPM as f64 * minute;
    let by_requests = (stats.ok.saturating_sub(RPM)) as f64 / RPM as f64 * minute;
    by_tokens.max(by_requests) / stats.elapsed().as_secs_f64()
}

#[tokio::test(start_paused = true)]
async fn known_limits_no_refusal_at_full_speed() {
    let api = openai_sim();
    let throttle = Throttle::builder()
        .host(
            "api.openai.test",
            Policy::openai()
                .requests(Rate::per_minute(RPM))
                .tokens(Rate::per_minute(TPM)),
        )
        .build()
        .unwrap();
    let client = client(&throttle, &api);
    let failed = run_batch(&client, 50, 2_000, mixed_chat).await;
    let (stats, efficiency) = report("known limits", &api);
    assert_eq!(failed, 0);
    assert_eq!(stats.ok, 2_000);
    assert_eq!(stats.limited, 0, "the client provoked refusals");
    assert!(
        stats.tokens_charged > 10 * TPM,
        "tokens must be the binding limit"
    );
    assert!(efficiency >= 0.95, "efficiency {efficiency:.3} below 95 %");
}

#[tokio::test(start_paused = true)]
async fn limits_learned_from_headers() {
    let api = openai_sim();
    let throttle = Throttle::builder()
        .host("api.openai.test", Policy::openai())
        .build()
        .unwrap();
    let client = client(&throttle, &api);
    let failed = run_batch(&client, 50, 2_000, mixed_chat).await;
    let (stats, efficiency) = report("learned limits", &api);
    assert_eq!(failed, 0, "a caller saw a refusal");
    assert_eq!(stats.ok, 2_000);
    assert!(
        stats.limited <= 20,
        "{} refusals provoked (more than 1 %)",
        stats.limited
    );
    assert!(efficiency >= 0.90, "efficiency {efficiency:.3} below 90 %");
}

#[tokio::test(start_paused = true)]
async fn a_request_larger_than_the_whole_budget_fails_at_once() {
    let api = openai_sim();
    let throttle = Throttle::builder()
        .host(
            "api.openai.test",
            Policy::openai()
                .requests(Rate::per_minute(RPM))
                .tokens(Rate::per_minute(TPM)),
        )
        .build()
        .unwrap();
    let client = client(&throttle, &api);
    let start = Instant::now();
    let error = client
        .post(URL)
        .body(
            json!({"model": "gpt-4o", "max_tokens": TPM, "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(Instant::now(), start, "no time may pass");
    match error {
        reqwest_middleware::Error::Middleware(error) => match error.downcast_ref::<Error>() {
            Some(Error::CostTooLarge {
                dimension,
                cost,
                burst,
                ..
            }) => {
                assert_eq!(*dimension, Dimension::Tokens);
                assert!(*cost > TPM);
                assert_eq!(*burst, TPM);
            }
            other => panic!("expected CostTooLarge, got {other:?}"),
        },
        other => panic!("expected a throttle error, got {other:?}"),
    }
    assert_eq!(api.stats().received, 0, "the server never saw it");
}

#[tokio::test(start_paused = true)]
async fn insufficient_quota_is_returned_at_once_and_never_retried() {
    let api = openai_sim();
    api.set_outage(Some(Outage::InsufficientQuota));
    let throttle = Throttle::builder()
        .host("api.openai.test", Policy::openai())
        .build()
        .unwrap();
    let client = client(&throttle, &api);
    let response = client
        .post(URL)
        .body(body(1).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "insufficient_quota");
    assert_eq!(api.stats().received, 1, "retried a permanent refusal");
    assert_eq!(throttle.stats().lanes[0].retries, 0);
}

fn chat(max_tokens: u64, content: &str) -> String {
    json!({"model": "gpt-4o", "max_tokens": max_tokens,
           "messages": [{"role": "user", "content": content}]})
    .to_string()
}

/// What the simulated server's default rule charges for `body` on arrival: ⌈characters / 4⌉
/// of prompt plus `max_tokens`, computed here from the rule as documented.
fn server_charge(body: &str, max_tokens: u64) -> reqwest_throttle::Cost {
    let prompt = (body.chars().count() as u64).div_ceil(4);
    reqwest_throttle::Cost::requests(1)
        .with(Dimension::Tokens, prompt + max_tokens)
        .with(Dimension::InputTokens, prompt)
        .with(Dimension::OutputTokens, max_tokens)
}

/// The client books exactly what the server charges (given as the request's cost), so that
/// the test sees only what a given-up waiter gives back, not an estimate's error: without
/// headers the lane has no way to learn that the server counts the whole body.
#[tokio::test(start_paused = true)]
async fn a_request_given_up_while_waiting_gives_its_tokens_back() {
    let api = SimulatedApi::builder().tokens_per_minute(TPM).build();
    let throttle = Throttle::builder()
        .host(
            "api.openai.test",
            Policy::openai().tokens(Rate::per_minute(TPM)),
        )
        .build()
        .unwrap();
    let client = client(&throttle, &api);
    let send = |max_tokens: u64| {
        let body = chat(max_tokens, "hi");
        client
            .post(URL)
            .with_extension(reqwest_throttle::RequestCost(server_charge(
                &body, max_tokens,
            )))
            .body(body)
            .send()
    };
    let start = Instant::now();
    // 30 000 of the 40 000 tokens go at once.
    let first = send(30_000).await.unwrap();
    assert_eq!(first.status(), 200);
    // 20 000 more must wait for 10 000 to refill (15 s); this caller gives up after 1 s.
    let given_up = tokio::time::timeout(Duration::from_secs(1), send(20_000)).await;
    assert!(given_up.is_err());
    // The next one is booked as if the abandoned one had never existed: it leaves after the
    // same 15 s (not 45 s).
    let next = send(20_000).await.unwrap();
    assert_eq!(next.status(), 200);
    let waited = Instant::now() - start;
    assert!(
        waited >= Duration::from_secs(15) && waited < Duration::from_secs(16),
        "{waited:?}"
    );
    assert_eq!((api.stats().ok, api.stats().limited), (2, 0));
}

#[tokio::test(start_paused = true)]
async fn a_token_limit_refusal_pauses_only_the_token_dimension() {
    let api = SimulatedApi::builder()
        .tokens_per_minute(1_000)
        .headers(HeaderStyle::OpenAi)
        .retry_after(RetryAfterStyle::Millis)
        .build();
    // Another process with the same key spends 900 of the 1 000 tokens.
    let other = Throttle::builder()
        .host("api.openai.test", Policy::openai())
        .build()
        .unwrap();
    let spent = client(&other, &api)
        .post(URL)
        .body(chat(890, "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(spent.status(), 200);

    let throttle = Throttle::builder()
        .host("api.openai.test", Policy::openai())
        .build()
        .unwrap();
    let client = client(&throttle, &api);
    let start = Instant::now();
    let big = tokio::spawn({
        let client = client.clone();
        async move { client.post(URL).body(chat(490, "hi")).send().await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    // A request that costs no tokens on the client side goes on during the token cooldown.
    let small = client
        .post(URL)
        .body(chat(1, "hi"))
        .with_extension(reqwest_throttle::RequestCost(
            reqwest_throttle::Cost::requests(1),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), 200);
    assert_eq!(Instant::now() - start, Duration::from_millis(10));
    // The refused one waited for the server's retry-after-ms, then succeeded.
    let big = big.await.unwrap().unwrap();
    assert_eq!(big.status(), 200);
    let log = api.requests();
    assert_eq!(log[1].status, Some(http::StatusCode::TOO_MANY_REQUESTS));
    // The small request spent 10 of the server's tokens during the pause, so the retry may be
    // refused once more before it fits; it is never lost.
    let lane = &throttle.stats().lanes[0];
    assert!(lane.rate_limited >= 1 && lane.cooldowns >= 1, "{lane:?}");
}

/// The demo's request body: a prompt of 20 to 600 repeated words and `max_tokens` from 16 to
/// 400, about 1 000 to 1 400 tokens each by the characters-per-token estimate.
fn large_chat_body(i: u64) -> String {
    let spread = |salt: u64| i.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17) ^ salt;
    let words = 20 + spread(1) % 580;
    let prompt = vec!["tokens"; words as usize].join(" ");
    json!({
        "model": "gpt-4o-mini",
        "max_tokens": 16 + spread(2) % 385,
        "messages": [{"role": "user", "content": prompt}],
    })
    .to_string()
}

/// The demo's workload (40 tasks, 400 large chats, limits only announced in headers): the
/// requests that left before the first answer taught the token limit must not push the lane
/// into a run of refusals once it is known.
#[tokio::test(start_paused = true)]
async fn limits_learned_from_headers_with_large_requests() {
    const TOTAL: usize = 400;
    let api = SimulatedApi::builder()
        .requests_per_minute(RPM)
        .tokens_per_minute(TPM)
        .headers(HeaderStyle::OpenAi)
        .latency(Duration::from_millis(400))
        .build();
    let throttle = Throttle::builder()
        .host("api.openai.test", Policy::openai())
        .build()
        .unwrap();
    let client = client(&throttle, &api);
    let failed = run_batch(&client, 40, TOTAL, large_chat_body).await;
    let (stats, efficiency) = report("large requests, learned limits", &api);
    assert_eq!(failed, 0, "a caller saw a refusal");
    assert_eq!(stats.ok, TOTAL as u64);
    assert!(
        stats.limited <= TOTAL as u64 / 100,
        "{} refusals provoked (more than 1 %)",
        stats.limited
    );
    assert!(efficiency >= 0.90, "efficiency {efficiency:.3} below 90 %");
}

/// What one batch against a miscounting server came to.
#[derive(Debug)]
struct Measured {
    /// Requests the callers saw succeed.
    completed: u64,
    /// Requests the callers saw fail.
    failed: u64,
    /// Refusals the server answered (429s it sent).
    refused: u64,
    /// Goodput against the binding limit, by the server's own count ([`efficiency`]).
    goodput: f64,
}

const MISCOUNTED_TOTAL: usize = 2_000;

/// The 2 000 mixed chats from 50 tasks against a server that charges `factor` × the client's
/// estimate, with the limits known to the client (`known`) or only announced in headers.
async fn miscounted_batch(factor: f64, known: bool) -> Measured {
    let api = openai_sim_counting(TokenRule::ScaledEstimate(factor));
    let policy = if known {
        Policy::openai()
            .requests(Rate::per_minute(RPM))
            .tokens(Rate::per_minute(TPM))
    } else {
        Policy::openai()
    };
    let throttle = Throttle::builder()
        .host("api.openai.test", policy)
        .build()
        .unwrap();
    let client = client(&throttle, &api);
    let failed = run_batch(&client, 50, MISCOUNTED_TOTAL, mixed_chat).await as u64;
    let label = format!(
        "server counts x{factor}, {} limits",
        if known { "known" } else { "learned" }
    );
    let (stats, goodput) = report(&label, &api);
    let measured = Measured {
        completed: MISCOUNTED_TOTAL as u64 - failed,
        failed,
        refused: stats.limited,
        goodput,
    };
    println!("{label}: {measured:?}");
    for lane in throttle.stats().lanes {
        println!("  lane {lane:?}");
    }
    measured
}

/// The targets every miscounted batch must meet: nothing lost, at most 1 % refused, at least
/// 95 % of the binding limit, whether the server counts more or fewer tokens than the client
/// estimates and whether the limits are configured or learned.
fn assert_targets(measured: &Measured) {
    assert_eq!(measured.failed, 0, "callers saw failures: {measured:?}");
    assert_eq!(measured.completed, MISCOUNTED_TOTAL as u64, "{measured:?}");
    assert!(
        measured.refused <= MISCOUNTED_TOTAL as u64 / 100,
        "more than 1 % refused: {measured:?}"
    );
    assert!(
        measured.goodput >= 0.95,
        "goodput below 95 % of the binding limit: {measured:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn known_limits_server_counts_25_percent_more() {
    assert_targets(&miscounted_batch(1.25, true).await);
}

#[tokio::test(start_paused = true)]
async fn known_limits_server_counts_25_percent_fewer() {
    assert_targets(&miscounted_batch(0.75, true).await);
}

#[tokio::test(start_paused = true)]
async fn learned_limits_server_counts_25_percent_more() {
    assert_targets(&miscounted_batch(1.25, false).await);
}

#[tokio::test(start_paused = true)]
async fn learned_limits_server_counts_25_percent_fewer() {
    assert_targets(&miscounted_batch(0.75, false).await);
}
