//! Rate-limit headers, each family read into one [`Window`] (limit, remaining, time until
//! reset) per dimension.
//!
//! | family | headers | reset |
//! |---|---|---|
//! | [`HeaderFamily::Anthropic`] | `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}` | RFC 3339 instant |
//! | [`HeaderFamily::OpenAi`] | `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` (OpenAI, Azure OpenAI) | Go duration (`6m0s`) |
//! | [`HeaderFamily::Ietf`] | `RateLimit` + `RateLimit-Policy` structured-field lists | delta seconds (`t`) |
//! | [`HeaderFamily::IetfLegacy`] | `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` | delta seconds |
//! | [`HeaderFamily::GitHub`] | `x-ratelimit-{limit,remaining,used,reset,resource}` (GitHub), `x-rate-limit-*` (X) | Unix epoch seconds |
//!
//! Instants (RFC 3339, epoch) become delays against the response's `Date` header when it is
//! present, else against `now`, and an instant in the past is a zero delay. Invalid values
//! (Azure's `-1` "unknown", garbage, non-UTF-8) are `None` for that field only; the rest of
//! the family is still used.
//!
//! Each family is read in its own file; this one holds what they share (the [`RateLimits`]
//! they produce and the [`rate_limits`] dispatcher that picks one).

use std::time::{Duration, SystemTime};

use http::HeaderMap;

use super::Present;

mod anthropic;
mod github;
mod ietf;
mod openai;

pub use anthropic::anthropic_limits;
pub use github::github_limits;
pub use ietf::{ietf_legacy_limits, ietf_limits, ietf_service_limits, IetfServiceLimit};
pub use openai::openai_limits;

/// Which convention a set of rate-limit headers follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderFamily {
    /// OpenAI and Azure OpenAI: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`.
    OpenAi,
    /// Anthropic: `anthropic-ratelimit-*`, resets as RFC 3339 instants.
    Anthropic,
    /// GitHub and X: `x-ratelimit-{limit,remaining,used,reset}`, reset as Unix epoch seconds.
    GitHub,
    /// The IETF `RateLimit` / `RateLimit-Policy` structured fields
    /// (draft-ietf-httpapi-ratelimit-headers, revisions 08 and later).
    Ietf,
    /// The older IETF trio `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`.
    IetfLegacy,
}

/// One rate-limit dimension as the server announced it. Any field may be missing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Window {
    /// The quota of the current window.
    pub limit: Option<u64>,
    /// What is left of it.
    pub remaining: Option<u64>,
    /// Time until the quota is replenished (fully, for most servers). May be
    /// [`Duration::MAX`] for absurd values: cap it.
    pub reset_in: Option<Duration>,
}

impl Window {
    /// A window announcing `limit`, `remaining` and `reset_in` (each possibly unknown).
    ///
    /// ```
    /// use std::time::Duration;
    /// use reqwest_throttle::signals::Window;
    ///
    /// let window = Window::new(Some(60), Some(0), Some(Duration::from_secs(20)));
    /// assert_eq!(window.remaining, Some(0));
    /// ```
    pub const fn new(
        limit: Option<u64>,
        remaining: Option<u64>,
        reset_in: Option<Duration>,
    ) -> Window {
        Window {
            limit,
            remaining,
            reset_in,
        }
    }

    /// `Some(self)` when at least one field is known.
    fn known(self) -> Option<Window> {
        (self != Window::default()).then_some(self)
    }
}

/// The rate limits a response announced, per dimension.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimits {
    /// Which header convention they were read from.
    pub family: HeaderFamily,
    /// Requests (every family).
    pub requests: Option<Window>,
    /// Tokens (OpenAI, Anthropic, IETF with `qu="tokens"`).
    pub tokens: Option<Window>,
    /// Input (prompt) tokens (Anthropic, IETF with `qu="input-tokens"`).
    pub input_tokens: Option<Window>,
    /// Output (completion) tokens (Anthropic, IETF with `qu="output-tokens"`).
    pub output_tokens: Option<Window>,
    /// The resource the limit applies to (GitHub's `x-ratelimit-resource`: `core`,
    /// `search`, `graphql`…).
    pub resource: Option<String>,
}

impl RateLimits {
    fn new(family: HeaderFamily) -> RateLimits {
        RateLimits {
            family,
            requests: None,
            tokens: None,
            input_tokens: None,
            output_tokens: None,
            resource: None,
        }
    }

    /// `Some(self)` when at least one dimension is known.
    fn usable(self) -> Option<RateLimits> {
        let any = self.requests.is_some()
            || self.tokens.is_some()
            || self.input_tokens.is_some()
            || self.output_tokens.is_some();
        any.then_some(self)
    }
}

