//! What an attempt's outcome means for a retry: is it worth retrying, and is it safe.
//!
//! Two questions are kept apart:
//! - **retryable**: could another attempt succeed? (429, 503, 502, 504, 408, connect errors,
//!   timeouts; 500 only for idempotent requests);
//! - **safe**: could another attempt do harm? A request is safe to send again when it is
//!   idempotent (GET, HEAD, OPTIONS, PUT, DELETE, TRACE), carries an `Idempotency-Key`, the policy
//!   opts in, or the failure proves the server did not act on it (a connection that was never
//!   established, a 429, a 503 with Retry-After, GitHub's rate-limit 403).

use http::{HeaderMap, Method, StatusCode};

use crate::signals::Signals;

/// How a request may be repeated, judged before it is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Idempotency {
    /// The method is idempotent by RFC 9110 §9.2.2.
    Method,
    /// The request carries an `Idempotency-Key` header.
    Key,
    /// Neither: repeat only when the server provably did not act, or the policy opts in.
    None,
}

impl Idempotency {
    /// Judges a request by its method and headers.
    ///
    /// ```
    /// use http::{HeaderMap, Method};
    /// use reqwest_throttle::retry::Idempotency;
    ///
    /// assert_eq!(Idempotency::of(&Method::PUT, &HeaderMap::new()), Idempotency::Method);
    /// let mut headers = HeaderMap::new();
    /// headers.insert("idempotency-key", "8e03978e".parse().unwrap());
    /// assert_eq!(Idempotency::of(&Method::POST, &headers), Idempotency::Key);
    /// assert_eq!(Idempotency::of(&Method::POST, &HeaderMap::new()), Idempotency::None);
    /// ```
    pub fn of(method: &Method, headers: &HeaderMap) -> Idempotency {
        let idempotent_method = matches!(
            *method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::PUT
                | Method::DELETE
                | Method::TRACE
        );
        if idempotent_method {
            Idempotency::Method
        } else if headers.contains_key("idempotency-key") {
            Idempotency::Key
        } else {
            Idempotency::None
        }
    }

    /// Whether repeating the request is harmless whatever the server did.
    pub fn is_idempotent(self) -> bool {
        self != Idempotency::None
    }
}

/// What an attempt ended with, reduced to what the retry decision needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Attempt {
    /// A response with this status.
    Status(StatusCode),
    /// The connection could not be established: nothing was sent.
    ConnectError,
    /// The attempt timed out: the server may or may not have acted.
    Timeout,
    /// The connection was closed or reset before the response completed (a hang-up): the
    /// request may or may not have reached the server.
    Disconnected,
    /// Any other transport error (body, decode, redirect): not retried.
    OtherError,
}

impl Attempt {
    /// Reads a `reqwest_middleware` error.
    ///
    /// Besides reqwest's own connect and timeout errors and the policy's
    /// [`AttemptTimedOut`](crate::Error::AttemptTimedOut), an `std::io::Error` of kind
    /// `ConnectionRefused` (nothing was sent) or `TimedOut` anywhere in the source chain counts,
    /// so middlewares below this one (a test double, a custom transport) can report them too. A
    /// hang-up is hyper's "connection closed before message completed", or an `std::io::Error`
    /// of kind `ConnectionReset`, `ConnectionAborted`, `BrokenPipe` or `UnexpectedEof`.
    pub fn of_error(error: &reqwest_middleware::Error) -> Attempt {
        if let reqwest_middleware::Error::Reqwest(error) = error {
            if error.is_connect() {
                return Attempt::ConnectError;
            }
            if error.is_timeout() {
                return Attempt::Timeout;
            }
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = match error {
            reqwest_middleware::Error::Middleware(error) => Some(error.as_ref()),
            reqwest_middleware::Error::Reqwest(error) => Some(error),
        };
        while let Some(error) = source {
            if let Some(crate::Error::AttemptTimedOut { .. }) = error.downcast_ref::<crate::Error>()
            {
                return Attempt::Timeout;
            }
            if let Some(io) = error.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind;
                match io.kind() {
                    ErrorKind::ConnectionRefused => return Attempt::ConnectError,
                    ErrorKind::TimedOut => return Attempt::Timeout,
                    ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
                    | ErrorKind::UnexpectedEof => return Attempt::Disconnected,
                    _ => {}
                }
            }
            if let Some(hyper) = error.downcast_ref::<hyper::Error>() {
                if hyper.is_incomplete_message() || hyper.is_canceled() {
                    return Attempt::Disconnected;
                }
            }
            source = error.source();
        }
        Attempt::OtherError
    }
}

