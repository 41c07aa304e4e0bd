//! Reading a response body without holding it back: a bounded prefix read now, the rest handed
//! on as the same stream, and usage read as the caller's reads pass.
//!
//! The cost model reads bodies for two reasons, and both are bounded:
//!
//! - **Now, within a bound** ([`read_prefix`]): at most `limit` bytes (plus the frame that
//!   crossed it) and for at most `timeout`, so the caller gets the status without waiting for a
//!   large or slow body. Whatever was read is handed back in front of the part not yet read
//!   ([`Prefix::into_body`]): the caller reads the same bytes, frames and errors, in order,
//!   as if nothing had been read.
//! - **Later, as it passes** ([`UsageStream`]): a body wrapped so that every frame goes through
//!   unchanged while a [`UsageScanner`] looks at it; when the body ends, fails, or is dropped,
//!   the scanner's usage (if any) settles the booking. The scanner keeps a bounded amount
//!   (one line of an event stream, or a JSON document up to a limit), never the whole body.
//!
//! Every rebuilt response keeps the status, version, headers, extensions and URL, and a body
//! whose size hint is the original's (so `content_length()` is unchanged).

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use reqwest::{Response, ResponseBuilderExt as _};

use super::usage::{Usage, UsageScanner};

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
        Err(error) => Response::from(http::Response::new(reqwest::Body::wrap(Replay {
            frames: VecDeque::new(),
            ahead: 0,
            error: Some(error.into()),
            rest: None,
        }))),
    }
}

/// Why [`read_prefix`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The body ended cleanly within the limit: the prefix is the whole body.
    Complete,
    /// More than the limit arrived; the rest is unread.
    OverLimit,
    /// The timeout expired first; the rest is unread.
    TimedOut,
    /// Reading failed; the error is replayed after the prefix.
    Failed,
}

/// The start of a body, read by [`read_prefix`].
pub(crate) struct Prefix {
    frames: VecDeque<Frame<Bytes>>,
    len: usize,
    error: Option<BoxError>,
    /// Why reading stopped.
    pub(crate) stop: Stop,
}

impl Prefix {
    /// The bytes read, contiguous. Copies only when they came in more than one frame.
    pub(crate) fn bytes(&self) -> Bytes {
        let mut data = self.frames.iter().filter_map(Frame::data_ref);
        match (data.next(), data.next()) {
            (None, _) => Bytes::new(),
            (Some(only), None) => only.clone(),
            (Some(_), Some(_)) => {
                let mut joined = Vec::with_capacity(self.len);
                for chunk in self.frames.iter().filter_map(Frame::data_ref) {
                    joined.extend_from_slice(chunk);
                }
                Bytes::from(joined)
            }
        }
    }

    /// The body the caller reads: the prefix, then its error if reading failed, then the unread
    /// rest (dropped when the prefix is the whole body).
    pub(crate) fn into_body(self, rest: reqwest::Body) -> reqwest::Body {
        let rest = matches!(self.stop, Stop::OverLimit | Stop::TimedOut).then_some(rest);
        reqwest::Body::wrap(Replay {
            frames: self.frames,
            ahead: u64::try_from(self.len).unwrap_or(u64::MAX),
            error: self.error,
            rest,
        })
    }
}

/// Reads the start of `body`: frames until it ends, until more than `limit` bytes arrived, or
/// until `timeout`, whichever comes first. Holds at most `limit` bytes plus one frame.
pub(crate) async fn read_prefix(
    body: &mut reqwest::Body,
    limit: usize,
    timeout: Duration,
) -> Prefix {
    let mut prefix = Prefix {
        frames: VecDeque::new(),
        len: 0,
        error: None,
        stop: Stop::TimedOut,
    };
    let reading = async {
        while prefix.len <= limit {
            // Cancel-safe: a frame is only taken out of the body when this resolves.
            match body.frame().await {
                None => return Stop::Complete,
                Some(Err(error)) => {
                    prefix.error = Some(error.into());
                    return Stop::Failed;
                }
                Some(Ok(frame)) => {
                    let size = frame.data_ref().map_or(0, Bytes::len);
                    prefix.len = prefix.len.saturating_add(size);
                    prefix.frames.push_back(frame);
                }
            }
        }
        Stop::OverLimit
    };
    // tokio's timeout polls the read once before looking at the clock, so a body that is
    // already here is read whole even with a zero timeout.
    let read = tokio::time::timeout(timeout, reading).await;
    if let Ok(stop) = read {
        prefix.stop = stop;
    }
    prefix
}

