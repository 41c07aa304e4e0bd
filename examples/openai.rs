//! A realistic LLM batch under requests- and tokens-per-minute limits.
//!
//! 600 chat completions of varied sizes (prompts of 5 to 600 words, `max_tokens` 16 to 400,
//! one in five streamed with a usage chunk) from 40 tasks, against the crate's simulated
//! OpenAI-compatible server (RPM 500, TPM 40 000, counted by the server's own rule, not the
//! client's: about four characters a token of the whole JSON body plus `max_tokens` × `n` when
//! the request arrives, and its `usage` by its own tokenizer; the real `x-ratelimit-*` headers;
//! 400 ms per answer). Twice: with the limits configured, then with no limits configured (the lane learns
//! them from the headers). It runs in virtual time, so the ~10 simulated minutes take seconds.
//!
//! ```text
//! cargo run --example openai --features llm,test-util     # add tiktoken for exact counts
//! ```
//!
//! Against the real API, only the client changes:
//!
//! ```no_run
//! # use std::time::Duration;
//! # use reqwest_throttle::{Policy, Rate, Throttle};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let throttle = Throttle::builder()
//!     .host("api.openai.com", Policy::openai()
//!         .requests(Rate::per_minute(500))
//!         .tokens(Rate::per_minute(200_000)))
//!     .build()?;
//! let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?;
//! let client = reqwest_middleware::ClientBuilder::new(http)
//!     .with(throttle)
//!     .build();
//! # drop(client); Ok(()) }
//! ```
//!
//! A streamed chat asks for its usage with `"stream_options": {"include_usage": true}`; the
//! lane settles its booking on that final chunk as the caller reads the stream (without it the
//! estimate stands).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_throttle::sim::{HeaderStyle, RetryAfterStyle, SimulatedApi, TokenRule, UsageRule};
use reqwest_throttle::{Policy, Rate, Throttle};
use serde_json::json;
use tokio::time::Instant;

const URL: &str = "https://api.openai.test/v1/chat/completions";
const RPM: u64 = 500;
const TPM: u64 = 40_000;
const REQUESTS: usize = 600;
const TASKS: usize = 40;

fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn body(i: u64) -> String {
    const WORDS: [&str; 8] = [
        "budget", "tokens", "minute", "server", "the", "a", "limit", "fast",
    ];
    let words = 5 + mix(i) % 600;
    let prompt: Vec<&str> = (0..words)
        .map(|w| WORDS[(mix(i * 1_000 + w) % WORDS.len() as u64) as usize])
        .collect();
    let mut body = json!({
        "model": "gpt-4o-mini",
        "max_tokens": 16 + mix(i + 7) % 385,
        "messages": [
            {"role": "system", "content": "Summarise the user's text in one line."},
            {"role": "user", "content": prompt.join(" ")},
        ],
    });
    if i.is_multiple_of(5) {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body.to_string()
}

async fn batch(client: &ClientWithMiddleware) -> usize {
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (client, next) = (client.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                let mut failed = 0;
                while let i @ 0..REQUESTS = next.fetch_add(1, Ordering::Relaxed) {
                    let sent = client
                        .post(URL)
                        .bearer_auth("sk-demo")
                        .header("content-type", "application/json")
                        .body(body(i as u64))
                        .send()
                        .await;
                    match sent {
                        Ok(response) if response.status().is_success() => {
                            // Read the answer (a stream settles its booking at its end).
                            if response.bytes().await.is_err() {
                                failed += 1;
                            }
                        }
                        _ => failed += 1,
                    }
                }
                failed
            })
        })
        .collect();
    let mut failed = 0;
    for task in tasks {
        failed += task.await.unwrap_or(1);
    }
    failed
}

async fn run(name: &str, policy: Policy) -> Result<(), Box<dyn std::error::Error>> {
    let api = SimulatedApi::builder()
        .token_rule(TokenRule::CharsOver4)
        .usage_rule(UsageRule::Words)
        .requests_per_minute(RPM)
        .tokens_per_minute(TPM)
        .headers(HeaderStyle::OpenAi)
        .retry_after(RetryAfterStyle::Millis)
        .latency(Duration::from_millis(400))
        .build();
    let throttle = Throttle::builder()
        .host("api.openai.test", policy)
        .build()?;
    // The simulated API answers as the last middleware, so this client never opens a socket;
    // against a real API its timeout bounds an answer that never comes.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let client = ClientBuilder::new(http)
        .with(throttle.clone())
        .with(api.clone())
        .build();
    let start = Instant::now();
    let failed = batch(&client).await;
    let elapsed = start.elapsed();
    let stats = api.stats();
    let minutes = elapsed.as_secs_f64() / 60.0;
    // Each server bucket starts full, then refills at its rate: the least time the admitted
    // load needs is set by the binding one.
    let least = ((stats.tokens_charged.saturating_sub(TPM)) as f64 / TPM as f64)
        .max((stats.ok.saturating_sub(RPM)) as f64 / RPM as f64);
    println!(
        "{name:<22} {:>5} {:>5} {:>6} {:>9.0} {:>7} {:>7.1} {:>5} {:>7.1}s {:>6.1}%",
        stats.ok,
        stats.limited,
        failed,
        stats.tokens_charged as f64 / minutes,
        TPM,
        stats.ok as f64 / minutes,
        RPM,
        elapsed.as_secs_f64(),
        100.0 * least / minutes,
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "{:<22} {:>5} {:>5} {:>6} {:>9} {:>7} {:>7} {:>5} {:>8} {:>7}",
        "client", "ok", "429s", "failed", "tokens/m", "TPM", "req/m", "RPM", "elapsed", "of max"
    );
    run(
        "limits configured",
        Policy::openai()
            .requests(Rate::per_minute(RPM))
            .tokens(Rate::per_minute(TPM)),
    )
    .await?;
    run("limits from headers", Policy::openai()).await?;
    Ok(())
}
