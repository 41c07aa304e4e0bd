//! What a request costs before it is sent, and what it really cost after.
//!
//! A [`CostModel`] attached to a [`Policy`](crate::Policy) turns each request into a
//! [`Cost`] (one request; for LLM APIs also the tokens its prompt and completion will use),
//! may choose its lane (per model, per API key), and reads the response back: the usage the
//! server reports settles the booking ([`Settlement`]), and a refusal that names one exhausted
//! dimension (tokens, not requests) pauses that dimension only.
//!
//! The LLM presets (`llm` feature) are cost models; any user can write one for an API that
//! charges per item, per byte or per query complexity.

use reqwest::{Request, Response};

pub use crate::booker::Settlement;
use crate::key::LaneKey;
use crate::limiter::{Cost, Dimension};

/// What a response said beyond its status and headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Inspection {
    /// The one dimension the server said is exhausted (a 429 "tokens per minute" body): only
    /// that dimension cools down, requests that cost none of it go on.
    pub exhausted: Option<Dimension>,
    /// The response is a refusal no retry can change (OpenAI's `insufficient_quota` 429: the
    /// account is out of credit, not out of rate): it is handed to the caller at once.
    pub permanent: bool,
}

impl Inspection {
    /// An inspection that found nothing to add.
    pub const NOTHING: Inspection = Inspection {
        exhausted: None,
        permanent: false,
    };

    /// An inspection saying `dimension` is exhausted.
    pub fn exhausted(dimension: Dimension) -> Inspection {
        Inspection {
            exhausted: Some(dimension),
            permanent: false,
        }
    }

    /// An inspection saying the response is final whatever its status: never retried.
    ///
    /// ```
    /// use reqwest_throttle::cost::Inspection;
    ///
    /// assert!(Inspection::permanent().permanent);
    /// assert!(!Inspection::NOTHING.permanent);
    /// ```
    pub fn permanent() -> Inspection {
        Inspection {
            exhausted: None,
            permanent: true,
        }
    }
}

/// Prices requests for a lane's budget and reads their real cost back.
///
/// ```
/// use reqwest::{Request, Response};
/// use reqwest_throttle::cost::{CostModel, Inspection, Settlement};
/// use reqwest_throttle::{Cost, Dimension};
///
/// /// A search API that charges one "unit" per kilobyte of query.
/// struct PerKilobyte;
///
/// // The attribute is re-exported: no `async-trait` dependency needed.
/// #[reqwest_throttle::async_trait]
/// impl CostModel for PerKilobyte {
///     fn estimate(&self, request: &Request) -> Cost {
///         let bytes = request.body().and_then(|b| b.as_bytes()).map_or(0, |b| b.len() as u64);
///         Cost::requests(1).with(Dimension::Tokens, bytes.div_ceil(1024).max(1))
///     }
///
///     async fn inspect(&self, response: Response, settlement: Settlement) -> (Response, Inspection) {
///         drop(settlement); // the estimate stands
///         (response, Inspection::NOTHING)
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait CostModel: Send + Sync + 'static {
    /// The lane of this request (per model, per API key); `None` for the throttle's default.
    fn lane_key(&self, request: &Request) -> Option<LaneKey> {
        let _ = request;
        None
    }

    /// What the request will cost, before it is sent. A [`RequestCost`](crate::RequestCost)
    /// extension on the request overrides it.
    fn estimate(&self, request: &Request) -> Cost;

    /// Reads the response: settles the booking with the real cost when known, and says whether
    /// the server named one exhausted dimension. May buffer or wrap the body, but must hand back
    /// a response the caller cannot tell from the original.
    async fn inspect(&self, response: Response, settlement: Settlement) -> (Response, Inspection);
}
