//! [`Outage`]: a period during which the simulated server is down.

use std::time::Duration;

use http::StatusCode;

/// A period during which the simulated server is down; see
/// [`SimulatedApi::set_outage`](super::SimulatedApi::set_outage).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outage {
    /// Every request is answered with this status (typically 503 or 502), without rate-limit
    /// headers and without charging the limiter.
    Status(StatusCode),
    /// As [`Outage::Status`], with a retry hint of this delay in the configured
    /// [`RetryAfterStyle`](super::RetryAfterStyle) (`Retry-After` in seconds if the style is
    /// `None`).
    StatusWithRetryAfter(StatusCode, Duration),
    /// Connections are refused. Over sockets the server stops listening (a connect fails with
    /// `ECONNREFUSED`) and closes its open connections; in middleware mode the request fails
    /// with an [`io::Error`](std::io::Error) of kind
    /// [`io::ErrorKind::ConnectionRefused`](std::io::ErrorKind::ConnectionRefused).
    Refuse,
    /// Connections are accepted and requests read, but closed without an answer (the client
    /// cannot know whether the server acted). In middleware mode the request fails with an
    /// [`io::Error`](std::io::Error) of kind
    /// [`io::ErrorKind::ConnectionReset`](std::io::ErrorKind::ConnectionReset).
    Hangup,
    /// The account has no credit left: every request is answered `429` with OpenAI's
    /// `insufficient_quota` body and no retry hint (retrying cannot help).
    InsufficientQuota,
}
