//! How the simulated server answers one request, whichever way it came in: it decides (outage,
//! `fail_every`, then the limiters) and counts the request under one lock, renders the answer,
//! then waits the configured latency.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use http::{Method, StatusCode};
use tokio::time::Instant;

use super::api::{SimulatedApi, State};
use super::headers::{self, RetryAfterStyle};
use super::limiter::{Cost, Dimension, Quota, Verdict};
use super::llm::{Generated, LlmCall};
use super::outage::Outage;
use super::stats::{Outcome, RecordedRequest};

/// A request as the simulated server sees it, whichever way it came in.
pub(super) struct SimRequest {
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) body: Bytes,
}

/// What the server decided for one request.
enum Decision {
    Ok {
        quotas: Vec<(Dimension, Quota)>,
        /// The LLM call answered, and the tokens it reports.
        llm: Option<(LlmCall, Generated)>,
        /// Tokens counted once the answer has left (a tokens limit counted after the answer).
        owed: u64,
    },
    Limited {
        quotas: Vec<(Dimension, Quota)>,
        dimension: Dimension,
        retry_in: Duration,
    },
    Failed {
        status: StatusCode,
        retry_in: Option<Duration>,
    },
    InsufficientQuota,
    Refused(io::ErrorKind),
}

/// An answer, before it is turned into a `reqwest` or `hyper` response.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

/// The server's reply: an answer, or a dropped connection.
pub(super) enum Reply {
    Answer(Answer),
    Drop(io::ErrorKind),
}

impl SimulatedApi {
    /// Handles one request: decides, waits the latency, answers.
    pub(super) async fn respond(&self, request: SimRequest) -> Reply {
        let _in_flight = InFlight::enter(self);
        let (seq, decision) = self.decide(&request);
        let owed = match &decision {
            Decision::Ok { owed, .. } => *owed,
            _ => 0,
        };
        let reply = self.render((seq, decision));
        let latency = self.config().latency;
        if matches!(reply, Reply::Answer(_)) && !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if owed > 0 {
            self.lock().count_after(Instant::now(), owed);
        }
        reply
    }

    /// Decides what to do with a request and counts it, all under one lock so that
    /// concurrent requests are decided in a single order.
    fn decide(&self, request: &SimRequest) -> (u64, Decision) {
        let outage = self.outage();
        let config = self.config();
        let call = LlmCall::parse(
            &request.method,
            &request.path,
            &request.body,
            config.token_rule,
            config.usage_rule,
        );
        let mut state = self.lock();
        let now = Instant::now();
        let decision = match (outage, config.fail_every) {
            (Some(Outage::InsufficientQuota), _) => Decision::InsufficientQuota,
            (Some(Outage::Refuse), _) => Decision::Refused(io::ErrorKind::ConnectionRefused),
            (Some(Outage::Hangup), _) => Decision::Refused(io::ErrorKind::ConnectionReset),
            (Some(Outage::Status(status)), _) => Decision::Failed {
                status,
                retry_in: None,
            },
            (Some(Outage::StatusWithRetryAfter(status, delay)), _) => Decision::Failed {
                status,
                retry_in: Some(delay),
            },
            (None, Some(status)) => Decision::Failed {
                status,
                retry_in: None,
            },
            (None, None) => {
                let cost = Cost::request(call.as_ref().map_or(0, LlmCall::charge));
                // The sequence number this request is about to get, below.
                let seq = state.stats.received.saturating_add(1);
                let call = call.map(|call| (call.generate(seq), call));
                state.admit(now, cost, call, config.tokens_after_answer)
            }
        };
        let (outcome, status) = match &decision {
            Decision::Ok { .. } => (Outcome::Ok, Some(StatusCode::OK)),
            Decision::InsufficientQuota => (Outcome::Limited, Some(StatusCode::TOO_MANY_REQUESTS)),
            Decision::Limited { .. } => (Outcome::Limited, Some(config.limited_status)),
            Decision::Failed { status, .. } => (Outcome::Failed, Some(*status)),
            Decision::Refused(_) => (Outcome::Refused, None),
        };
        let stats = &mut state.stats;
        stats.received = stats.received.saturating_add(1);
        let seq = stats.received;
        if let Decision::Ok {
            llm: Some((call, generated)),
            owed,
            ..
        } = &decision
        {
            if !config.tokens_after_answer {
                stats.tokens_charged = stats.tokens_charged.saturating_add(call.charge());
            }
            debug_assert!(*owed == 0 || config.tokens_after_answer);
            stats.prompt_tokens = stats.prompt_tokens.saturating_add(generated.prompt);
            stats.completion_tokens = stats.completion_tokens.saturating_add(generated.completion);
        }
        let counter = match outcome {
            Outcome::Ok => &mut stats.ok,
            Outcome::Limited => &mut stats.limited,
            Outcome::Failed => &mut stats.failed,
            Outcome::Refused => &mut stats.refused,
        };
        *counter = counter.saturating_add(1);
        stats.first_request.get_or_insert(now);
        stats.last_request = Some(now);
        if state.log.len() < config.record_limit {
            state.log.push(RecordedRequest {
                seq,
                at: now,
                method: request.method.clone(),
                path: request.path.clone(),
                outcome,
                status,
            });
        }
        drop(state);
        tracing::trace!(seq, method = %request.method, path = %request.path, ?outcome, "simulated API decided");
        (seq, decision)
    }

