//! The clients measured side by side against the same real limiter.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::RetryTransientMiddleware;
use reqwest_throttle::{Policy, Rate, Throttle};

/// One client configuration, built fresh for every run.
#[derive(Clone, Copy, Debug)]
pub enum Contender {
    /// reqwest-throttle with nothing configured: `Throttle::builder().build()`.
    ThrottleDefaults,
    /// reqwest-throttle told the server's limit: `.host("127.0.0.1", Policy::new().rate(rate))`
    /// (a host rule without a port matches every port of that host).
    ThrottleConfigured(Rate),
    /// reqwest-retry's `RetryTransientMiddleware`, default exponential backoff, 3 retries.
    ReqwestRetry,
    /// governor pacing every attempt at `per_second` (its default burst, the whole second),
    /// below reqwest-retry as above.
    GovernorRetry { per_second: u32 },
}

impl Contender {
    /// The four clients of the comparison, for a server documented at `per_second`.
    pub fn all(per_second: u32) -> [Contender; 4] {
        [
            Contender::ThrottleDefaults,
            Contender::ThrottleConfigured(Rate::per_second(u64::from(per_second))),
            Contender::ReqwestRetry,
            Contender::GovernorRetry { per_second },
        ]
    }

    pub fn name(&self) -> String {
        match self {
            Contender::ThrottleDefaults => "throttle, nothing configured".to_owned(),
            Contender::ThrottleConfigured(rate) => format!("throttle, rate {rate}"),
            Contender::ReqwestRetry => "reqwest-retry (exp., 3 retries)".to_owned(),
            Contender::GovernorRetry { per_second } => {
                format!("governor {per_second}/s + reqwest-retry")
            }
        }
    }

    /// The client's middlewares, outermost first.
    pub fn layers(&self) -> Result<Vec<Arc<dyn Middleware>>, String> {
        let retry = || {
            Arc::new(RetryTransientMiddleware::new_with_policy(
                ExponentialBackoff::builder().build_with_max_retries(3),
            )) as Arc<dyn Middleware>
        };
        Ok(match *self {
            Contender::ThrottleDefaults => {
                let throttle = Throttle::builder()
                    .build()
                    .map_err(|e| format!("throttle: {e}"))?;
                vec![Arc::new(throttle)]
            }
            Contender::ThrottleConfigured(rate) => {
                let throttle = Throttle::builder()
                    .host("127.0.0.1", Policy::new().rate(rate))
                    .build()
                    .map_err(|e| format!("throttle: {e}"))?;
                vec![Arc::new(throttle)]
            }
            Contender::ReqwestRetry => vec![retry()],
            Contender::GovernorRetry { per_second } => {
                let per_second = NonZeroU32::new(per_second)
                    .ok_or("governor: a rate of 0 per second paces nothing")?;
                let pacing =
                    GovernorPacing(Arc::new(RateLimiter::direct(Quota::per_second(per_second))));
                // Retry outside, pacing inside: every retry waits for its own slot too.
                vec![retry(), Arc::new(pacing)]
            }
        })
    }
}

/// Waits for a governor slot before each attempt.
struct GovernorPacing(Arc<DefaultDirectRateLimiter>);

#[async_trait::async_trait]
impl Middleware for GovernorPacing {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        self.0.until_ready().await;
        next.run(request, extensions).await
    }
}
