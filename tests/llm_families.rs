//! LLM-shaped servers that are not the per-minute token bucket the crate was first written
//! for, in virtual time against the simulated API counting tokens by its own rule (characters
//! / 4 of the whole body plus `max_tokens`): an OpenAI-shaped bucket that refills per second and
//! announces resets like `50ms`, and clock-aligned minute windows. Claims about our model, with
//! the server's own rules; the numbers are printed and judged against issue 9's targets.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_throttle::sim::{HeaderStyle, RetryAfterStyle, SimulatedApi, TokenRule};
use reqwest_throttle::{Policy, Throttle};
use tokio::time::Instant;

const URL: &str = "http://api.openai.test/v1/chat/completions";

/// A chat of about 40 to 90 tokens as the server counts them.
fn chat(i: usize) -> String {
    let words = "rate limits tokens minute budget ".repeat(1 + i % 4);
    format!(
        r#"{{"model":"gpt-4o-mini","max_tokens":16,"messages":[{{"role":"user","content":"{words}"}}]}}"#
    )
}

struct Run {
    completed: usize,
    refused: u64,
    elapsed: Duration,
}

async fn run(api: &SimulatedApi, total: usize, tasks: usize) -> Run {
    let throttle = Throttle::builder()
        .default_policy(Policy::openai())
        .build()
        .unwrap();
    let client: ClientWithMiddleware = ClientBuilder::new(reqwest::Client::new())
        .with(throttle.clone())
        .with(api.clone())
        .build();
    let next = Arc::new(AtomicUsize::new(0));
    let completed = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (client, next, completed) = (client.clone(), next.clone(), completed.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Relaxed);
                    if i >= total {
                        break;
                    }
                    let sent = client
                        .post(URL)
                        .bearer_auth("sk-test")
                        .header("content-type", "application/json")
                        .body(chat(i))
                        .send()
                        .await;
                    if let Ok(response) = sent {
                        if response.status().is_success() {
                            let _ = response.bytes().await;
                            completed.fetch_add(1, Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("task panicked");
    }
    for lane in throttle.stats().lanes {
        println!("  {lane:?}");
    }
    let run = Run {
        completed: completed.load(Relaxed),
        refused: api.stats().limited,
        elapsed: start.elapsed(),
    };
    println!(
        "completed {} of {total}, refused {}, elapsed {:?}, tokens charged {}",
        run.completed,
        run.refused,
        run.elapsed,
        api.stats().tokens_charged
    );
    run
}

/// Before: the limits were learned as per-minute and the lane stalled (20 of 300 in 90 s
/// against the same shape of server, an OpenAI-shaped mock outside this crate); then every
/// request completed but the batch took 98 s (waiters re-booked behind the queue at each
/// reset, and a request past its third retry was not kept for a fourth). Now both limits are
/// learned at the server's rates (20/s, 1 000/s) and the batch takes about 16 s, the tokens'
/// own pace (17 000 tokens at 1 000/s, less the first burst). The server counts tokens by its
/// own rule (a third more than the client estimates): 20 refusals (7 %) until each estimate was
/// scaled by what the server charged per unit estimated (`Budget::corrected`), then 7 (2.3 %):
/// the sixteen callers' first burst against a burst of ten. None since `Policy::openai()` holds
/// a new lane's callers for its first answer (`Policy::first_contact`).
#[tokio::test(start_paused = true)]
async fn an_openai_bucket_that_refills_per_second_is_not_read_per_minute() {
    let api = SimulatedApi::builder()
        .token_rule(TokenRule::CharsOver4)
        .token_bucket(20.0, 10)
        .tokens_bucket(1_000.0, 1_000)
        .headers(HeaderStyle::OpenAi)
        .retry_after(RetryAfterStyle::Millis)
        .latency(Duration::from_millis(50))
        .build();
    let run = run(&api, 300, 16).await;
    assert_eq!(run.completed, 300);
    // Issue 9's target: at most 1 % refused.
    assert!(run.refused <= 3, "{} refused", run.refused);
    // The token bucket's own pace: 17 000 tokens at 1 000/s, with a burst of 1 000.
    assert!(run.elapsed <= Duration::from_secs(20), "{:?}", run.elapsed);
}

/// RPM 30 and TPM 900 counted per calendar minute (windows aligned to the minute, as several
/// gateways count), announced with OpenAI's headers. Before: 29 % of requests refused against
/// such a mock outside this crate; then 3 refusals of 60 (5 %): read as a bucket, a window
/// about to renew looked like a fast refill. Now the lane tells the window from a bucket
/// (`remaining` falls while the announced end stays put, `limiter::shape`), paces it at the
/// limit over its length, and owes what that pace would refill before the window's end: none
/// refused, at 96 % of the binding limit (the tokens).
#[tokio::test(start_paused = true)]
async fn clock_aligned_minute_windows_announced_with_openai_headers() {
    let api = SimulatedApi::builder()
        .token_rule(TokenRule::CharsOver4)
        .limit_aligned(30, Duration::from_secs(60))
        .tokens_limit_aligned(900, Duration::from_secs(60))
        .window_origin(Instant::now())
        .headers(HeaderStyle::OpenAi)
        .retry_after(RetryAfterStyle::Millis)
        .latency(Duration::from_millis(50))
        .build();
    let run = run(&api, 60, 8).await;
    assert_eq!(run.completed, 60);
    // Issue 9's target: at most 1 % refused (of 60: none).
    assert_eq!(run.refused, 0);
    // Tokens bind (about 57 per chat as the server counts: 15.7 chats per minute); issue 9's
    // target is 95 % of that.
    let tokens = api.stats().tokens_charged as f64;
    let binding = tokens / 900.0 * 60.0;
    let goodput = binding / run.elapsed.as_secs_f64();
    assert!(
        goodput >= 0.95,
        "{:.1} % in {:?}",
        goodput * 100.0,
        run.elapsed
    );
}
