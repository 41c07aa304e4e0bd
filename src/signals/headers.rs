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

use std::cmp::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use sfv::{BareItem, ListEntry, Parameters, Parser};

use super::duration::{parse_count, parse_go_duration, trim_ows};
use super::retry_after::parse_delay_seconds;
use super::rfc3339::rfc3339_delay;
use super::{consistent_value, header_str, reference_time, Present};

/// A reset value at or above this many seconds is a Unix timestamp, below it a delay: no
/// server means a delay of 31 years, and no epoch reset lies before September 2001. This
/// reads GitHub-style epochs and delta-seconds alike, whichever a server actually sends.
const EPOCH_THRESHOLD: Duration = Duration::from_secs(1_000_000_000);

/// Which convention a set of rate-limit headers follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// `Some(self)` when at least one field is known.
    fn known(self) -> Option<Window> {
        (self != Window::default()).then_some(self)
    }
}

/// The rate limits a response announced, per dimension.
#[derive(Clone, Debug, PartialEq, Eq)]
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

/// Reads OpenAI / Azure OpenAI headers: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`.
///
/// Resets are Go durations (`6m0s`, `17ms`); a plain number of seconds is accepted too,
/// as some OpenAI-compatible servers send one. Azure's `-1` (unknown) is `None`.
///
/// ```
/// use std::time::Duration;
/// use http::HeaderMap;
/// use reqwest_throttle::signals::openai_limits;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("x-ratelimit-limit-tokens", "150000".parse().unwrap());
/// headers.insert("x-ratelimit-remaining-tokens", "149984".parse().unwrap());
/// headers.insert("x-ratelimit-reset-tokens", "6ms".parse().unwrap());
/// let tokens = openai_limits(&headers).unwrap().tokens.unwrap();
/// assert_eq!(tokens.remaining, Some(149_984));
/// assert_eq!(tokens.reset_in, Some(Duration::from_millis(6)));
/// ```
pub fn openai_limits(headers: &HeaderMap) -> Option<RateLimits> {
    let window = |[limit, remaining, reset]: [&str; 3]| {
        Window {
            limit: consistent_value(headers, limit, parse_count),
            remaining: consistent_value(headers, remaining, parse_count),
            reset_in: consistent_value(headers, reset, |s| {
                parse_go_duration(s).or_else(|| parse_delay_seconds(s))
            }),
        }
        .known()
    };
    RateLimits {
        requests: window([
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        ]),
        tokens: window([
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        ]),
        ..RateLimits::new(HeaderFamily::OpenAi)
    }
    .usable()
}

/// Reads Anthropic headers:
/// `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}`.
///
/// Resets are RFC 3339 instants, turned into delays against the response's `Date` header
/// when present, else against `now`; a plain number of seconds is accepted too.
pub fn anthropic_limits(headers: &HeaderMap, now: SystemTime) -> Option<RateLimits> {
    let reference = reference_time(headers, now);
    let window = |[limit, remaining, reset]: [&str; 3]| {
        Window {
            limit: consistent_value(headers, limit, parse_count),
            remaining: consistent_value(headers, remaining, parse_count),
            reset_in: consistent_value(headers, reset, |s| {
                rfc3339_delay(s, reference).or_else(|| parse_delay_seconds(s))
            }),
        }
        .known()
    };
    RateLimits {
        requests: window([
            "anthropic-ratelimit-requests-limit",
            "anthropic-ratelimit-requests-remaining",
            "anthropic-ratelimit-requests-reset",
        ]),
        tokens: window([
            "anthropic-ratelimit-tokens-limit",
            "anthropic-ratelimit-tokens-remaining",
            "anthropic-ratelimit-tokens-reset",
        ]),
        input_tokens: window([
            "anthropic-ratelimit-input-tokens-limit",
            "anthropic-ratelimit-input-tokens-remaining",
            "anthropic-ratelimit-input-tokens-reset",
        ]),
        output_tokens: window([
            "anthropic-ratelimit-output-tokens-limit",
            "anthropic-ratelimit-output-tokens-remaining",
            "anthropic-ratelimit-output-tokens-reset",
        ]),
        ..RateLimits::new(HeaderFamily::Anthropic)
    }
    .usable()
}

