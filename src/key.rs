//! [`LaneKey`]: the name of a lane, a plain value type.
//!
//! By default a lane is named `scheme://host:port` of the request's URL; a key function or a
//! cost model may name lanes otherwise (an API key's fingerprint, a model).

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// The name of a lane: by default `scheme://host:port` of the request's URL.
///
/// ```
/// use reqwest_throttle::LaneKey;
///
/// let url = reqwest::Url::parse("https://API.github.com/repos").unwrap();
/// assert_eq!(LaneKey::for_url(&url).unwrap().as_str(), "https://api.github.com:443");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub struct LaneKey(Arc<str>);

impl LaneKey {
    /// A lane key from any text (for a custom key function: an API key's hash, a route).
    pub fn new(key: impl Into<Arc<str>>) -> LaneKey {
        LaneKey(key.into())
    }

    /// The default key of a URL: `scheme://host:port` (host lower-cased by the URL parser, port
    /// made explicit). `None` when the URL has no host.
    pub fn for_url(url: &reqwest::Url) -> Option<LaneKey> {
        let mut key = String::new();
        LaneKey::write_url_key(&mut key, url)?;
        Some(LaneKey(key.into()))
    }

    /// Appends the default key of `url` to `buffer`; `None` (and nothing written) without a host.
    pub(crate) fn write_url_key(buffer: &mut String, url: &reqwest::Url) -> Option<()> {
        let host = url.host_str()?;
        let port = url.port_or_known_default().unwrap_or(0);
        // Pushed piece by piece: the formatting machinery costs more than the lookup it serves.
        buffer.push_str(url.scheme());
        buffer.push_str("://");
        buffer.push_str(host);
        buffer.push(':');
        let mut digits = [0u8; 5];
        let mut start = digits.len();
        let mut rest = port;
        loop {
            start -= 1;
            digits[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        for &digit in &digits[start..] {
            buffer.push(char::from(digit));
        }
        Some(())
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host of a lane named after a URL: the default key `scheme://host:port`, or an LLM
    /// lane's `scheme://host:port/MODEL/key:FINGERPRINT`. `None` for a key of another form (a
    /// key function's own).
    ///
    /// ```
    /// use reqwest_throttle::LaneKey;
    ///
    /// assert_eq!(LaneKey::new("https://api.openai.com:443/gpt-4o/key:1a2b3c4d").host(), Some("api.openai.com"));
    /// assert_eq!(LaneKey::new("http://[::1]:8080").host(), Some("[::1]"));
    /// assert_eq!(LaneKey::new("tenant:acme").host(), None);
    /// ```
    pub fn host(&self) -> Option<&str> {
        let (_, rest) = self.0.split_once("://")?;
        let authority = rest.split('/').next()?;
        let (host, port) = authority.rsplit_once(':')?;
        port.parse::<u16>().ok()?;
        Some(host)
    }

    /// The model of an LLM lane (`scheme://host:port/MODEL/key:FINGERPRINT`); `None` for
    /// another lane, or one whose requests name no model (`-`).
    ///
    /// ```
    /// use reqwest_throttle::LaneKey;
    ///
    /// assert_eq!(LaneKey::new("https://api.openai.com:443/gpt-4o/key:1a2b3c4d").model(), Some("gpt-4o"));
    /// assert_eq!(LaneKey::new("https://api.openai.com:443/-/key:none").model(), None);
    /// assert_eq!(LaneKey::new("https://api.github.com:443").model(), None);
    /// ```
    pub fn model(&self) -> Option<&str> {
        self.host()?;
        let (_, rest) = self.0.split_once("://")?;
        let model = rest.split('/').nth(1)?;
        (model != "-" && !model.is_empty()).then_some(model)
    }
}

/// A model's name as a lane's name writes it: printable ASCII but `/`, each other character
/// as `_`, at most 100 of them (a model name is the client's own text; a lane's name must stay
/// printable and free of its separators).
pub(crate) fn model_segment(model: &str) -> String {
    model
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '/' {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect()
}

impl Borrow<str> for LaneKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LaneKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for LaneKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_key_is_scheme_host_and_port() {
        for (url, key) in [
            ("https://api.example.com/v1", "https://api.example.com:443"),
            ("http://example.com", "http://example.com:80"),
            ("http://127.0.0.1:9/", "http://127.0.0.1:9"),
            ("http://[::1]:8080/x", "http://[::1]:8080"),
            ("http://h:65535", "http://h:65535"),
            ("http://h:10000", "http://h:10000"),
            ("foo://h/", "foo://h:0"),
        ] {
            let url: reqwest::Url = url.parse().expect("a URL");
            let mut buffer = String::from("left over");
            buffer.clear();
            assert_eq!(LaneKey::write_url_key(&mut buffer, &url), Some(()));
            assert_eq!(buffer, key);
        }
        let no_host: reqwest::Url = "data:text/plain,hi".parse().expect("a URL");
        let mut buffer = String::new();
        assert_eq!(LaneKey::write_url_key(&mut buffer, &no_host), None);
        assert!(buffer.is_empty());
    }
}