    /// Turns a decision into headers and a body.
    fn render(&self, (seq, decision): (u64, Decision)) -> Reply {
        let config = self.config();
        let wall_now = self.wall_now();
        let mut headers = HeaderMap::new();
        headers::date(wall_now, &mut headers);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let (status, body) = match decision {
            Decision::Refused(kind) => return Reply::Drop(kind),
            Decision::Ok { quotas, llm, .. } => {
                headers::rate_limit(
                    config.headers,
                    &quotas,
                    config.reset_late,
                    wall_now,
                    &mut headers,
                );
                match llm {
                    Some((call, generated)) => {
                        let (content_type, body) = call.render(seq, generated);
                        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
                        (StatusCode::OK, body)
                    }
                    None => (StatusCode::OK, format!("{{\"id\":{seq},\"ok\":true}}")),
                }
            }
            Decision::InsufficientQuota => (
                StatusCode::TOO_MANY_REQUESTS,
                "{\"error\":{\"message\":\"You exceeded your current quota, please check your plan and billing details.\",\"type\":\"insufficient_quota\",\"param\":null,\"code\":\"insufficient_quota\"}}".to_owned(),
            ),
            Decision::Limited {
                quotas,
                dimension,
                retry_in,
            } => {
                let late = config.reset_late;
                headers::rate_limit(config.headers, &quotas, late, wall_now, &mut headers);
                headers::retry_after(
                    config.retry_after,
                    retry_in.saturating_add(late),
                    wall_now,
                    &mut headers,
                );
                let quota = quotas
                    .iter()
                    .find(|(limited, _)| *limited == dimension)
                    .map(|(_, quota)| *quota);
                let limit = quota.map_or(0, |quota| quota.limit);
                let window = quota.map_or(Duration::ZERO, |quota| quota.window);
                let body = format!(
                    "{{\"error\":{{\"message\":\"Rate limit reached on {name}: limit {limit} per {window}. Please try again in {retry}.\",\"type\":\"{name}\",\"code\":\"rate_limit_exceeded\"}}}}",
                    name = dimension.name(),
                    window = headers::go_duration(window),
                    retry = headers::go_duration(retry_in),
                );
                (config.limited_status, body)
            }
            Decision::Failed { status, retry_in } => {
                if let Some(delay) = retry_in {
                    // The caller asked for a hint: give one even if limited answers have none.
                    let style = match config.retry_after {
                        RetryAfterStyle::None => RetryAfterStyle::Seconds,
                        style => style,
                    };
                    headers::retry_after(style, delay, wall_now, &mut headers);
                }
                let reason = status.canonical_reason().unwrap_or("error");
                let body = format!(
                    "{{\"error\":{{\"message\":\"simulated failure: {} {reason}\",\"type\":\"server_error\",\"code\":{}}}}}",
                    status.as_u16(),
                    status.as_u16()
                );
                (status, body)
            }
        };
        Reply::Answer(Answer {
            status,
            headers,
            body: Bytes::from(body),
        })
    }
}

