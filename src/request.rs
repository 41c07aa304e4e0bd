//! Per-request overrides, set on a request through `http::Extensions`.

use std::time::Duration;

use crate::limiter::Cost;

/// Per-request override of the policy's `max_wait`, set through `http::Extensions`.
///
/// ```
/// use std::time::Duration;
/// use reqwest_throttle::MaxWait;
///
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).build();
/// let request = client
///     .get("http://127.0.0.1:9/")
///     .with_extension(MaxWait(Duration::from_millis(200)));
/// # drop(request);
/// ```
///
/// This type is frozen: it is the one value it wraps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxWait(pub Duration);

/// Per-request override of what the request costs, set through `http::Extensions`.
///
/// ```
/// use reqwest_throttle::{Cost, Dimension, RequestCost};
///
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).build();
/// // A batch endpoint that counts as ten requests against the server's limit.
/// let request = client
///     .post("http://127.0.0.1:9/batch")
///     .with_extension(RequestCost(Cost::requests(10)));
/// # drop(request);
/// ```
///
/// This type is frozen: it is the one value it wraps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestCost(pub Cost);
