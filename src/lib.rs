//! reqwest-throttle: a `reqwest_middleware::Middleware` that makes a `reqwest` client a good
//! citizen of rate-limited APIs.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod sim;