/// Whether an outcome is worth another attempt, and under which condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Not retried: success, a final status or an error another attempt cannot fix.
    Final,
    /// Retried whatever the method: the server provably did not act on the request.
    RetryNotActed,
    /// Retried only if the request is safe to repeat.
    RetryIfSafe,
    /// Retried only if the request is idempotent (500: the server may have acted half-way).
    RetryIfIdempotent,
}

/// Whether `status` with these `signals` is the server saying "you are rate limited".
///
/// 429 always; 403 when the announced requests remaining are zero (GitHub's primary limit).
pub fn is_rate_limited(status: StatusCode, signals: &Signals) -> bool {
    if status == StatusCode::TOO_MANY_REQUESTS {
        return true;
    }
    status == StatusCode::FORBIDDEN
        && signals
            .rate_limits
            .as_ref()
            .and_then(|limits| limits.requests)
            .and_then(|window| window.remaining)
            == Some(0)
}

/// Classifies an attempt (see the module doc). `x-should-retry` overrides the status.
pub fn classify(attempt: Attempt, signals: &Signals) -> Verdict {
    let by_status = match attempt {
        Attempt::ConnectError => return Verdict::RetryNotActed,
        Attempt::Timeout | Attempt::Disconnected => Verdict::RetryIfSafe,
        Attempt::OtherError => return Verdict::Final,
        Attempt::Status(status) if is_rate_limited(status, signals) => Verdict::RetryNotActed,
        Attempt::Status(StatusCode::SERVICE_UNAVAILABLE) if signals.retry_after.is_some() => {
            Verdict::RetryNotActed
        }
        Attempt::Status(
            StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::BAD_GATEWAY
            | StatusCode::GATEWAY_TIMEOUT
            | StatusCode::REQUEST_TIMEOUT,
        ) => Verdict::RetryIfSafe,
        Attempt::Status(StatusCode::INTERNAL_SERVER_ERROR) => Verdict::RetryIfIdempotent,
        Attempt::Status(_) => Verdict::Final,
    };
    match (signals.should_retry, attempt) {
        (Some(false), _) => Verdict::Final,
        // The server vouches for the retry; safety is still required for a non-idempotent request.
        (Some(true), Attempt::Status(status))
            if by_status == Verdict::Final && !status.is_success() =>
        {
            Verdict::RetryIfSafe
        }
        _ => by_status,
    }
}

