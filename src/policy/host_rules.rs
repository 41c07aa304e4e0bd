//! [`HostRules`]: which [`Policy`] applies to which host.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Policy, PolicyError};

/// Which policy applies to which host: exact hosts, `host:port`, `*.suffix` patterns and a default.
///
/// Lookup order: `host:port` exact, then host exact, then the longest matching `*.suffix`, then the
/// default. `*.example.com` matches `api.example.com` and `a.b.example.com` but not `example.com`
/// itself (as for TLS wildcards); add both rules to cover both. Hosts compare case-insensitively
/// and without a trailing dot.
///
/// ```
/// use reqwest_throttle::{HostRules, Policy, Rate};
///
/// let rules = HostRules::new(Policy::new())
///     .with("api.github.com", Policy::new().rate(Rate::per_hour(5_000)))?
///     .with("*.example.com", Policy::new().rate(Rate::per_second(5)))?;
/// assert_eq!(rules.policy_for("API.GitHub.com.", None).configured_rate(), Some(Rate::per_hour(5_000)));
/// assert_eq!(rules.policy_for("a.b.example.com", None).configured_rate(), Some(Rate::per_second(5)));
/// assert_eq!(rules.policy_for("example.com", None).configured_rate(), None);
/// # Ok::<(), reqwest_throttle::PolicyError>(())
/// ```
#[derive(Clone, Debug)]
pub struct HostRules {
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

fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl HostRules {
    /// Rules with only a default policy.
    pub fn new(default: Policy) -> HostRules {
        HostRules {
            exact: HashMap::new(),
            suffixes: Vec::new(),
            default: Arc::new(default),
            has_port_rules: false,
        }
    }

    /// Adds a rule: `pattern` is a host (`api.github.com`), a host and port (`127.0.0.1:8080`) or
    /// a wildcard (`*.example.com`). A later rule for the same pattern replaces the earlier one.
    pub fn with(mut self, pattern: &str, policy: Policy) -> Result<HostRules, PolicyError> {
        policy.validate()?;
        let bad = |reason| PolicyError::BadHostRule {
            pattern: pattern.to_owned(),
            reason,
        };
        let normalized = normalize_host(pattern.trim());
        if normalized.is_empty() {
            return Err(bad("empty; use the default policy for every host"));
        }
        if normalized.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(bad("a host pattern has no spaces, scheme or path"));
        }
        let policy = Arc::new(policy);
        if let Some(suffix) = normalized.strip_prefix("*.") {
            if suffix.is_empty() || suffix.contains('*') {
                return Err(bad("a wildcard is `*.` followed by a domain"));
            }
            let suffix = format!(".{suffix}");
            self.suffixes.retain(|(existing, _)| *existing != suffix);
            self.suffixes.push((suffix, policy));
            self.suffixes
                .sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        } else if normalized.contains('*') {
            return Err(bad("`*` is only allowed as a leading `*.`"));
        } else {
            self.has_port_rules |= normalized.contains(':');
            self.exact.insert(normalized, policy);
        }
        Ok(self)
    }

    /// Replaces the default policy.
    pub fn with_default(mut self, policy: Policy) -> Result<HostRules, PolicyError> {
        policy.validate()?;
        self.default = Arc::new(policy);
        Ok(self)
    }

    /// The policy for `host` (and `port`, when the URL has one).
    pub fn policy_for(&self, host: &str, port: Option<u16>) -> &Arc<Policy> {
        if self.exact.is_empty() && self.suffixes.is_empty() {
            return &self.default;
        }
        // URL hosts are already lower-case; only a trailing dot or a hand-made host needs work.
        let host: std::borrow::Cow<'_, str> =
            if host.ends_with('.') || host.bytes().any(|b| b.is_ascii_uppercase()) {
                normalize_host(host).into()
            } else {
                host.into()
            };
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
    fn bad_host_rules_are_refused() {
        for pattern in ["", "*.", "a.*.com", "https://x.com", "x y", "**.com"] {
            let err = HostRules::default()
                .with(pattern, Policy::new())
                .unwrap_err();
            assert!(err.to_string().contains("host rule"), "{pattern:?}: {err}");
        }
        let err = HostRules::default()
            .with("ok.com", Policy::new().concurrency(0))
            .unwrap_err();
        assert_eq!(err, PolicyError::ZeroConcurrency);
    }
}
