//! Lanes per (host, model, API key), without ever keeping the key.
//!
//! LLM providers limit each API key (or organisation) separately for each model, so two keys, or
//! two models of one key, must not share a budget. The lane's name carries a short fingerprint
//! of the key instead of the key: the first 8 hex digits of a 64-bit hash, enough to tell a
//! handful of keys apart in logs and stats, useless to recover or even test guesses of a
//! high-entropy secret. The key itself is read from the request headers and dropped at once;
//! it is never stored, logged or shown.

use http::HeaderMap;
use reqwest::Request;
use serde::Deserialize;

use super::estimate::Endpoint;
use crate::key::LaneKey;

/// A fixed seed, so that one key gives the same lane in every process and every run (lanes
/// shared through a common store must agree on their names).
const SEED: u64 = 0x6c6c_6d2d_6c61_6e65;

/// The key's hash: XXH3-64 with [`SEED`]. XXH3 has a published specification and a stable
/// output on every platform and in every version, so fingerprints agree across processes,
/// machines and releases of this crate (a general-purpose hasher such as foldhash promises
/// none of that).
fn key_hash(secret: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(secret, SEED)
}

/// The fingerprint of the API key a request carries (`Authorization: Bearer …`, `x-api-key`
/// as Anthropic uses, or Azure's `api-key`), as 8 hex digits; `None` without a key.
///
/// ```
/// use http::HeaderMap;
/// use reqwest_throttle::llm::key_fingerprint;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("authorization", "Bearer sk-test-123".parse().unwrap());
/// let fingerprint = key_fingerprint(&headers).unwrap();
/// assert_eq!(fingerprint.len(), 8);
/// assert!(!fingerprint.contains("sk-"));
///
/// let mut anthropic = HeaderMap::new();
/// anthropic.insert("x-api-key", "sk-test-123".parse().unwrap());
/// // The same secret is the same key, whichever header carries it.
/// assert_eq!(key_fingerprint(&anthropic).unwrap(), fingerprint);
/// assert_eq!(key_fingerprint(&HeaderMap::new()), None);
/// ```
pub fn key_fingerprint(headers: &HeaderMap) -> Option<String> {
    let secret = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| {
            let value = value.as_bytes();
            let scheme = value.get(..7)?;
            scheme
                .eq_ignore_ascii_case(b"bearer ")
                .then(|| value.get(7..))
                .flatten()
        })
        .or_else(|| headers.get("x-api-key").map(|v| v.as_bytes()))
        .or_else(|| headers.get("api-key").map(|v| v.as_bytes()))?;
    let secret = secret.trim_ascii();
    if secret.is_empty() {
        return None;
    }
    Some(format!("{:08x}", key_hash(secret) >> 32))
}

#[derive(Deserialize)]
struct ModelField<'a> {
    #[serde(borrow, default)]
    model: Option<std::borrow::Cow<'a, str>>,
}

/// The model a request names: its JSON body's `model`, else an Azure deployment in the path
/// (`/openai/deployments/NAME/…`).
pub(crate) fn model_of(request: &Request) -> Option<String> {
    let from_body = request
        .body()
        .and_then(|body| body.as_bytes())
        .and_then(|bytes| serde_json::from_slice::<ModelField<'_>>(bytes).ok())
        .and_then(|field| field.model)
        .map(|model| model.into_owned());
    from_body.or_else(|| {
        let mut segments = request.url().path_segments()?;
        segments.find(|segment| *segment == "deployments")?;
        segments.next().map(str::to_owned)
    })
}

/// The lane of an LLM request: `scheme://host:port/MODEL/key:FINGERPRINT`, with `-` for a
/// request that names no model and `key:none` for one without a key. Requests to other paths
/// (listing models, files) share the key's lane for model `-`.
pub(crate) fn lane_key(request: &Request) -> Option<LaneKey> {
    let url = request.url();
    let host = url.host_str()?;
    let port = url.port_or_known_default().unwrap_or(0);
    let model = Endpoint::from_path(url.path())
        .and_then(|_| model_of(request))
        .unwrap_or_else(|| "-".to_owned());
    let model = crate::key::model_segment(&model);
    let key = key_fingerprint(request.headers()).unwrap_or_else(|| "none".to_owned());
    Some(LaneKey::new(format!(
        "{}://{host}:{port}/{model}/key:{key}",
        url.scheme()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fingerprint is specified, not an accident of a hasher's version: these values come
    /// from Python's `xxhash` package (`xxh3_64_intdigest(key, seed=0x6c6c6d2d6c616e65) >> 32`),
    /// an implementation independent of this crate's.
    #[test]
    fn fingerprints_match_an_independent_xxh3() {
        for (key, expected) in [("sk-test", "1359be83"), ("sk-ant-123", "6be74746")] {
            let mut headers = HeaderMap::new();
            headers.insert("x-api-key", key.parse().unwrap());
            assert_eq!(
                key_fingerprint(&headers).as_deref(),
                Some(expected),
                "{key}"
            );
        }
    }

    fn request(url: &str, key: Option<(&str, &str)>, body: &str) -> Request {
        let client = reqwest::Client::new();
        let mut builder = client.post(url).body(body.to_owned());
        if let Some((name, value)) = key {
            builder = builder.header(name, value);
        }
        builder.build().unwrap()
    }

    #[test]
    fn lanes_split_by_model_and_key_and_never_show_the_key() {
        let secret = "sk-proj-SECRET0123456789";
        let bearer = format!("Bearer {secret}");
        let a = lane_key(&request(
            "https://api.openai.com/v1/chat/completions",
            Some(("authorization", &bearer)),
            r#"{"model":"gpt-4o","messages":[]}"#,
        ))
        .unwrap();
        assert!(a
            .as_str()
            .starts_with("https://api.openai.com:443/gpt-4o/key:"));
        assert!(!a.as_str().contains("SECRET"));
        assert!(!format!("{a:?} {a}").contains(secret));
        let other_model = lane_key(&request(
            "https://api.openai.com/v1/chat/completions",
            Some(("authorization", &bearer)),
            r#"{"model":"gpt-4o-mini","messages":[]}"#,
        ))
        .unwrap();
        let other_key = lane_key(&request(
            "https://api.openai.com/v1/chat/completions",
            Some(("authorization", "Bearer sk-proj-other")),
            r#"{"model":"gpt-4o","messages":[]}"#,
        ))
        .unwrap();
        assert_ne!(a, other_model);
        assert_ne!(a, other_key);
    }

    #[test]
    fn azure_deployment_names_the_model_and_odd_models_are_sanitised() {
        let azure = lane_key(&request(
            "https://x.openai.azure.com/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21",
            Some(("api-key", "abc")),
            r#"{"messages":[]}"#,
        ))
        .unwrap();
        assert!(azure.as_str().contains("/my-gpt4o/key:"), "{azure}");
        let odd = lane_key(&request(
            "http://127.0.0.1:8080/v1/embeddings",
            None,
            r#"{"model":"a/b c\n"}"#,
        ))
        .unwrap();
        assert_eq!(odd.as_str(), "http://127.0.0.1:8080/a_b_c_/key:none");
        assert_eq!(key_fingerprint(&HeaderMap::new()), None);
    }
}
