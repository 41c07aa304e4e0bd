//! The simulated API over real sockets: HTTP/1.1 on `127.0.0.1`, answered from the same state
//! as the middleware. Each server's port lives in a [`Listening`] slot, so that an outage can
//! close and reopen it.

use std::future::poll_fn;
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::{JoinHandle, JoinSet};

use super::api::SimulatedApi;
use super::listening::{Event, Listening};
use super::respond::{dropped, Reply, SimRequest};

/// Request bodies above this size close the connection (the simulated server has no use for
/// them, and a test must not be able to exhaust memory through it).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A running loopback server for a [`SimulatedApi`]; it stops when dropped.
///
/// ```
/// use reqwest_throttle::sim::SimulatedApi;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let server = SimulatedApi::builder().build().serve().await?;
/// assert!(server.addr().ip().is_loopback());
/// assert_eq!(server.url("v1/models"), format!("http://{}/v1/models", server.addr()));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct SimServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl SimServer {
    /// The address the server listens on (`127.0.0.1` and an ephemeral port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `http://` URL of `path` on this server (a missing leading `/` is added).
    pub fn url(&self, path: &str) -> String {
        let slash = if path.starts_with('/') { "" } else { "/" };
        format!("http://{}{slash}{path}", self.addr)
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        // Aborting the accept loop drops its listener and its `JoinSet`, which aborts every
        // connection task in turn.
        self.task.abort();
    }
}

impl SimulatedApi {
    /// Serves this API over HTTP/1.1 on `127.0.0.1` (an ephemeral port), sharing its limits,
    /// outage and counters. The server stops when the returned [`SimServer`] is dropped.
    ///
    /// # Errors
    ///
    /// If no loopback port can be bound.
    pub async fn serve(&self) -> io::Result<SimServer> {
        start(self.clone()).await
    }
}

/// Binds a loopback port and spawns the accept loop.
async fn start(api: SimulatedApi) -> io::Result<SimServer> {
    // std sets SO_REUSEADDR on Unix, so the same port can be bound again after an outage
    // even while old connections linger in TIME_WAIT.
    let listener = StdTcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let addr = listener.local_addr()?;
    let listening = Arc::new(Listening::bound(addr, listener));
    api.register(&listening);
    let task = tokio::spawn(accept_loop(api, listening));
    Ok(SimServer { addr, task })
}

async fn accept_loop(api: SimulatedApi, listening: Arc<Listening>) {
    let mut connections = JoinSet::new();
    let mut seen_generation = 0;
    loop {
        tokio::select! {
            event = poll_fn(|cx| listening.poll_event(cx, &mut seen_generation)) => match event {
                Event::Connection(stream) => {
                    connections.spawn(serve_connection(api.clone(), stream));
                }
                Event::Closed => connections.abort_all(),
                Event::Error(error) => {
                    // Typically out of file descriptors; pause rather than spin.
                    tracing::warn!(%error, "simulated API could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(api: SimulatedApi, stream: TcpStream) {
    // Small answers; without this, Nagle's algorithm would add latency to every request.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| answer_http(api.clone(), request));
    if let Err(error) = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::trace!(%error, "simulated API connection ended");
    }
}

/// Answers one HTTP request; an `Err` makes hyper close the connection without an answer.
async fn answer_http(
    api: SimulatedApi,
    request: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, io::Error> {
    let (parts, body) = request.into_parts();
    // Read the whole body, so that the connection can be kept alive.
    let body = Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(io::Error::other)?
        .to_bytes();
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let request = SimRequest {
        method: parts.method,
        path,
        body,
    };
    match api.respond(request).await {
        Reply::Answer(answer) => {
            let mut response = hyper::Response::new(Full::new(answer.body));
            *response.status_mut() = answer.status;
            *response.headers_mut() = answer.headers;
            Ok(response)
        }
        Reply::Drop(kind) => Err(dropped(kind)),
    }
}