/// Frames read ahead, then an error read ahead, then the rest of the body.
struct Replay {
    frames: VecDeque<Frame<Bytes>>,
    /// The data bytes in `frames`, so that a size hint costs no walk over them.
    ahead: u64,
    error: Option<BoxError>,
    rest: Option<reqwest::Body>,
}

impl Body for Replay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(frame) = self.frames.pop_front() {
            let size = frame.data_ref().map_or(0, Bytes::len);
            self.ahead = self
                .ahead
                .saturating_sub(u64::try_from(size).unwrap_or(u64::MAX));
            return Poll::Ready(Some(Ok(frame)));
        }
        if let Some(error) = self.error.take() {
            return Poll::Ready(Some(Err(error)));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest)
                .poll_frame(cx)
                .map(|frame| frame.map(|frame| frame.map_err(Into::into))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
            && self.error.is_none()
            && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let ahead = self.ahead;
        let rest = self
            .rest
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint);
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(ahead));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(ahead));
        }
        hint
    }
}

/// What to do with the usage found when a wrapped body ends.
pub(crate) type OnEnd = Box<dyn FnOnce(Option<Usage>) + Send + Sync>;

/// A body passed through unchanged while `scanner` reads it; its usage settles the booking when
/// the body ends, fails, or is dropped.
pub(crate) struct UsageStream<S: UsageScanner> {
    inner: reqwest::Body,
    scanner: S,
    on_end: Option<OnEnd>,
}

impl<S: UsageScanner> UsageStream<S> {
    pub(crate) fn new(inner: reqwest::Body, scanner: S, on_end: OnEnd) -> UsageStream<S> {
        UsageStream {
            inner,
            scanner,
            on_end: Some(on_end),
        }
    }

    fn end(&mut self) {
        if let Some(on_end) = self.on_end.take() {
            on_end(self.scanner.finish());
        }
    }
}

impl<S: UsageScanner> Body for UsageStream<S> {
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

impl<S: UsageScanner> Drop for UsageStream<S> {
    /// A caller that stops reading early still settles with the usage seen so far.
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(items: Vec<Result<&'static [u8], &'static str>>) -> reqwest::Body {
        let items = items
            .into_iter()
            .map(|item| item.map(Bytes::from_static).map_err(std::io::Error::other));
        reqwest::Body::wrap_stream(futures_util::stream::iter(items))
    }

    async fn frames(mut body: reqwest::Body) -> (Vec<u8>, Option<String>) {
        let mut data = Vec::new();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => data.extend_from_slice(frame.data_ref().map_or(&[][..], |d| d)),
                Err(error) => return (data, Some(format!("{error:?}"))),
            }
        }
        (data, None)
    }

    #[tokio::test]
    async fn a_prefix_is_replayed_in_front_of_the_rest_then_the_error() {
        // Over the limit: the rest follows the prefix, then the body's own error.
        let mut body = body_of(vec![Ok(b"ab"), Ok(b"cd"), Ok(b"ef"), Err("cut")]);
        let prefix = read_prefix(&mut body, 3, Duration::from_secs(1)).await;
        assert_eq!(prefix.stop, Stop::OverLimit);
        assert_eq!(&prefix.bytes()[..], b"abcd");
        let (data, error) = frames(prefix.into_body(body)).await;
        assert_eq!(data, b"abcdef");
        assert!(error.is_some_and(|e| e.contains("cut")));
        // Failing within the limit: the prefix, then the error read ahead.
        let mut body = body_of(vec![Ok(b"ab"), Err("cut")]);
        let prefix = read_prefix(&mut body, 100, Duration::from_secs(1)).await;
        assert_eq!(prefix.stop, Stop::Failed);
        let (data, error) = frames(prefix.into_body(body)).await;
        assert_eq!(data, b"ab");
        assert!(error.is_some_and(|e| e.contains("cut")));
        // Whole: nothing more, and the size hint is exact.
        let mut body = body_of(vec![Ok(b"ab"), Ok(b"c")]);
        let prefix = read_prefix(&mut body, 100, Duration::from_secs(1)).await;
        assert_eq!(prefix.stop, Stop::Complete);
        let whole = prefix.into_body(body);
        assert_eq!(whole.size_hint().exact(), Some(3));
        assert_eq!(frames(whole).await, (b"abc".to_vec(), None));
    }
}
