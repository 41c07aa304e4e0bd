//! Budgets for LLM APIs: requests **and tokens** per minute, estimated before each request and
//! reconciled after it.
//!
//! OpenAI-style APIs limit requests per minute and tokens per minute at once (Anthropic also
//! input and output tokens apart), per model and per API key. [`Policy::openai`] and
//! [`Policy::anthropic`] give a lane to each (host, model, API key) and book every request in
//! all its dimensions at once, so a request never holds tokens while it waits for a request
//! slot or the reverse:
//!
//! ```
//! use reqwest_throttle::{Policy, Rate, Throttle};
//!
//! let throttle = Throttle::builder()
//!     .host("api.openai.com", Policy::openai()
//!         .requests(Rate::per_minute(500))
//!         .tokens(Rate::per_minute(200_000)))
//!     .host("api.anthropic.com", Policy::anthropic()
//!         .requests(Rate::per_minute(50))
//!         .input_tokens(Rate::per_minute(40_000))
//!         .output_tokens(Rate::per_minute(8_000)))
//!     .build()?;
//! # drop(throttle);
//! # Ok::<(), reqwest_throttle::PolicyError>(())
//! ```
//!
//! # Per day, per model
//!
//! Providers state more than a minute's limits: requests and tokens per day too, and each model
//! of a key its own. A dimension takes all its limits at once ([`Rates`](crate::Rates): the
//! shortest is the rate, each longer one a rolling window never exceeded in any span of its
//! period), and [`Policy::model`] gives a model its own policy on the host, for the lanes the
//! cost model names for it:
//!
//! ```
//! use reqwest_throttle::{Policy, Rate, Throttle};
//!
//! let openai = Policy::openai().requests(Rate::per_minute(500)).tokens(Rate::per_minute(30_000));
//! let mini = openai
//!     .clone()
//!     .requests([Rate::per_minute(500), Rate::per_day(10_000)])
//!     .tokens([Rate::per_minute(200_000), Rate::per_day(2_000_000)]);
//! let throttle = Throttle::builder()
//!     .host("api.openai.com", openai.model("gpt-4o-mini", mini))
//!     .build()?;
//! # drop(throttle);
//! # Ok::<(), reqwest_throttle::PolicyError>(())
//! ```
//!
//! # Before: the estimate
//!
//! The JSON body of a chat completion, a Responses API call, a legacy completion, an embedding
//! or an Anthropic message is read ([`estimate`]): prompt tokens (exact with the `tiktoken`
//! feature, [`CHARS_PER_TOKEN`] characters per token without) plus the completion allowance
//! (`max_tokens` × `n`, [`DEFAULT_COMPLETION_TOKENS`] when absent), which is what the provider
//! counts against its limit when the request arrives. A [`RequestCost`](crate::RequestCost)
//! extension on a request replaces the estimate. A request larger than a whole token budget
//! fails at once with [`Error::CostTooLarge`](crate::Error::CostTooLarge): the server would
//! refuse it too, however long it waited.
//!
//! # After: the reconciliation
//!
//! The `usage` the server reports settles the booking ([`TokenCost::actual_cost`]): a JSON
//! answer is read up to a limit and handed back byte for byte (a larger one passes through
//! unread, the estimate standing; see [`TokenCost`] for every bound on reading a response); a
//! streamed answer is passed through unchanged and settled on its final usage chunk (OpenAI sends one when the request sets
//! `"stream_options": {"include_usage": true}`); without one, the estimate stands. Prompt
//! tokens are always brought to the real count. Output tokens follow the provider's
//! [`Accounting`]: OpenAI counts the whole `max_tokens` allowance when the request arrives and
//! gives nothing back, so neither does the client (refunding would let it believe in capacity
//! the server does not have); Anthropic adjusts output to what was used, and so does the client.
//!
//! The lane also follows the server's rate-limit headers (`x-ratelimit-{limit,remaining,reset}-
//! {requests,tokens}`, `anthropic-ratelimit-*`): a token limit it was not told is learned from
//! them, and it never believes more tokens are available than the server says remain. A 429
//! whose body says the token limit (not the request limit) was hit pauses the token dimension
//! only; an `insufficient_quota` 429 is returned at once and never retried.
//!
//! # Keys
//!
//! The lane's name is `scheme://host:port/MODEL/key:FINGERPRINT`: the API key (from
//! `Authorization: Bearer`, `x-api-key` or `api-key`) is never stored, logged or shown, only
//! 8 hex digits of its hash ([`key_fingerprint`]).