impl State {
    /// Admits a request if every dimension has room for its cost (and charges them all), or
    /// reports the dimension that will be free last. With `tokens_after_answer`, the tokens
    /// dimension only needs a token left, is charged nothing now, and the call owes its usage
    /// once answered ([`count_after`](Self::count_after)).
    fn admit(
        &mut self,
        now: Instant,
        cost: Cost,
        call: Option<(Generated, LlmCall)>,
        tokens_after_answer: bool,
    ) -> Decision {
        let counted_after = |dimension: Dimension| {
            tokens_after_answer && dimension == Dimension::Tokens && cost.tokens > 0
        };
        let verdicts: Vec<(Dimension, Verdict, Quota)> = self
            .limits
            .iter()
            .map(|(dimension, limiter)| {
                if counted_after(*dimension) {
                    // Admitted while anything is left; the quota announced is the window as it is.
                    let verdict = limiter.peek(now, 1);
                    (*dimension, verdict, limiter.peek(now, 0).quota())
                } else {
                    let verdict = limiter.peek(now, cost.of(*dimension));
                    (*dimension, verdict, verdict.quota())
                }
            })
            .collect();
        let quotas = verdicts
            .iter()
            .map(|(dimension, _, quota)| (*dimension, *quota))
            .collect();
        let limited = verdicts
            .iter()
            .filter_map(|(dimension, verdict, _)| match verdict {
                Verdict::Limit { retry_in, .. } => Some((*dimension, *retry_in)),
                Verdict::Admit(_) => None,
            })
            .max_by_key(|(_, retry_in)| *retry_in);
        match limited {
            Some((dimension, retry_in)) => {
                for (dimension, limiter) in &mut self.limits {
                    limiter.refuse(now, cost.of(*dimension));
                }
                Decision::Limited {
                    quotas,
                    dimension,
                    retry_in,
                }
            }
            None => {
                for (dimension, limiter) in &mut self.limits {
                    if !counted_after(*dimension) {
                        limiter.commit(now, cost.of(*dimension));
                    }
                }
                let owed = match &call {
                    Some((generated, _)) if tokens_after_answer => generated.total(),
                    _ => 0,
                };
                Decision::Ok {
                    quotas,
                    llm: call.map(|(generated, call)| (call, generated)),
                    owed,
                }
            }
        }
    }

    /// Counts the `tokens` an answer reported against a tokens limit counted after the answer.
    fn count_after(&mut self, now: Instant, tokens: u64) {
        for (dimension, limiter) in &mut self.limits {
            if *dimension == Dimension::Tokens {
                limiter.commit(now, tokens);
            }
        }
        self.stats.tokens_charged = self.stats.tokens_charged.saturating_add(tokens);
    }
}

/// Counts a request as in flight for as long as it lives (even if its future is dropped).
struct InFlight<'a> {
    api: &'a SimulatedApi,
}

impl<'a> InFlight<'a> {
    fn enter(api: &'a SimulatedApi) -> Self {
        let mut state = api.lock();
        let stats = &mut state.stats;
        stats.in_flight = stats.in_flight.saturating_add(1);
        stats.max_in_flight = stats.max_in_flight.max(stats.in_flight);
        InFlight { api }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut state = self.api.lock();
        state.stats.in_flight = state.stats.in_flight.saturating_sub(1);
    }
}

/// The error a client sees when the simulated server drops its request.
pub(super) fn dropped(kind: io::ErrorKind) -> io::Error {
    let what = match kind {
        io::ErrorKind::ConnectionRefused => "refused the connection (Outage::Refuse)",
        _ => "closed the connection without answering (Outage::Hangup)",
    };
    io::Error::new(kind, format!("simulated API {what}"))
}
