//! # reqwest-throttle
//!
//! A [`reqwest_middleware::Middleware`] that makes a `reqwest` client a good citizen of
//! rate-limited APIs. Wrap the client once:
//!
//! ```
//! use reqwest_throttle::{Policy, Rate, Throttle};
//!
//! let throttle = Throttle::builder()
//!     .host("api.github.com", Policy::new().rate(Rate::per_hour(5_000)).concurrency(8))
//!     .build()?;
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(throttle.clone())
//!     .build();
//! # drop(client);
//! # Ok::<(), reqwest_throttle::PolicyError>(())
//! ```
//!
//! and from then on every request to a host waits for its turn under that host's **rate**
//! (an exact GCRA, [`limiter::Gcra`]) and **concurrency cap**, requests are served in arrival
//! order, a request that would wait longer than its `max_wait` fails at once with a typed
//! [`Error`], and [`Throttle::stats`] tells what happened. Hosts with no rule get
//! [`Policy::default`]: no proactive rate cap and at most [`DEFAULT_CONCURRENCY`] requests in
//! flight, with the server's signals honoured, safe retries and a circuit breaker.
//!
//! To throttle only the hosts you name and leave every other host exactly as the bare client
//! would send to it (no lane, no retry, no breaker, no pause, no cap), make
//! [`Policy::passthrough`] the default (or give it to a host pattern):
//!
//! ```
//! use reqwest_throttle::{Policy, Rate, Throttle};
//!
//! let throttle = Throttle::builder()
//!     .host("api.github.com", Policy::new().rate(Rate::per_hour(5_000)).concurrency(8))
//!     .default_policy(Policy::passthrough())
//!     .build()?;
//! # drop(throttle);
//! # Ok::<(), reqwest_throttle::PolicyError>(())
//! ```
//!
//! Each response of a throttled host carries an [`Outcome`] in its extensions: the attempts it
//! took, the time it waited for its turns, and whether it is a 429 or 503 handed back because
//! the retries ran out. A refused request's [`Error`] says when to try again
//! ([`Error::retry_in`]) and whether anything was sent ([`Error::is_refusal`]).
//!
//! Lanes are per `scheme://host:port` by default; [`ThrottleBuilder::lane_key`] chooses another
//! key (an API key's hash, a route).
//!
//! A token limit ([`Policy::tokens`]) needs a cost model that prices requests in tokens: the
//! `llm` feature's `Policy::openai()` and `Policy::anthropic()` bring one, or write your own
//! [`cost::CostModel`] (its `#[async_trait]` is re-exported here: [`macro@async_trait`]).
//!
//! To put a throttle in front of traffic that already works, start in shadow mode
//! ([`Policy::shadow`]): requests leave as before and [`Throttle::stats`] shows what the throttle
//! would have done; then enforce a share of them by tenant, changed at runtime
//! ([`Throttle::rollout`]). See [`rollout`].
//!
//! Configuration errors ([`PolicyError`]) come from [`ThrottleBuilder::build`], once; the
//! runtime [`Error`] is only what handling a request can meet.
//!
//! # How a request goes through
//!
//! ```text
//! Throttle::handle(req)
//!   lane = lanes.lane_for(&req)            a lane per key (host, API key, model), bounded
//!   plan = lane.cost_of(&req, ext)         cost, deadline, enforced or shadowed, retry state
//!   loop {
//!     ticket = lane.admit(&plan)           breaker, booking (this process's budget or the
//!                                          store's), cooldown, concurrency slots; a shadowed
//!                                          request's turn is recorded, never waited on
//!     (resp, a) = ticket.send(req, next)   one assessment from the lane's classifier; the pace
//!                                          learner, the breaker and the counters act on it
//!     plan.decide(&a)                      return, or sleep and try again
//!   }
//! ```
//!
//! Rate comes before concurrency (a task never holds a slot while it waits for rate), a retry
//! books again, a 429 or 503 pauses the whole lane, and a request dropped at any point gives
//! back everything it held. The algorithms live below the middleware and know nothing of it:
//! [`limiter`] (GCRA cells, budgets of several dimensions, reservations, the server's charge
//! per estimated unit, departures spaced as sent, and the pace learner), [`signals`] (server
//! headers parsed into plain values), [`retry`] (classification, backoff with jitter, the retry
//! budget), [`breaker`] and [`rollout`].
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod assess;
mod booker;
pub mod breaker;
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub mod config;
pub mod cost;
mod error;
mod key;
mod lane;
mod lanes;
pub mod limiter;
#[cfg(feature = "llm")]
#[cfg_attr(docsrs, doc(cfg(feature = "llm")))]
pub mod llm;
mod outcome;
mod policy;
mod request;
pub mod retry;
pub mod rollout;
pub mod signals;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod sim;
mod sliding_counter;
mod stats;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod store;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod telemetry;
#[cfg(not(feature = "metrics"))]
mod telemetry;
mod throttle;
mod time;

/// The attribute a [`cost::CostModel`] implementation needs (re-exported from `async-trait`,
/// so that writing one needs no dependency of its own): `#[reqwest_throttle::async_trait]`.
pub use async_trait::async_trait;
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub use config::ThrottleConfig;
pub use error::Error;
pub use key::LaneKey;
pub use lanes::DEFAULT_MAX_LANES;
pub use limiter::{Cost, Dimension};
pub use outcome::Outcome;
pub use policy::{HostRules, Policy, PolicyError, Rate, Rates, DEFAULT_CONCURRENCY};
pub use request::{MaxWait, RequestCost};
pub use stats::{LaneStats, StoreStats, ThrottleStats};
pub use throttle::{BreakerControl, RolloutControl, Throttle, ThrottleBuilder};

/// The README's Rust examples, compiled (and run where they do not need the network) as
/// doctests, so that what it shows keeps working.
#[cfg(all(
    doctest,
    feature = "llm",
    feature = "serde",
    feature = "redis",
    feature = "test-util"
))]
#[doc = include_str!("../README.md")]
mod readme_examples {}
