//! The IETF rate-limit headers: the `RateLimit` / `RateLimit-Policy` structured fields
//! (draft-ietf-httpapi-ratelimit-headers 08 and later) and the older `RateLimit-Limit`,
//! `RateLimit-Remaining`, `RateLimit-Reset` trio.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use sfv::{BareItem, ListEntry, Parameters, Parser};

use super::github::epoch_or_delay;
use super::{HeaderFamily, RateLimits, Window};
use crate::signals::duration::parse_count;
use crate::signals::{consistent_value, header_str, reference_time};

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
#[non_exhaustive]
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

    let index = PolicyIndex::new(&policies);
    let mut used = vec![false; policies.len()];
    let mut joined = Vec::with_capacity(limits.len() + policies.len());
    for limit in limits {
        let found = index.first_match(&limit.name, limit.partition_key.as_deref());
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

/// Where to find, in one lookup, the first policy a `RateLimit` item joins: the first one
/// with its name whose partition key is absent or equal to the item's (any key when the item
/// has none). Building it and every lookup are linear in the header's size, so a field of
/// thousands of items costs thousands of steps, not millions.
///
/// The maps use std's randomly keyed SipHash: the names come from the server, and a hash
/// that an attacker can collide would make the lookups quadratic again.
struct PolicyIndex<'a> {
    /// The first policy of each name.
    first: HashMap<&'a str, usize>,
    /// The first policy of each name that has no partition key.
    first_unkeyed: HashMap<&'a str, usize>,
    /// The first policy of each partition key, by name.
    first_keyed: HashMap<&'a str, HashMap<&'a [u8], usize>>,
}

impl<'a> PolicyIndex<'a> {
    fn new(policies: &'a [PolicyItem]) -> PolicyIndex<'a> {
        let mut index = PolicyIndex {
            first: HashMap::with_capacity(policies.len()),
            first_unkeyed: HashMap::new(),
            first_keyed: HashMap::new(),
        };
        for (position, policy) in policies.iter().enumerate() {
            let name = policy.name.as_str();
            index.first.entry(name).or_insert(position);
            match policy.partition_key.as_deref() {
                None => index.first_unkeyed.entry(name).or_insert(position),
                Some(key) => index
                    .first_keyed
                    .entry(name)
                    .or_default()
                    .entry(key)
                    .or_insert(position),
            };
        }
        index
    }

    /// The position of the first policy that `name` with `partition_key` joins.
    fn first_match(&self, name: &str, partition_key: Option<&[u8]>) -> Option<usize> {
        let Some(key) = partition_key else {
            return self.first.get(name).copied();
        };
        let unkeyed = self.first_unkeyed.get(name).copied();
        let keyed = self
            .first_keyed
            .get(name)
            .and_then(|keys| keys.get(key))
            .copied();
        match (unkeyed, keyed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::super::rate_limits;
    use super::super::tests::{at, map, window};
    use super::*;

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

    /// The join as the draft states it: the first policy, in order, with the item's name and
    /// a compatible partition key.
    fn first_match_by_scan(
        policies: &[PolicyItem],
        name: &str,
        key: Option<&[u8]>,
    ) -> Option<usize> {
        policies.iter().position(|policy| {
            policy.name == name
                && (policy.partition_key.is_none()
                    || key.is_none()
                    || policy.partition_key.as_deref() == key)
        })
    }

    #[test]
    fn the_index_joins_as_a_scan_would_for_every_small_case() {
        let names = ["a", "b"];
        let keys: [Option<&[u8]>; 3] = [None, Some(b"k1"), Some(b"k2")];
        type Named<'a> = (&'a str, Option<&'a [u8]>);
        let items: Vec<Named> = names
            .iter()
            .flat_map(|name| keys.iter().map(move |key| (*name, *key)))
            .collect();
        // Every list of up to three policies drawn from six (name, key) pairs: 259 lists.
        let mut lists: Vec<Vec<Named>> = vec![Vec::new()];
        for _ in 0..3 {
            let longer: Vec<_> = lists
                .iter()
                .filter(|list| list.len() == lists.last().map_or(0, Vec::len))
                .flat_map(|list| {
                    items.iter().map(move |item| {
                        let mut list = list.clone();
                        list.push(*item);
                        list
                    })
                })
                .collect();
            lists.extend(longer);
        }
        assert_eq!(lists.len(), 1 + 6 + 36 + 216);
        for list in &lists {
            let policies: Vec<PolicyItem> = list
                .iter()
                .map(|(name, key)| PolicyItem {
                    name: (*name).to_owned(),
                    quota: None,
                    quota_unit: "requests".to_owned(),
                    window: None,
                    partition_key: key.map(<[u8]>::to_vec),
                })
                .collect();
            let index = PolicyIndex::new(&policies);
            for (name, key) in items
                .iter()
                .chain([("c", None), ("c", Some(&b"k1"[..]))].iter())
            {
                assert_eq!(
                    index.first_match(name, *key),
                    first_match_by_scan(&policies, name, *key),
                    "{list:?} joined by {name} {key:?}"
                );
            }
        }
    }
}