/// Whether a request judged `idempotency` may be retried after `verdict`; `opt_in` is the
/// policy's consent to retry non-idempotent requests on any retryable outcome.
pub fn may_retry(verdict: Verdict, idempotency: Idempotency, opt_in: bool) -> bool {
    match verdict {
        Verdict::Final => false,
        Verdict::RetryNotActed => true,
        Verdict::RetryIfSafe => idempotency.is_idempotent() || opt_in,
        Verdict::RetryIfIdempotent => idempotency.is_idempotent() || opt_in,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn statuses_and_transport_failures_classify() {
        let none = Signals::default();
        let status = |code: u16| Attempt::Status(StatusCode::from_u16(code).unwrap());
        assert_eq!(classify(status(429), &none), Verdict::RetryNotActed);
        assert_eq!(classify(status(502), &none), Verdict::RetryIfSafe);
        assert_eq!(classify(status(404), &none), Verdict::Final);
        assert_eq!(
            classify(Attempt::ConnectError, &none),
            Verdict::RetryNotActed
        );
    }

    #[test]
    fn a_hang_up_anywhere_in_the_source_chain_is_a_disconnection() {
        for kind in [
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::ConnectionAborted,
            std::io::ErrorKind::BrokenPipe,
            std::io::ErrorKind::UnexpectedEof,
        ] {
            let error = reqwest_middleware::Error::Middleware(
                std::io::Error::new(kind, "peer hung up").into(),
            );
            assert_eq!(Attempt::of_error(&error), Attempt::Disconnected, "{kind:?}");
        }
        assert_eq!(
            classify(Attempt::Disconnected, &Signals::default()),
            Verdict::RetryIfSafe
        );
    }

    fn signals_with(retry_after: Option<u64>, should_retry: Option<bool>) -> Signals {
        Signals {
            retry_after: retry_after.map(Duration::from_secs),
            should_retry,
            rate_limits: None,
        }
    }

    #[test]
    fn every_status_is_classified() {
        let none = Signals::default();
        let expect = |code: u16, verdict| {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(classify(Attempt::Status(status), &none), verdict, "{code}");
        };
        for code in [
            200, 201, 204, 301, 304, 400, 401, 403, 404, 409, 422, 501, 505,
        ] {
            expect(code, Verdict::Final);
        }
        expect(429, Verdict::RetryNotActed);
        for code in [408, 502, 503, 504] {
            expect(code, Verdict::RetryIfSafe);
        }
        expect(500, Verdict::RetryIfIdempotent);
    }

    #[test]
    fn retry_after_proves_a_503_was_not_acted_on() {
        let signals = signals_with(Some(3), None);
        let verdict = classify(Attempt::Status(StatusCode::SERVICE_UNAVAILABLE), &signals);
        assert_eq!(verdict, Verdict::RetryNotActed);
        assert!(may_retry(verdict, Idempotency::None, false));
    }

    #[test]
    fn should_retry_header_overrides_the_status() {
        let no = signals_with(None, Some(false));
        assert_eq!(
            classify(Attempt::Status(StatusCode::TOO_MANY_REQUESTS), &no),
            Verdict::Final
        );
        let yes = signals_with(None, Some(true));
        assert_eq!(
            classify(Attempt::Status(StatusCode::CONFLICT), &yes),
            Verdict::RetryIfSafe
        );
        // A success is never retried, whatever the header says.
        assert_eq!(
            classify(Attempt::Status(StatusCode::OK), &yes),
            Verdict::Final
        );
    }

    #[test]
    fn post_without_key_is_retried_only_when_the_server_did_not_act() {
        let post = Idempotency::of(&Method::POST, &HeaderMap::new());
        assert!(!may_retry(Verdict::RetryIfIdempotent, post, false));
        assert!(!may_retry(Verdict::RetryIfSafe, post, false));
        assert!(may_retry(Verdict::RetryNotActed, post, false));
        assert!(may_retry(Verdict::RetryIfSafe, post, true));
        let patch = Idempotency::of(&Method::PATCH, &HeaderMap::new());
        assert_eq!(patch, Idempotency::None);
    }

    #[test]
    fn github_rate_limit_403_is_rate_limited() {
        use crate::signals::{HeaderFamily, RateLimits, Window};
        let mut limits = RateLimits {
            family: HeaderFamily::GitHub,
            requests: Some(Window {
                limit: Some(5_000),
                remaining: Some(0),
                reset_in: Some(Duration::from_secs(60)),
            }),
            tokens: None,
            input_tokens: None,
            output_tokens: None,
            resource: Some("core".into()),
        };
        let signals = Signals {
            rate_limits: Some(limits.clone()),
            ..Signals::default()
        };
        assert!(is_rate_limited(StatusCode::FORBIDDEN, &signals));
        assert_eq!(
            classify(Attempt::Status(StatusCode::FORBIDDEN), &signals),
            Verdict::RetryNotActed
        );
        limits.requests = Some(Window {
            remaining: Some(12),
            ..limits.requests.unwrap()
        });
        let signals = Signals {
            rate_limits: Some(limits),
            ..Signals::default()
        };
        assert!(!is_rate_limited(StatusCode::FORBIDDEN, &signals));
    }
}
