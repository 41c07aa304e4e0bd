//! What token estimation costs per request, beside what the request itself costs.
//!
//! - `estimate/chat_1000_tokens`: [`TokenCost::estimate`] of a chat completion whose messages
//!   are about 1 000 tokens (JSON parse, tiktoken `o200k_base` count, allowance);
//! - `estimate/lane_key`: the lane key of the same request (model and key fingerprint);
//! - `http/loopback_post`: the baseline, one POST of the same body with plain `reqwest` to the
//!   simulated API on 127.0.0.1 (connection kept alive), measured in the same run.

use criterion::{criterion_group, criterion_main, Criterion};
use reqwest_throttle::cost::CostModel;
use reqwest_throttle::llm::TokenCost;
use reqwest_throttle::sim::SimulatedApi;
use serde_json::json;

fn chat_body() -> String {
    // About 1 000 o200k tokens: varied English words and punctuation.
    let sentence = "The server counts every prompt token and the whole max_tokens allowance, \
                    so a client that estimates both can stay under its limit at full speed. ";
    let text = sentence.repeat(36);
    json!({
        "model": "gpt-4o",
        "max_tokens": 256,
        "messages": [
            {"role": "system", "content": "You are a careful assistant."},
            {"role": "user", "content": text},
        ],
    })
    .to_string()
}

fn bench(c: &mut Criterion) {
    let body = chat_body();
    let request = reqwest::Client::new()
        .post("https://api.openai.com/v1/chat/completions")
        .bearer_auth("sk-bench")
        .body(body.clone())
        .build()
        .expect("request");
    let model = TokenCost::openai();
    let cost = model.estimate(&request);
    println!("estimated cost of the bench body: {cost:?}");

    let mut group = c.benchmark_group("estimate");
    group.bench_function("chat_1000_tokens", |b| {
        b.iter(|| model.estimate(std::hint::black_box(&request)))
    });
    group.bench_function("lane_key", |b| {
        b.iter(|| model.lane_key(std::hint::black_box(&request)))
    });
    group.finish();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let api = SimulatedApi::builder().build();
    let server = runtime.block_on(api.serve()).expect("loopback server");
    // A path that is not an LLM endpoint: the server answers without counting tokens itself.
    let url = server.url("/v1/baseline");
    let client = reqwest::Client::new();
    let mut group = c.benchmark_group("http");
    group.bench_function("loopback_post", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = client
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .expect("send");
            response.bytes().await.expect("body")
        })
    });
    group.finish();
    drop(server);
}

criterion_group!(benches, bench);
criterion_main!(benches);
