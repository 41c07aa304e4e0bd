//! Reading rate-limit headers of 100, 1 000 and 10 000 items: the time per item must stay flat
//! (linear growth), beside the structured-field parser alone on the same bytes.
//!
//! - `ietf_join/N`: `RateLimit-Policy` with N policies and `RateLimit` with N items in reverse
//!   order, read by [`ietf_service_limits`] (each item joins its policy by name: the worst case
//!   of a search from the front).
//! - `ietf_join_one_name/N`: N policies of one name told apart by partition keys, and N items
//!   each naming the last key (the worst case of a search among policies of one name).
//! - `sfv_parse/N`: the two fields parsed by `sfv` alone, the floor under the two above.
//! - `signals_read/N`: [`Signals::read`] on the `ietf_join` headers, the middleware's path.
//! - `repeated_lines/N`: N lines of each OpenAI `x-ratelimit-*` header, read by
//!   [`Signals::read`] (every line is parsed and compared with the first).
//!
//! Throughput is reported in items, so linear growth shows as the same items per second at
//! every size.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http::{HeaderMap, HeaderName, HeaderValue};
use reqwest_throttle::signals::{ietf_service_limits, Signals};

const SIZES: [usize; 3] = [100, 1_000, 10_000];

fn header(value: String) -> HeaderValue {
    HeaderValue::from_str(&value).expect("the bench writes valid header values")
}

/// `"p0";q=100;w=60, "p1";…` and `"p{n-1}";r=5;t=30, …, "p0";r=5;t=30`.
fn ietf_headers(n: usize) -> HeaderMap {
    let policies: Vec<String> = (0..n).map(|i| format!("\"p{i}\";q=100;w=60")).collect();
    let limits: Vec<String> = (0..n).rev().map(|i| format!("\"p{i}\";r=5;t=30")).collect();
    let mut headers = HeaderMap::new();
    headers.insert("ratelimit-policy", header(policies.join(", ")));
    headers.insert("ratelimit", header(limits.join(", ")));
    headers
}

/// N policies named `default` with partition keys `:AAAA:`…, and N items naming the last key.
fn one_name_headers(n: usize) -> HeaderMap {
    // A byte sequence per index: its four bytes, base64 (8 characters).
    let key = |i: usize| {
        let bytes = u32::try_from(i).unwrap_or(u32::MAX).to_be_bytes();
        base64(&bytes)
    };
    let policies: Vec<String> = (0..n)
        .map(|i| format!("default;q=100;w=60;pk=:{}:", key(i)))
        .collect();
    let last = key(n.saturating_sub(1));
    let limits: Vec<String> = (0..n)
        .map(|_| format!("default;r=5;t=30;pk=:{last}:"))
        .collect();
    let mut headers = HeaderMap::new();
    headers.insert("ratelimit-policy", header(policies.join(", ")));
    headers.insert("ratelimit", header(limits.join(", ")));
    headers
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (k, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if k <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// N lines of each OpenAI rate-limit header, all equal.
fn repeated_lines(n: usize) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("x-ratelimit-limit-requests", "500"),
        ("x-ratelimit-remaining-requests", "499"),
        ("x-ratelimit-reset-requests", "120ms"),
        ("x-ratelimit-limit-tokens", "30000"),
        ("x-ratelimit-remaining-tokens", "29000"),
        ("x-ratelimit-reset-tokens", "6m0s"),
    ] {
        for _ in 0..n {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
    }
    headers
}

fn sfv_list(headers: &HeaderMap, name: &str) -> usize {
    let text = headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    sfv::Parser::new(text)
        .parse::<sfv::List>()
        .map_or(0, |list| list.len())
}

fn parsers(c: &mut Criterion) {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut group = c.benchmark_group("headers");
    for n in SIZES {
        group.throughput(Throughput::Elements(n as u64));
        let ietf = ietf_headers(n);
        assert_eq!(ietf_service_limits(&ietf).len(), n);
        group.bench_with_input(BenchmarkId::new("ietf_join", n), &ietf, |b, headers| {
            b.iter(|| black_box(ietf_service_limits(black_box(headers))))
        });
        group.bench_with_input(BenchmarkId::new("sfv_parse", n), &ietf, |b, headers| {
            b.iter(|| {
                black_box(sfv_list(black_box(headers), "ratelimit-policy"))
                    + black_box(sfv_list(black_box(headers), "ratelimit"))
            })
        });
        group.bench_with_input(BenchmarkId::new("signals_read", n), &ietf, |b, headers| {
            b.iter(|| black_box(Signals::read(black_box(headers), now)))
        });
        let one_name = one_name_headers(n);
        assert_eq!(ietf_service_limits(&one_name).len(), n + n - 1);
        group.bench_with_input(
            BenchmarkId::new("ietf_join_one_name", n),
            &one_name,
            |b, headers| b.iter(|| black_box(ietf_service_limits(black_box(headers)))),
        );
        let repeated = repeated_lines(n);
        assert!(Signals::read(&repeated, now).rate_limits.is_some());
        group.bench_with_input(
            BenchmarkId::new("repeated_lines", n),
            &repeated,
            |b, headers| b.iter(|| black_box(Signals::read(black_box(headers), now))),
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = parsers
}
criterion_main!(benches);