mod body;
mod cost_model;
mod estimate;
mod key;
mod tokens;
mod usage;

use std::time::Duration;

pub use cost_model::{read_refusal, Accounting, TokenCost};
pub use estimate::{
    estimate, Endpoint, TokenEstimate, DEFAULT_COMPLETION_TOKENS, IMAGE_TOKENS,
    LEGACY_DEFAULT_MAX_TOKENS,
};
pub use key::key_fingerprint;
pub use tokens::{count_tokens, CHARS_PER_TOKEN};
pub use usage::Usage;

use crate::retry::{Backoff, Jitter, RetryPolicy};
use crate::Policy;

/// Requests in flight at once to one (host, model, key) lane in the presets: completions take
/// seconds, so the polite default of 8 would cap a 500 RPM budget far below its rate; the
/// rate and token budgets are what protect the server.
pub const LLM_CONCURRENCY: usize = 64;

/// The retry policy of the presets: up to 3 retries, exponential backoff from 500 ms capped at
/// 8 s with full jitter (OpenAI's own clients back off from 0.5 s to 8 s), a server delay
/// (`retry-after-ms`, `Retry-After`) honoured up to 60 s (token limits refill within a minute).
/// A 429 proves the server did not act, so it is retried even for a POST; a 5xx on a POST is
/// not (the completion may have been generated and billed) unless you opt in with
/// [`RetryPolicy::retry_non_idempotent`] or send an `Idempotency-Key`.
///
/// ```
/// use reqwest_throttle::llm::llm_retry_policy;
///
/// assert_eq!(llm_retry_policy().configured_max_retries(), 3);
/// ```
pub fn llm_retry_policy() -> RetryPolicy {
    RetryPolicy::new()
        .max_retries(3)
        .backoff(
            Backoff::exponential(Duration::from_millis(500), Duration::from_secs(8))
                .jitter(Jitter::Full),
        )
        .max_retry_after(Duration::from_secs(60))
}

/// How long the LLM presets hold a new lane's later requests for its first answer (see
/// [`Policy::first_contact`]): the headers of that answer tell the limits.
pub const LLM_FIRST_CONTACT: Duration = Duration::from_secs(1);

impl Policy {
    /// The policy for OpenAI, Azure OpenAI and OpenAI-compatible APIs: lanes per (host, model,
    /// API key), token costs estimated from the body and reconciled from `usage`
    /// ([`TokenCost::openai`], output allowance kept as OpenAI counts it), [`llm_retry_policy`],
    /// [`LLM_CONCURRENCY`] requests in flight per lane, the first answer awaited for up to
    /// [`LLM_FIRST_CONTACT`] before the others go ([`Policy::first_contact`]). Add your limits:
    ///
    /// ```
    /// use reqwest_throttle::{Policy, Rate};
    ///
    /// let policy = Policy::openai()
    ///     .requests(Rate::per_minute(500))
    ///     .tokens(Rate::per_minute(200_000));
    /// assert_eq!(policy.configured_limit(reqwest_throttle::Dimension::Tokens), Some(Rate::per_minute(200_000)));
    /// ```
    ///
    /// Without limits, the lane learns them from the server's rate-limit headers.
    #[cfg_attr(docsrs, doc(cfg(feature = "llm")))]
    pub fn openai() -> Policy {
        Policy::new()
            .cost_model(TokenCost::openai())
            .retry(llm_retry_policy())
            .concurrency(LLM_CONCURRENCY)
            .first_contact(LLM_FIRST_CONTACT)
    }

    /// The policy for Anthropic's Messages API: as [`Policy::openai`], with output tokens
    /// charged as used ([`TokenCost::anthropic`]). Anthropic limits requests, input tokens and
    /// output tokens per minute:
    ///
    /// ```
    /// use reqwest_throttle::{Policy, Rate};
    ///
    /// let policy = Policy::anthropic()
    ///     .requests(Rate::per_minute(50))
    ///     .input_tokens(Rate::per_minute(40_000))
    ///     .output_tokens(Rate::per_minute(8_000));
    /// # drop(policy);
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "llm")))]
    pub fn anthropic() -> Policy {
        Policy::new()
            .cost_model(TokenCost::anthropic())
            .retry(llm_retry_policy())
            .concurrency(LLM_CONCURRENCY)
            .first_contact(LLM_FIRST_CONTACT)
    }
}