/// Reads GitHub / X headers `x-ratelimit-{limit,remaining,used,reset}` into `requests`, and
/// `x-ratelimit-resource` into `resource`. X's API spells the same fields
/// `x-rate-limit-{limit,remaining,reset}`; those are read when the GitHub spelling is absent.
///
/// The reset is Unix epoch seconds, turned into a delay against the response's `Date`
/// header when present, else against `now` (a value below 10^9 is taken as a delay in
/// seconds instead, as some servers send under the same name). When `remaining` is missing
/// it is computed as `limit - used`.
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use http::HeaderMap;
/// use reqwest_throttle::signals::github_limits;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("x-ratelimit-limit", "5000".parse().unwrap());
/// headers.insert("x-ratelimit-remaining", "4999".parse().unwrap());
/// headers.insert("x-ratelimit-reset", "1372700873".parse().unwrap());
/// headers.insert("x-ratelimit-resource", "core".parse().unwrap());
/// let now = UNIX_EPOCH + Duration::from_secs(1_372_697_273);
/// let limits = github_limits(&headers, now).unwrap();
/// assert_eq!(limits.requests.unwrap().reset_in, Some(Duration::from_secs(3_600)));
/// assert_eq!(limits.resource.as_deref(), Some("core"));
/// ```
pub fn github_limits(headers: &HeaderMap, now: SystemTime) -> Option<RateLimits> {
    let reference = reference_time(headers, now);
    // GitHub's spelling first, then X's.
    let either = |github: &str, x: &str| {
        consistent_value(headers, github, parse_count)
            .or_else(|| consistent_value(headers, x, parse_count))
    };
    let limit = either("x-ratelimit-limit", "x-rate-limit-limit");
    let used = consistent_value(headers, "x-ratelimit-used", parse_count);
    let remaining = either("x-ratelimit-remaining", "x-rate-limit-remaining")
        .or_else(|| Some(limit?.saturating_sub(used?)));
    let reset_in = ["x-ratelimit-reset", "x-rate-limit-reset"]
        .into_iter()
        .find_map(|name| consistent_value(headers, name, |s| epoch_or_delay(s, reference)));
    let resource = consistent_value(headers, "x-ratelimit-resource", |s| {
        let s = trim_ows(s);
        (!s.is_empty()).then(|| s.to_owned())
    });
    RateLimits {
        requests: Window {
            limit,
            remaining,
            reset_in,
        }
        .known(),
        resource,
        ..RateLimits::new(HeaderFamily::GitHub)
    }
    .usable()
}

/// Reads the older IETF trio `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`
/// (drafts 00–06) into `requests`.
///
/// `RateLimit-Limit` may carry a policy list after the number (`10, 10;w=1, 50;w=60`); the
/// leading number is the limit. The reset is delta seconds (a value of 10^9 or more is
/// taken as a Unix timestamp, which some servers send).
pub fn ietf_legacy_limits(headers: &HeaderMap, now: SystemTime) -> Option<RateLimits> {
    let reference = reference_time(headers, now);
    let limit = consistent_value(headers, "ratelimit-limit", |s| {
        parse_count(s.split([',', ';']).next().unwrap_or(s))
    });
    let remaining = consistent_value(headers, "ratelimit-remaining", parse_count);
    let reset_in = consistent_value(headers, "ratelimit-reset", |s| epoch_or_delay(s, reference));
    RateLimits {
        requests: Window {
            limit,
            remaining,
            reset_in,
        }
        .known(),
        ..RateLimits::new(HeaderFamily::IetfLegacy)
    }
    .usable()
}

