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

use std::fmt;
use std::sync::Arc;

use reqwest::{Request, Response};

use crate::key::LaneKey;

use crate::limiter::{Budget, Commitment, Cost, Dimension};

/// The reconciliation of one request's booking, handed to [`CostModel::inspect`].
///
/// Call [`settle`](Settlement::settle) with the real cost once it is known — now, or later
/// from a wrapped streaming body. Dropped without it, the estimate stands.
pub struct Settlement {
    booked: Booked,
}

/// Where the booking was made.
enum Booked {
    /// In a budget of this process.
    Local {
        budget: Arc<Budget>,
        commitment: Commitment,
    },
    /// In a budget shared through a store.
    #[cfg(feature = "redis")]
    Shared(crate::store::SharedCommitment),
}

impl fmt::Debug for Settlement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settlement")
            .field("estimate", self.estimate())
            .finish()
    }
}

impl Settlement {
    pub(crate) fn new(budget: Arc<Budget>, commitment: Commitment) -> Settlement {
        Settlement {
            booked: Booked::Local { budget, commitment },
        }
    }

    #[cfg(feature = "redis")]
    pub(crate) fn shared(commitment: crate::store::SharedCommitment) -> Settlement {
        Settlement {
            booked: Booked::Shared(commitment),
        }
    }

    /// What was booked before sending.
    pub fn estimate(&self) -> &Cost {
        match &self.booked {
            Booked::Local { commitment, .. } => commitment.cost(),
            #[cfg(feature = "redis")]
            Booked::Shared(commitment) => commitment.cost(),
        }
    }

    /// Replaces the estimate with the real cost: an over-estimate is given back (when nothing
    /// was booked after it), an under-estimate is charged, so later requests wait for it.
    pub fn settle(self, actual: &Cost) {
        match self.booked {
            Booked::Local { budget, commitment } => budget.settle(commitment, actual),
            #[cfg(feature = "redis")]
            Booked::Shared(commitment) => commitment.settle(actual),
        }
    }
}

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
