//! The simulated API as the terminal middleware of a `reqwest_middleware` chain: no socket, and
//! under paused tokio time no real time either.

use bytes::Bytes;
use http::{Extensions, Version};
use reqwest::ResponseBuilderExt as _;
use reqwest_middleware::{Middleware, Next};

use super::api::SimulatedApi;
use super::respond::{dropped, Reply, SimRequest};

/// The simulated API as the last middleware of a chain: it answers every request itself and
/// never calls `next`. The response's URL is the request's.
///
/// An [`Outage::Refuse`](super::Outage::Refuse) or [`Outage::Hangup`](super::Outage::Hangup)
/// becomes `reqwest_middleware::Error::Middleware` wrapping an [`io::Error`](std::io::Error)
/// of kind `ConnectionRefused` or `ConnectionReset` (a `reqwest::Error` cannot be built
/// outside reqwest).
#[async_trait::async_trait]
impl Middleware for SimulatedApi {
    async fn handle(
        &self,
        req: reqwest::Request,
        _extensions: &mut Extensions,
        _next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let url = req.url();
        let path = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let request = SimRequest {
            method: req.method().clone(),
            path,
            body: req
                .body()
                .and_then(|body| body.as_bytes())
                .map(Bytes::copy_from_slice)
                .unwrap_or_default(),
        };
        match self.respond(request).await {
            Reply::Answer(answer) => {
                let mut builder = http::Response::builder()
                    .status(answer.status)
                    .version(Version::HTTP_11)
                    .url(req.url().clone());
                if let Some(headers) = builder.headers_mut() {
                    *headers = answer.headers;
                }
                let response = builder
                    .body(answer.body)
                    .map_err(reqwest_middleware::Error::middleware)?;
                Ok(reqwest::Response::from(response))
            }
            Reply::Drop(kind) => Err(reqwest_middleware::Error::middleware(dropped(kind))),
        }
    }
}