/// Reads the rate limits from whichever header family is present.
///
/// When several families are present, the first usable one in this order wins: Anthropic,
/// OpenAI, IETF `RateLimit`, IETF legacy trio, GitHub. Vendor families come first because
/// they carry more dimensions (tokens) than the generic ones; among the generic ones, delta
/// seconds (IETF) need no clock agreement, unlike epoch resets (GitHub). A family whose
/// headers are all invalid is skipped. `None` when nothing usable is present.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use http::HeaderMap;
/// use reqwest_throttle::signals::{rate_limits, HeaderFamily};
///
/// let mut headers = HeaderMap::new();
/// headers.insert("ratelimit-policy", r#""default";q=100;w=60"#.parse().unwrap());
/// headers.insert("ratelimit", r#""default";r=50;t=30"#.parse().unwrap());
/// let limits = rate_limits(&headers, SystemTime::now()).unwrap();
/// assert_eq!(limits.family, HeaderFamily::Ietf);
/// let requests = limits.requests.unwrap();
/// assert_eq!((requests.limit, requests.remaining), (Some(100), Some(50)));
/// assert_eq!(requests.reset_in, Some(Duration::from_secs(30)));
/// ```
pub fn rate_limits(headers: &HeaderMap, now: SystemTime) -> Option<RateLimits> {
    let present = Present::scan(headers);
    let anthropic = || {
        present
            .anthropic
            .then(|| anthropic_limits(headers, now))
            .flatten()
    };
    let x_ratelimit = |read: fn(&HeaderMap, SystemTime) -> Option<RateLimits>| {
        present.x_ratelimit.then(|| read(headers, now)).flatten()
    };
    let ietf = |read: fn(&HeaderMap, SystemTime) -> Option<RateLimits>| {
        present.ietf.then(|| read(headers, now)).flatten()
    };
    anthropic()
        .or_else(|| x_ratelimit(|headers, _| openai_limits(headers)))
        .or_else(|| ietf(|headers, _| ietf_limits(headers)))
        .or_else(|| ietf(ietf_legacy_limits))
        .or_else(|| x_ratelimit(github_limits))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};
    use std::time::UNIX_EPOCH;

    /// A header map from `(name, raw value)` pairs, repeated names appended.
    pub(super) fn map(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value),
            ) {
                (Ok(name), Ok(value)) => {
                    headers.append(name, value);
                }
                _ => panic!("bad test header {name}"),
            }
        }
        headers
    }

    pub(super) fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    pub(super) fn window(
        limit: Option<u64>,
        remaining: Option<u64>,
        reset_secs: Option<u64>,
    ) -> Option<Window> {
        Some(Window {
            limit,
            remaining,
            reset_in: reset_secs.map(Duration::from_secs),
        })
    }

    #[test]
    fn family_precedence_and_fallthrough() {
        let both = map(&[
            ("anthropic-ratelimit-requests-remaining", b"7"),
            ("x-ratelimit-remaining-requests", b"9"),
            ("ratelimit", br#""d";r=1"#),
            ("x-ratelimit-remaining", b"3"),
        ]);
        let family = rate_limits(&both, at(0)).map(|l| l.family);
        assert_eq!(family, Some(HeaderFamily::Anthropic));
        // An unusable Anthropic set falls through to the next family.
        let garbage_first = map(&[
            ("anthropic-ratelimit-requests-remaining", b"lots"),
            ("x-ratelimit-remaining-requests", b"9"),
        ]);
        let family = rate_limits(&garbage_first, at(0)).map(|l| l.family);
        assert_eq!(family, Some(HeaderFamily::OpenAi));
        let generic = map(&[
            ("ratelimit-remaining", b"2"),
            ("x-ratelimit-remaining", b"3"),
        ]);
        let family = rate_limits(&generic, at(0)).map(|l| l.family);
        assert_eq!(family, Some(HeaderFamily::IetfLegacy));
    }

    #[test]
    fn repeated_and_non_utf8_values() {
        let headers = map(&[
            ("x-ratelimit-remaining-requests", b"5"),
            ("x-ratelimit-remaining-requests", b"5"),
            ("x-ratelimit-limit-requests", b"60"),
            ("x-ratelimit-limit-requests", b"70"),
            ("x-ratelimit-reset-requests", b"\xc3\x28"),
        ]);
        assert_eq!(
            openai_limits(&headers).and_then(|l| l.requests),
            window(None, Some(5), None)
        );
        assert_eq!(rate_limits(&HeaderMap::new(), at(0)), None);
    }
}