/// One quota policy from the IETF `RateLimit` field, joined with its `RateLimit-Policy`
/// entry (same name and, if both carry one, same partition key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IetfServiceLimit {
    /// The policy's name (the list item, a String or a Token).
    pub policy: String,
    /// `q`: the quota of the policy, from `RateLimit-Policy`.
    pub quota: Option<u64>,
    /// `qu`: the quota unit (`requests` when absent, `content-bytes`, `concurrent-requests`;
    /// non-standard units such as `tokens` are passed through).
    pub quota_unit: String,
    /// `w`: the policy's time window, from `RateLimit-Policy`.
    pub window: Option<Duration>,
    /// `r`: remaining quota units, from `RateLimit`.
    pub remaining: Option<u64>,
    /// `t`: time until more quota is available, from `RateLimit`.
    pub reset_in: Option<Duration>,
    /// `pk`: the partition key, from either field.
    pub partition_key: Option<Vec<u8>>,
}

/// Reads the IETF `RateLimit` and `RateLimit-Policy` structured fields into one entry per
/// policy: first every `RateLimit` item (joined with its policy), then policies that have no
/// `RateLimit` item.
///
/// Each field's lines are combined as RFC 9651 §4.2 says (joined with commas); a field that
/// does not parse as a List is ignored as a whole, and an item whose known parameters have
/// the wrong type (`r=-1`, `t="soon"`, `q=1.5`) is ignored alone. Items that are not a
/// String or Token (older drafts' bare integers) are ignored. Unknown parameters are
/// comments, as the draft says.
pub fn ietf_service_limits(headers: &HeaderMap) -> Vec<IetfServiceLimit> {
    let policies: Vec<PolicyItem> = sf_list(headers, "ratelimit-policy")
        .iter()
        .filter_map(policy_item)
        .collect();
    let limits: Vec<LimitItem> = sf_list(headers, "ratelimit")
        .iter()
        .filter_map(limit_item)
        .collect();

    let mut used = vec![false; policies.len()];
    let mut joined = Vec::with_capacity(limits.len() + policies.len());
    for limit in limits {
        let found = policies.iter().position(|policy| {
            policy.name == limit.name
                && (policy.partition_key.is_none()
                    || limit.partition_key.is_none()
                    || policy.partition_key == limit.partition_key)
        });
        let policy = found.and_then(|index| {
            if let Some(flag) = used.get_mut(index) {
                *flag = true;
            }
            policies.get(index)
        });
        joined.push(IetfServiceLimit {
            quota: policy.and_then(|p| p.quota),
            quota_unit: policy.map_or_else(|| "requests".to_owned(), |p| p.quota_unit.clone()),
            window: policy.and_then(|p| p.window),
            remaining: limit.remaining,
            reset_in: limit.reset_in,
            partition_key: limit
                .partition_key
                .or_else(|| policy.and_then(|p| p.partition_key.clone())),
            policy: limit.name,
        });
    }
    for (policy, was_used) in policies.into_iter().zip(used) {
        if !was_used {
            joined.push(IetfServiceLimit {
                policy: policy.name,
                quota: policy.quota,
                quota_unit: policy.quota_unit,
                window: policy.window,
                remaining: None,
                reset_in: None,
                partition_key: policy.partition_key,
            });
        }
    }
    joined
}

/// Reads the IETF `RateLimit` / `RateLimit-Policy` fields (see [`ietf_service_limits`]) into
/// one [`Window`] per quota unit: `requests` (the default unit), and the non-standard
/// `tokens`, `input-tokens`, `output-tokens`; other units (`content-bytes`,
/// `concurrent-requests`) are not rates of these dimensions and are left out.
///
/// With several policies in one unit, the most restrictive one is kept: the one allowing
/// the fewest units per second until its reset (`r / t`, compared exactly). An exhausted
/// policy (`r=0`) beats all others, the longest reset first; policies with `r` but no `t`
/// come after those with both (fewest remaining first), and policies with no `r` at all
/// come last (smallest quota first).
///
/// `limit` is the policy's `q`, `remaining` is `r` and `reset_in` is `t`.
pub fn ietf_limits(headers: &HeaderMap) -> Option<RateLimits> {
    let mut limits = RateLimits::new(HeaderFamily::Ietf);
    for entry in ietf_service_limits(headers) {
        let slot = match entry.quota_unit.as_str() {
            "requests" => &mut limits.requests,
            "tokens" => &mut limits.tokens,
            "input-tokens" => &mut limits.input_tokens,
            "output-tokens" => &mut limits.output_tokens,
            _ => continue,
        };
        let window = Window {
            limit: entry.quota,
            remaining: entry.remaining,
            reset_in: entry.reset_in,
        };
        let Some(window) = window.known() else {
            continue;
        };
        match slot {
            Some(kept) if restrictiveness(kept, &window) != Ordering::Greater => {}
            _ => *slot = Some(window),
        }
    }
    limits.usable()
}

