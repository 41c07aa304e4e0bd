//! A host rule's pattern, parsed into the form in which `reqwest::Url` writes a request's host.
//!
//! A rule is compared with `Url::host_str()`, which is lower-case, in punycode for an
//! internationalised name (`bücher.de` is `xn--bcher-kva.de`), in brackets for IPv6 (`[::1]`),
//! and in dotted decimal for IPv4 (`127.1` is `127.0.0.1`). Parsing a rule with the same parser
//! (`url::Host`) puts it in that form, so an accepted rule can match; a rule that never could
//! (a bare IPv6 address, a port out of range, a wildcard on an IP address) is refused with what
//! to write instead.

use std::borrow::Cow;
use std::net::Ipv6Addr;

use url::Host;

/// What one host rule matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum HostPattern {
    /// One host, on any port or on the one named.
    Exact {
        /// The host as `Url::host_str` writes it, without a trailing dot.
        host: String,
        /// The port, when the rule names one.
        port: Option<u16>,
    },
    /// `*.example.com`, kept as `.example.com`: every host below the domain, not the domain.
    Suffix(String),
}

impl HostPattern {
    /// Parses `host`, `host:port`, `[ipv6]`, `[ipv6]:port` or `*.domain`; the error says what
    /// is wrong and what to write instead.
    pub(super) fn parse(pattern: &str) -> Result<HostPattern, String> {
        let pattern = pattern.trim();
        if pattern.is_empty() {
            return Err("empty; use the default policy for every host".into());
        }
        let not_a_host = |c: char| c.is_whitespace() || matches!(c, '/' | '\\' | '@' | '?' | '#');
        if pattern.contains(not_a_host) {
            return Err(
                "a host pattern is `host`, `host:port` or `*.domain`, without scheme, user, path or spaces"
                    .into(),
            );
        }
        let (host, port) = split_port(pattern)?;
        if let Some(domain) = host.strip_prefix("*.") {
            if port.is_some() {
                return Err(
                    "a wildcard rule cannot name a port; write one `host:port` rule per host"
                        .into(),
                );
            }
            if domain.trim_end_matches('.').is_empty() || domain.contains('*') {
                return Err("a wildcard is `*.` followed by a domain".into());
            }
            return match parse_host(domain)? {
                Host::Domain(domain) => Ok(HostPattern::Suffix(format!(".{domain}"))),
                _ => Err("a wildcard is `*.` followed by a domain, not an IP address".into()),
            };
        }
        if host.contains('*') {
            return Err("`*` is only allowed as a leading `*.`".into());
        }
        let host = parse_host(host)?.to_string();
        Ok(HostPattern::Exact { host, port })
    }
}

/// A request's host as the rules compare it: as `Url::host_str` gives it (the usual case, left
/// as it is), or a host written by hand put into that form.
pub(super) fn request_host(host: &str) -> Cow<'_, str> {
    let plain = |b: u8| b.is_ascii() && !b.is_ascii_uppercase();
    if !host.ends_with('.') && host.bytes().all(plain) {
        return Cow::Borrowed(host);
    }
    let trimmed = host.trim_end_matches('.');
    match Host::parse(trimmed) {
        Ok(parsed) => Cow::Owned(parsed.to_string()),
        Err(_) => Cow::Owned(trimmed.to_ascii_lowercase()),
    }
}

/// Splits off a `:port`, keeping an IPv6 address in brackets whole.
fn split_port(pattern: &str) -> Result<(&str, Option<u16>), String> {
    if pattern.starts_with('[') {
        let end = pattern
            .find(']')
            .ok_or("an IPv6 address in brackets needs its closing `]`")?;
        let (host, rest) = pattern.split_at(end + 1);
        return match rest {
            "" => Ok((host, None)),
            _ => match rest.strip_prefix(':') {
                Some(port) => Ok((host, Some(parse_port(port)?))),
                None => Err("after `]` only `:port` may follow".into()),
            },
        };
    }
    match pattern.split_once(':') {
        None => Ok((pattern, None)),
        Some((host, port)) if !port.contains(':') => Ok((host, Some(parse_port(port)?))),
        Some(_) => Err(match pattern.parse::<Ipv6Addr>() {
            Ok(address) => format!(
                "an IPv6 address is written in brackets, as in a URL: \"[{address}]\", or \"[{address}]:8080\" with a port"
            ),
            Err(_) => "more than one `:`; write `host:port`, or an IPv6 address in brackets (`[::1]:8080`)".into(),
        }),
    }
}

/// A port as a URL may carry it: decimal digits, 1 to 65535.
fn parse_port(text: &str) -> Result<u16, String> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u16>() {
        Ok(port) if digits && port != 0 => Ok(port),
        _ => Err(format!("port {text:?} is not a number from 1 to 65535")),
    }
}

/// A host name or IP address put into `Url`'s form (a trailing dot dropped).
fn parse_host(text: &str) -> Result<Host<String>, String> {
    Host::parse(text.trim_end_matches('.'))
        .map_err(|error| format!("{text:?} is not a host name or IP address ({error})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(host: &str, port: Option<u16>) -> HostPattern {
        HostPattern::Exact {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn rules_take_the_form_url_gives_a_host() {
        let cases = [
            ("API.GitHub.com.", exact("api.github.com", None)),
            ("bücher.de", exact("xn--bcher-kva.de", None)),
            ("BÜCHER.de:8443", exact("xn--bcher-kva.de", Some(8443))),
            ("[::1]", exact("[::1]", None)),
            ("[0:0::1]:8080", exact("[::1]", Some(8080))),
            ("127.1", exact("127.0.0.1", None)),
            ("localhost:65535", exact("localhost", Some(65_535))),
            (
                "*.Bücher.de",
                HostPattern::Suffix(".xn--bcher-kva.de".into()),
            ),
        ];
        for (pattern, expected) in cases {
            assert_eq!(HostPattern::parse(pattern), Ok(expected), "{pattern}");
        }
    }

    #[test]
    fn rules_that_could_never_match_are_refused_with_the_fix() {
        let cases = [
            ("::1", "\"[::1]\""),
            ("fe80::1:8080", "\"[fe80::1:8080]\""),
            ("a:b:c", "more than one"),
            ("host:65536", "1 to 65535"),
            ("host:0", "1 to 65535"),
            ("host:", "1 to 65535"),
            ("host:+80", "1 to 65535"),
            ("host:http", "1 to 65535"),
            ("[::1", "closing"),
            ("[::1]x", "only `:port`"),
            ("[not-ipv6]", "not a host name"),
            ("*.example.com:443", "cannot name a port"),
            ("*.10.0.0.1", "not an IP address"),
            ("exa mple.com", "without scheme"),
            ("user@host", "without scheme"),
            ("a*.com", "leading `*.`"),
        ];
        for (pattern, hint) in cases {
            let reason = HostPattern::parse(pattern).unwrap_err();
            assert!(reason.contains(hint), "{pattern}: {reason}");
        }
    }

    #[test]
    fn request_hosts_are_put_in_the_same_form() {
        assert!(matches!(request_host("api.github.com"), Cow::Borrowed(_)));
        assert_eq!(request_host("API.github.com."), "api.github.com");
        assert_eq!(request_host("bücher.de"), "xn--bcher-kva.de");
        assert_eq!(request_host("[::1]"), "[::1]");
    }
}
