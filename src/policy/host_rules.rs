//! [`HostRules`]: which [`Policy`] applies to which host.

use std::collections::HashMap;
use std::sync::Arc;

use super::host_pattern::{request_host, HostPattern};
use super::{Policy, PolicyError};

/// Which policy applies to which host: exact hosts, `host:port`, `*.suffix` patterns and a default.
///
/// Lookup order: `host:port` exact, then host exact, then the longest matching `*.suffix`, then the
/// default. `*.example.com` matches `api.example.com` and `a.b.example.com` but not `example.com`
/// itself (as for TLS wildcards); add both rules to cover both. A rule is compared with the
/// request URL's host as `reqwest::Url` writes it: case and a trailing dot do not matter, an
/// internationalised name matches in either script (`bücher.de` is `xn--bcher-kva.de`), and an
/// IPv6 address is written in brackets (`[::1]:8080`). A rule that could never match (a bare
/// `::1`, a port out of range) is refused.
///
/// The policies are validated: [`with`](Self::with) and [`with_default`](Self::with_default)
/// refuse an invalid one at once; the one given to [`new`](Self::new) is checked by
/// [`validate`](Self::validate), which [`ThrottleBuilder::build`](crate::ThrottleBuilder::build)
/// calls.
///
/// ```
/// use reqwest_throttle::{HostRules, Policy, Rate};
///
/// let rules = HostRules::new(Policy::new())
///     .with("api.github.com", Policy::new().rate(Rate::per_hour(5_000)))?
///     .with("*.example.com", Policy::new().rate(Rate::per_second(5)))?
///     .with("bücher.de", Policy::new().rate(Rate::per_second(1)))?;
/// assert_eq!(rules.policy_for("API.GitHub.com.", None).configured_rate(), Some(Rate::per_hour(5_000)));
/// assert_eq!(rules.policy_for("a.b.example.com", None).configured_rate(), Some(Rate::per_second(5)));
/// assert_eq!(rules.policy_for("example.com", None).configured_rate(), None);
/// assert_eq!(rules.policy_for("xn--bcher-kva.de", None).configured_rate(), Some(Rate::per_second(1)));
/// assert!(HostRules::default().with("::1", Policy::new()).is_err()); // write "[::1]"
/// # Ok::<(), reqwest_throttle::PolicyError>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HostRules {
    /// By `host` or `host:port`, as `Url` writes them.
    exact: HashMap<String, Arc<Policy>>,
    /// `(".example.com", policy)`, longest suffix first.
    suffixes: Vec<(String, Arc<Policy>)>,
    default: Arc<Policy>,
    /// Whether any exact rule names a port (saves a formatted lookup per request otherwise).
    has_port_rules: bool,
}

impl Default for HostRules {
    fn default() -> Self {
        HostRules::new(Policy::default())
    }
}

impl HostRules {
    /// Rules with only a default policy (checked by [`validate`](Self::validate), when the
    /// throttle is built).
    pub fn new(default: Policy) -> HostRules {
        HostRules {
            exact: HashMap::new(),
            suffixes: Vec::new(),
            default: Arc::new(default),
            has_port_rules: false,
        }
    }

    /// Adds a rule: `pattern` is a host (`api.github.com`), a host and port (`127.0.0.1:8080`,
    /// `[::1]:8080`) or a wildcard (`*.example.com`). A later rule for the same pattern replaces
    /// the earlier one. An invalid `policy`, or a pattern that could never match a URL's host, is
    /// refused.
    pub fn with(mut self, pattern: &str, policy: Policy) -> Result<HostRules, PolicyError> {
        let parsed = HostPattern::parse(pattern).map_err(|reason| PolicyError::BadHostRule {
            pattern: pattern.to_owned(),
            reason,
        })?;
        policy
            .validate()
            .map_err(|error| PolicyError::in_rule(pattern, error))?;
        let policy = Arc::new(policy);
        match parsed {
            HostPattern::Suffix(suffix) => {
                self.suffixes.retain(|(existing, _)| *existing != suffix);
                self.suffixes.push((suffix, policy));
                self.suffixes
                    .sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
            }
            HostPattern::Exact { host, port: None } => {
                self.exact.insert(host, policy);
            }
            HostPattern::Exact {
                host,
                port: Some(port),
            } => {
                self.has_port_rules = true;
                self.exact.insert(format!("{host}:{port}"), policy);
            }
        }
        Ok(self)
    }