/// Orders windows from most restrictive (`Less`) to least, as documented on [`ietf_limits`].
fn restrictiveness(a: &Window, b: &Window) -> Ordering {
    fn class(w: &Window) -> u8 {
        match (w.remaining, w.reset_in) {
            (Some(0), _) => 0,
            (Some(_), Some(_)) => 1,
            (Some(_), None) => 2,
            (None, _) => 3,
        }
    }
    class(a).cmp(&class(b)).then_with(|| match class(a) {
        // Exhausted: the longer wait is the tighter constraint.
        0 => b.reset_in.cmp(&a.reset_in),
        // r_a / t_a < r_b / t_b  ⇔  r_a · t_b < r_b · t_a, in integers (t in ms) so no
        // rounding; saturation only matters for absurd values.
        1 => {
            let rate_term = |r: Option<u64>, t: Option<Duration>| {
                u128::from(r.unwrap_or(0)).saturating_mul(t.unwrap_or_default().as_millis())
            };
            rate_term(a.remaining, b.reset_in)
                .cmp(&rate_term(b.remaining, a.reset_in))
                .then_with(|| b.reset_in.cmp(&a.reset_in))
        }
        2 => a.remaining.cmp(&b.remaining),
        _ => match (a.limit, b.limit) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        },
    })
}

/// A `RateLimit-Policy` item.
struct PolicyItem {
    name: String,
    quota: Option<u64>,
    quota_unit: String,
    window: Option<Duration>,
    partition_key: Option<Vec<u8>>,
}

/// A `RateLimit` item.
struct LimitItem {
    name: String,
    remaining: Option<u64>,
    reset_in: Option<Duration>,
    partition_key: Option<Vec<u8>>,
}

/// Every line of a structured-field List header, combined and parsed; empty when absent or
/// malformed (the draft: "Malformed RateLimit header fields MUST be ignored").
fn sf_list(headers: &HeaderMap, name: &str) -> sfv::List {
    let mut combined = String::new();
    for value in headers.get_all(name) {
        let Some(text) = header_str(value) else {
            return sfv::List::new();
        };
        if !combined.is_empty() {
            combined.push_str(", ");
        }
        combined.push_str(text);
    }
    if combined.is_empty() {
        return sfv::List::new();
    }
    Parser::new(&combined).parse().unwrap_or_default()
}

fn item_name(entry: &ListEntry) -> Option<(String, &Parameters)> {
    let ListEntry::Item(item) = entry else {
        return None;
    };
    let name = match &item.bare_item {
        BareItem::String(s) => s.as_str().to_owned(),
        BareItem::Token(t) => t.as_str().to_owned(),
        _ => return None,
    };
    Some((name, &item.params))
}

/// A parameter that must be a non-negative Integer when present: `Ok(None)` when absent,
/// `Err` when present with another type (the item is then malformed).
fn non_negative(params: &Parameters, key: &str) -> Result<Option<u64>, ()> {
    match params.get(key) {
        None => Ok(None),
        Some(value) => value
            .as_integer()
            .and_then(|i| u64::try_from(i).ok())
            .map(Some)
            .ok_or(()),
    }
}

fn partition_key(params: &Parameters) -> Result<Option<Vec<u8>>, ()> {
    match params.get("pk") {
        None => Ok(None),
        Some(value) => value.as_byte_sequence().map(|b| Some(b.to_vec())).ok_or(()),
    }
}

