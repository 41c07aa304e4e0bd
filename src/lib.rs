//! reqwest-throttle: a `reqwest_middleware::Middleware` that makes a `reqwest` client a good
//! citizen of rate-limited APIs.
#![deny(missing_docs)]
pub mod breaker;