    /// Replaces the default policy; an invalid one is refused.
    pub fn with_default(mut self, policy: Policy) -> Result<HostRules, PolicyError> {
        policy.validate().map_err(PolicyError::in_default)?;
        self.default = Arc::new(policy);
        Ok(self)
    }

    /// Checks every policy, the default's first; the error names the rule and the field.
    pub fn validate(&self) -> Result<(), PolicyError> {
        self.default.validate().map_err(PolicyError::in_default)?;
        let suffixes = self
            .suffixes
            .iter()
            .map(|(suffix, policy)| (format!("*{suffix}"), policy));
        let exact = self
            .exact
            .iter()
            .map(|(host, policy)| (host.clone(), policy));
        for (pattern, policy) in suffixes.chain(exact) {
            policy
                .validate()
                .map_err(|error| PolicyError::in_rule(&pattern, error))?;
        }
        Ok(())
    }

    /// The policy for `host` (and `port`, when the URL has one), `host` as `Url::host_str` gives it.
    pub fn policy_for(&self, host: &str, port: Option<u16>) -> &Arc<Policy> {
        if self.exact.is_empty() && self.suffixes.is_empty() {
            return &self.default;
        }
        let host = request_host(host);
        if let Some(port) = port.filter(|_| self.has_port_rules) {
            if let Some(policy) = self.exact.get(&format!("{host}:{port}")) {
                return policy;
            }
        }
        if let Some(policy) = self.exact.get(host.as_ref()) {
            return policy;
        }
        self.suffixes
            .iter()
            .find(|(suffix, _)| host.ends_with(suffix.as_str()))
            .map_or(&self.default, |(_, policy)| policy)
    }

    /// The default policy.
    pub fn default_policy(&self) -> &Arc<Policy> {
        &self.default
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_rules_prefer_port_then_exact_then_longest_suffix() {
        let tagged = |n| Policy::new().concurrency(n);
        let rules = HostRules::new(tagged(1))
            .with("*.example.com", tagged(2))
            .unwrap()
            .with("*.api.example.com", tagged(3))
            .unwrap()
            .with("v1.api.example.com", tagged(4))
            .unwrap()
            .with("localhost:8080", tagged(5))
            .unwrap();
        let cap = |host, port| rules.policy_for(host, port).configured_concurrency();
        assert_eq!(cap("v1.api.example.com", None), Some(4));
        assert_eq!(cap("v2.api.example.com", None), Some(3));
        assert_eq!(cap("www.example.com", None), Some(2));
        assert_eq!(cap("example.com", None), Some(1));
        assert_eq!(cap("notexample.com", None), Some(1));
        assert_eq!(cap("localhost", Some(8080)), Some(5));
        assert_eq!(cap("localhost", Some(9090)), Some(1));
    }

    #[test]
    fn idn_ipv6_and_port_rules_match_the_host_url_gives() {
        let tagged = |n| Policy::new().concurrency(n);
        let rules = HostRules::new(tagged(1))
            .with("Bücher.de", tagged(2))
            .unwrap()
            .with("[::1]:8080", tagged(3))
            .unwrap()
            .with("[::1]", tagged(4))
            .unwrap()
            .with("*.bücher.de", tagged(5))
            .unwrap();
        let cap = |url: &str| {
            let url = reqwest::Url::parse(url).unwrap();
            let host = url.host_str().unwrap();
            rules
                .policy_for(host, url.port_or_known_default())
                .configured_concurrency()
        };
        assert_eq!(cap("https://bücher.de/"), Some(2));
        assert_eq!(cap("https://xn--bcher-kva.de/"), Some(2));
        assert_eq!(cap("https://api.BÜCHER.de/"), Some(5));
        assert_eq!(cap("http://[::1]:8080/"), Some(3));
        assert_eq!(cap("http://[0::1]:9090/"), Some(4));
        assert_eq!(cap("http://[::2]:8080/"), Some(1));
    }

    #[test]
    fn bad_host_rules_are_refused() {
        for pattern in [
            "",
            "*.",
            "a.*.com",
            "https://x.com",
            "x y",
            "**.com",
            "::1",
            "x:99999",
        ] {
            let err = HostRules::default()
                .with(pattern, Policy::new())
                .unwrap_err();
            assert!(err.to_string().contains("host rule"), "{pattern:?}: {err}");
        }
        let err = HostRules::default()
            .with("ok.com", Policy::new().concurrency(0))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "host rule \"ok.com\": concurrency: must be at least 1 (got 0); remove the cap for no limit"
        );
    }
}