fn policy_item(entry: &ListEntry) -> Option<PolicyItem> {
    let (name, params) = item_name(entry)?;
    let quota_unit = match params.get("qu") {
        None => "requests".to_owned(),
        Some(BareItem::String(s)) => s.as_str().to_owned(),
        Some(BareItem::Token(t)) => t.as_str().to_owned(),
        Some(_) => return None,
    };
    Some(PolicyItem {
        name,
        quota: non_negative(params, "q").ok()?,
        quota_unit,
        window: non_negative(params, "w").ok()?.map(Duration::from_secs),
        partition_key: partition_key(params).ok()?,
    })
}

fn limit_item(entry: &ListEntry) -> Option<LimitItem> {
    let (name, params) = item_name(entry)?;
    Some(LimitItem {
        name,
        remaining: non_negative(params, "r").ok()?,
        reset_in: non_negative(params, "t").ok()?.map(Duration::from_secs),
        partition_key: partition_key(params).ok()?,
    })
}

/// A reset written as seconds: a Unix timestamp when at least [`EPOCH_THRESHOLD`] (delay
/// measured from `reference`, zero if past), else a delay.
fn epoch_or_delay(s: &str, reference: SystemTime) -> Option<Duration> {
    let seconds = parse_delay_seconds(s)?;
    if seconds < EPOCH_THRESHOLD {
        return Some(seconds);
    }
    // Beyond SystemTime's range the reset is "never": saturate like the other parsers.
    let Some(reset_at) = UNIX_EPOCH.checked_add(seconds) else {
        return Some(Duration::MAX);
    };
    Some(reset_at.duration_since(reference).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};

    fn map(pairs: &[(&str, &[u8])]) -> HeaderMap {
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

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn window(
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
    fn openai_documented_header_set() {
        let headers = map(&[
            ("x-ratelimit-limit-requests", b"60"),
            ("x-ratelimit-limit-tokens", b"150000"),
            ("x-ratelimit-remaining-requests", b"59"),
            ("x-ratelimit-remaining-tokens", b"149984"),
            ("x-ratelimit-reset-requests", b"1s"),
            ("x-ratelimit-reset-tokens", b"6m0s"),
        ]);
        let limits = rate_limits(&headers, at(0));
        assert_eq!(
            limits,
            Some(RateLimits {
                requests: window(Some(60), Some(59), Some(1)),
                tokens: window(Some(150_000), Some(149_984), Some(360)),
                ..RateLimits::new(HeaderFamily::OpenAi)
            })
        );
    }

    #[test]
    fn openai_sub_second_and_micro_sign_resets() {
        let headers = map(&[
            ("x-ratelimit-remaining-requests", b"0"),
            ("x-ratelimit-reset-requests", b"4m12.172s"),
            ("x-ratelimit-reset-tokens", "250\u{b5}s".as_bytes()),
        ]);
        let limits = openai_limits(&headers).unwrap_or_else(|| panic!("usable"));
        assert_eq!(
            limits.requests.and_then(|w| w.reset_in),
            Some(Duration::from_millis(252_172))
        );
        assert_eq!(
            limits.tokens.and_then(|w| w.reset_in),
            Some(Duration::from_micros(250))
        );
    }

    #[test]
    fn azure_minus_one_is_unknown() {
        let headers = map(&[
            ("x-ratelimit-remaining-requests", b"-1"),
            ("x-ratelimit-remaining-tokens", b"-1"),
        ]);
        assert_eq!(rate_limits(&headers, at(0)), None);
        let headers = map(&[
            ("x-ratelimit-remaining-requests", b"-1"),
            ("x-ratelimit-remaining-tokens", b"9000"),
        ]);
        let limits = openai_limits(&headers).unwrap_or_else(|| panic!("usable"));
        assert_eq!(limits.requests, None);
        assert_eq!(limits.tokens, window(None, Some(9_000), None));
    }

    #[test]
    fn anthropic_header_set_against_the_date_header() {
        let headers = map(&[
            ("date", b"Thu, 01 Aug 2024 12:00:00 GMT"),
            ("anthropic-ratelimit-requests-limit", b"4000"),
            ("anthropic-ratelimit-requests-remaining", b"3999"),
            (
                "anthropic-ratelimit-requests-reset",
                b"2024-08-01T12:00:01Z",
            ),
            ("anthropic-ratelimit-tokens-limit", b"480000"),
            ("anthropic-ratelimit-tokens-remaining", b"479000"),
            (
                "anthropic-ratelimit-tokens-reset",
                b"2024-08-01T12:00:00.5Z",
            ),
            ("anthropic-ratelimit-input-tokens-limit", b"400000"),
            ("anthropic-ratelimit-input-tokens-remaining", b"399000"),
            (
                "anthropic-ratelimit-input-tokens-reset",
                b"2024-08-01T12:00:00Z",
            ),
            ("anthropic-ratelimit-output-tokens-limit", b"80000"),
            ("anthropic-ratelimit-output-tokens-remaining", b"80000"),
            (
                "anthropic-ratelimit-output-tokens-reset",
                b"2024-08-01T11:59:00Z",
            ),
        ]);
        // The local clock is an hour late: the Date header decides.
        let limits = rate_limits(&headers, at(1_722_513_600 + 3_600));
        assert_eq!(
            limits,
            Some(RateLimits {
                requests: window(Some(4_000), Some(3_999), Some(1)),
                tokens: Some(Window {
                    limit: Some(480_000),
                    remaining: Some(479_000),
                    reset_in: Some(Duration::from_millis(500)),
                }),
                input_tokens: window(Some(400_000), Some(399_000), Some(0)),
                output_tokens: window(Some(80_000), Some(80_000), Some(0)),
                ..RateLimits::new(HeaderFamily::Anthropic)
            })
        );
    }

    #[test]
    fn anthropic_without_date_uses_now() {
        let headers = map(&[(
            "anthropic-ratelimit-requests-reset",
            b"2024-08-01T12:00:30Z",
        )]);
        let limits = anthropic_limits(&headers, at(1_722_513_600));
        assert_eq!(
            limits.and_then(|l| l.requests),
            window(None, None, Some(30))
        );
    }

    #[test]
    fn github_documented_header_set() {
        let headers = map(&[
            ("date", b"Mon, 01 Jul 2013 17:27:06 GMT"),
            ("x-ratelimit-limit", b"60"),
            ("x-ratelimit-remaining", b"56"),
            ("x-ratelimit-used", b"4"),
            ("x-ratelimit-reset", b"1372700873"),
            ("x-ratelimit-resource", b"core"),
        ]);
        assert_eq!(
            rate_limits(&headers, at(0)),
            Some(RateLimits {
                requests: window(Some(60), Some(56), Some(1_372_700_873 - 1_372_699_626)),
                resource: Some("core".to_owned()),
                ..RateLimits::new(HeaderFamily::GitHub)
            })
        );
    }

    #[test]
    fn github_remaining_from_used_and_past_reset() {
        let headers = map(&[
            ("x-ratelimit-limit", b"5000"),
            ("x-ratelimit-used", b"5000"),
            ("x-ratelimit-reset", b"1372700873"),
        ]);
        let limits = github_limits(&headers, at(1_372_700_900));
        assert_eq!(
            limits.and_then(|l| l.requests),
            window(Some(5_000), Some(0), Some(0))
        );
    }

    #[test]
    fn x_spelling_is_read_as_github_family() {
        let headers = map(&[
            ("x-rate-limit-limit", b"900"),
            ("x-rate-limit-remaining", b"899"),
            ("x-rate-limit-reset", b"1700000900"),
        ]);
        assert_eq!(
            rate_limits(&headers, at(1_700_000_000)),
            Some(RateLimits {
                requests: window(Some(900), Some(899), Some(900)),
                ..RateLimits::new(HeaderFamily::GitHub)
            })
        );
    }

    #[test]
    fn small_reset_is_a_delay_and_huge_epoch_saturates() {
        assert_eq!(epoch_or_delay("30", at(5)), Some(Duration::from_secs(30)));
        assert_eq!(
            epoch_or_delay("1000000010", at(1_000_000_000)),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            epoch_or_delay("1470173023.5", at(1_470_173_023)),
            Some(Duration::from_millis(500))
        );
        let huge = epoch_or_delay("99999999999999999999", at(0));
        assert!(huge >= Some(Duration::from_secs(1 << 40)), "{huge:?}");
    }

    #[test]
    fn ietf_draft_field_examples() {
        let headers = map(&[("ratelimit", br#""default";r=50;t=30"#)]);
        assert_eq!(
            ietf_limits(&headers).and_then(|l| l.requests),
            window(None, Some(50), Some(30))
        );

        let headers = map(&[("ratelimit", br#""default";r=999;pk=:dHJpYWwxMjEzMjM=:"#)]);
        let entries = ietf_service_limits(&headers);
        assert_eq!(entries.len(), 1);
        assert_eq!(
            entries[0].partition_key.as_deref(),
            Some(&b"trial121323"[..])
        );
        assert_eq!(entries[0].remaining, Some(999));
        assert_eq!(entries[0].reset_in, None);

        let headers = map(&[(
            "ratelimit-policy",
            br#""burst";q=100;w=60,"daily";q=1000;w=86400"#,
        )]);
        let entries = ietf_service_limits(&headers);
        let names: Vec<_> = entries
            .iter()
            .map(|e| (e.policy.as_str(), e.quota, e.window))
            .collect();
        assert_eq!(
            names,
            [
                ("burst", Some(100), Some(Duration::from_secs(60))),
                ("daily", Some(1_000), Some(Duration::from_secs(86_400))),
            ]
        );
        // §3.2's partition-key policies; the second one's unit is not a rate we track.
        let headers = map(&[
            (
                "ratelimit-policy",
                br#""peruser";q=100;w=60;pk=:cHsdsRa894==:"#,
            ),
            (
                "ratelimit-policy",
                br#""peruserbytes";q=65535;qu="content-bytes";w=10;pk=:sdfjLJUOUH==:"#,
            ),
        ]);
        let entries = ietf_service_limits(&headers);
        assert_eq!(entries.len(), 2, "{entries:?}");
        assert_eq!(entries[1].quota_unit, "content-bytes");
        assert_eq!(
            ietf_limits(&headers).map(|l| (l.requests, l.tokens)),
            Some((window(Some(100), None, None), None))
        );
        let headers = map(&[(
            "ratelimit-policy",
            br#""burst";q=100;w=60,"daily";q=1000;w=86400"#,
        )]);
        // Policies alone: the smaller quota is kept.
        assert_eq!(
            ietf_limits(&headers).and_then(|l| l.requests),
            window(Some(100), None, None)
        );
    }

    #[test]
    fn ietf_draft_appendix_b_examples() {
        // B.2.1: the policy gives the limit, RateLimit the remaining and reset.
        let headers = map(&[
            ("ratelimit", br#""fixedwindow";r=99;t=50"#),
            ("ratelimit-policy", br#""fixedwindow";q=100;w=60"#),
        ]);
        assert_eq!(
            rate_limits(&headers, at(0)),
            Some(RateLimits {
                requests: window(Some(100), Some(99), Some(50)),
                ..RateLimits::new(HeaderFamily::Ietf)
            })
        );
        // B.3.2: two policies, one reported; the reported daily one is the constraint.
        let headers = map(&[
            (
                "ratelimit-policy",
                br#""hour";q=1000;w=3600, "day";q=5000;w=86400"#,
            ),
            ("ratelimit", br#""day";r=100;t=36000"#),
        ]);
        assert_eq!(
            ietf_limits(&headers).and_then(|l| l.requests),
            window(Some(5_000), Some(100), Some(36_000))
        );
        // B.3.1: token policy names and a RateLimit without r.
        let headers = map(&[
            ("ratelimit-policy", b"quota;q=100;w=1"),
            ("ratelimit", b"quota;t=1"),
        ]);
        assert_eq!(
            ietf_limits(&headers).and_then(|l| l.requests),
            window(Some(100), None, Some(1))
        );
        // Split over several lines, as RFC 9651 allows.
        let headers = map(&[
            ("ratelimit-policy", br#""sliding";q=100;w=60;burst=1000"#),
            ("ratelimit-policy", br#""fixed";q=5000;w=3600;burst=0"#),
            ("ratelimit", br#""sliding";r=50;t=44"#),
        ]);
        assert_eq!(
            ietf_limits(&headers).and_then(|l| l.requests),
            window(Some(100), Some(50), Some(44))
        );
    }

    #[test]
    fn ietf_most_restrictive_item_wins() {
        let headers = map(&[(
            "ratelimit",
            br#""a";r=100;t=10, "b";r=5;t=10, "c";r=1000;t=1"#,
        )]);
        assert_eq!(
            ietf_limits(&headers).and_then(|l| l.requests),
            window(None, Some(5), Some(10))
        );
        // Exhausted beats any rate; among exhausted ones the longer wait.
        let headers = map(&[("ratelimit", br#""a";r=1;t=1000, "b";r=0;t=5, "c";r=0;t=50"#)]);
        assert_eq!(
            ietf_limits(&headers).and_then(|l| l.requests),
            window(None, Some(0), Some(50))
        );
        // 10 per 100 s is tighter than 2 per 10 s even though 2 < 10.
        let headers = map(&[("ratelimit", br#""a";r=2;t=10, "b";r=10;t=100"#)]);
        assert_eq!(
            ietf_limits(&headers).and_then(|l| l.requests),
            window(None, Some(10), Some(100))
        );
    }

    #[test]
    fn ietf_quota_units() {
        let headers = map(&[
            (
                "ratelimit-policy",
                br#""tpm";q=200000;qu="tokens";w=60, "rpm";q=500;w=60"#,
            ),
            ("ratelimit", br#""tpm";r=150000;t=20, "rpm";r=499;t=20"#),
            (
                "ratelimit-policy",
                br#""peruser";q=65535;qu="content-bytes";w=10"#,
            ),
        ]);
        let limits = ietf_limits(&headers).unwrap_or_else(|| panic!("usable"));
        assert_eq!(
            limits.tokens,
            window(Some(200_000), Some(150_000), Some(20))
        );
        assert_eq!(limits.requests, window(Some(500), Some(499), Some(20)));
        let units: Vec<_> = ietf_service_limits(&headers)
            .into_iter()
            .map(|e| e.quota_unit)
            .collect();
        assert_eq!(units, ["tokens", "requests", "content-bytes"]);
    }

    #[test]
    fn ietf_malformed_fields_and_items_are_ignored() {
        for malformed in [
            &br#""default";r=50;t=30,"#[..],
            br#""default";r=50;;t=30"#,
            br#"default;r=5O"#,
            b"",
            b"\xff",
        ] {
            let headers = map(&[("ratelimit", malformed)]);
            assert_eq!(ietf_limits(&headers), None, "{malformed:?}");
        }
        // A bad item is dropped; its neighbours stay.
        let headers = map(&[(
            "ratelimit",
            br#""a";r=-1;t=1, "b";r=1.5, "c";t="x", "d";r=7;t=3"#,
        )]);
        assert_eq!(
            ietf_limits(&headers).and_then(|l| l.requests),
            window(None, Some(7), Some(3))
        );
        // Older drafts' bare integers and inner lists are not policies.
        let headers = map(&[("ratelimit-policy", b"10;w=1, (1 2);w=3")]);
        assert_eq!(ietf_limits(&headers), None);
    }

    #[test]
    fn ietf_legacy_trio() {
        let headers = map(&[
            ("ratelimit-limit", b"10, 10;w=1, 50;w=60"),
            ("ratelimit-remaining", b"5"),
            ("ratelimit-reset", b"7"),
        ]);
        assert_eq!(
            rate_limits(&headers, at(0)),
            Some(RateLimits {
                requests: window(Some(10), Some(5), Some(7)),
                ..RateLimits::new(HeaderFamily::IetfLegacy)
            })
        );
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

    #[test]
    fn enormous_counts_saturate() {
        let headers = map(&[("x-ratelimit-remaining", b"99999999999999999999999999")]);
        assert_eq!(
            github_limits(&headers, at(0)).and_then(|l| l.requests),
            window(None, Some(u64::MAX), None)
        );
    }
}
