//! Handing the caller a response identical to the one received, after reading its body.
//!
//! A JSON answer is buffered whole, read, and given back as the same bytes with the same
//! status, version, headers, extensions and URL. A streamed answer is wrapped: every frame
//! passes through unchanged and in order, while its `data:` lines are scanned for usage; when
//! the stream ends (or the caller drops it) the booking is settled with what was seen.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use reqwest::{Response, ResponseBuilderExt as _};

use super::usage::{SseUsage, Usage};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response taken apart, to be put back together with another body of the same bytes.
pub(crate) struct Parts {
    url: reqwest::Url,
    parts: http::response::Parts,
}

/// Takes a response apart into its parts and body.
pub(crate) fn split(response: Response) -> (Parts, reqwest::Body) {
    let url = response.url().clone();
    let (parts, body) = http::Response::<reqwest::Body>::from(response).into_parts();
    (Parts { url, parts }, body)
}

/// Puts a response back together.
pub(crate) fn join(parts: Parts, body: reqwest::Body) -> Response {
    let Parts { url, parts } = parts;
    let mut builder = http::Response::builder()
        .status(parts.status)
        .version(parts.version)
        .url(url);
    if let Some(headers) = builder.headers_mut() {
        *headers = parts.headers;
    }
    if let Some(extensions) = builder.extensions_mut() {
        extensions.extend(parts.extensions);
    }
    match builder.body(body) {
        Ok(response) => Response::from(response),
        // Unreachable: every part came from a valid response.
        Err(error) => Response::from(http::Response::new(reqwest::Body::wrap(Failed(Some(
            error.into(),
        ))))),
    }
}

/// Reads a whole body. On a transport error the caller gets a body that fails the same way
/// when read, so nothing is hidden.
pub(crate) async fn buffer(body: reqwest::Body) -> Result<Bytes, reqwest::Body> {
    match body.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) => Err(reqwest::Body::wrap(Failed(Some(error.into())))),
    }
}

/// A body whose only frame is an error.
struct Failed(Option<BoxError>);

impl Body for Failed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.take().map(Err))
    }
}

/// What to do with the usage found at the end of a stream.
pub(crate) type OnEnd = Box<dyn FnOnce(Option<Usage>) + Send + Sync>;

/// A streamed body, passed through unchanged, whose usage events settle the booking at the end.
pub(crate) struct UsageStream {
    inner: reqwest::Body,
    scanner: SseUsage,
    on_end: Option<OnEnd>,
}

impl UsageStream {
    pub(crate) fn new(inner: reqwest::Body, on_end: OnEnd) -> UsageStream {
        UsageStream {
            inner,
            scanner: SseUsage::default(),
            on_end: Some(on_end),
        }
    }

    fn end(&mut self) {
        if let Some(on_end) = self.on_end.take() {
            on_end(self.scanner.finish());
        }
    }
}

impl Body for UsageStream {
    type Data = Bytes;
    type Error = reqwest::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, reqwest::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.scanner.feed(data);
                }
            }
            // The end, or a broken stream: settle with what was seen.
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.end(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UsageStream {
    /// A caller that stops reading early still settles with the usage seen so far.
    fn drop(&mut self) {
        self.end();
    }
}
