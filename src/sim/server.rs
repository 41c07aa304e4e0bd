//! The simulated API over real sockets: HTTP/1.1 on `127.0.0.1`.
//!
//! The listening socket lives in a [`Listening`] slot shared by the accept loop and
//! [`SimulatedApi::set_outage`], so that an [`Outage::Refuse`] closes the port (and a
//! recovery reopens it on the same port) synchronously, before `set_outage` returns: a test
//! that starts an outage and then connects is refused every time, never by luck. The accept
//! loop polls the slot under its lock, and is woken when the slot changes.

use std::future::poll_fn;
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::{dropped, Outage, Reply, SimRequest, SimulatedApi};

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

/// Binds a loopback port and spawns the accept loop.
pub(crate) async fn start(api: SimulatedApi) -> io::Result<SimServer> {
    // std sets SO_REUSEADDR on Unix, so the same port can be bound again after an outage
    // even while old connections linger in TIME_WAIT.
    let listener = StdTcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let addr = listener.local_addr()?;
    let listening = Arc::new(Listening {
        state: Mutex::new(Slot {
            addr,
            socket: Socket::Bound(listener),
            generation: 0,
            waker: None,
        }),
    });
    {
        // Registered and brought in line with the current outage under the registry's lock,
        // so a concurrent `set_outage` is applied either here or there, never lost.
        let mut listeners = api
            .inner
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        listeners.retain(|listening| listening.strong_count() > 0);
        listeners.push(Arc::downgrade(&listening));
        listening.apply_outage(matches!(api.outage(), Some(Outage::Refuse)));
    }
    let task = tokio::spawn(accept_loop(api, listening));
    Ok(SimServer { addr, task })
}

/// The listening socket of one server, shared with `set_outage`.
#[derive(Debug)]
pub(crate) struct Listening {
    state: Mutex<Slot>,
}

#[derive(Debug)]
struct Slot {
    addr: SocketAddr,
    socket: Socket,
    /// Incremented every time the port is closed, so the accept loop can tell that the
    /// connections it holds belong to an earlier life of the server.
    generation: u64,
    /// The accept loop's waker, woken when the slot changes.
    waker: Option<Waker>,
}

#[derive(Debug)]
enum Socket {
    /// Not listening: connects are refused by the kernel.
    Closed,
    /// Bound and listening (the kernel queues connects) but not yet registered with tokio;
    /// `set_outage` may run outside a runtime, so registration is left to the accept loop.
    Bound(StdTcpListener),
    /// Registered with tokio and accepting.
    Accepting(TcpListener),
}

/// What the accept loop learns from the slot.
enum Event {
    Connection(TcpStream),
    /// The port was closed since the loop last looked: its connections must go too.
    Closed,
    Error(io::Error),
}

impl Listening {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes the port (`refuse`) or makes sure it is open again.
    pub(crate) fn apply_outage(&self, refuse: bool) {
        let mut slot = self.lock();
        if refuse {
            if !matches!(slot.socket, Socket::Closed) {
                slot.socket = Socket::Closed;
                slot.generation = slot.generation.wrapping_add(1);
            }
        } else if matches!(slot.socket, Socket::Closed) {
            match StdTcpListener::bind(slot.addr) {
                Ok(listener) => slot.socket = Socket::Bound(listener),
                // Nothing sensible to do but report: the server stays down until the next
                // `set_outage` tries again.
                Err(error) => tracing::error!(addr = %slot.addr, %error,
                    "simulated API could not reopen its port after an outage"),
            }
        }
        if let Some(waker) = slot.waker.take() {
            waker.wake();
        }
    }

    fn poll_event(&self, cx: &mut Context<'_>, seen_generation: &mut u64) -> Poll<Event> {
        let mut slot = self.lock();
        slot.waker = Some(cx.waker().clone());
        if slot.generation != *seen_generation {
            *seen_generation = slot.generation;
            return Poll::Ready(Event::Closed);
        }
        if matches!(slot.socket, Socket::Bound(_)) {
            if let Socket::Bound(listener) = std::mem::replace(&mut slot.socket, Socket::Closed) {
                match listener
                    .set_nonblocking(true)
                    .and_then(|()| TcpListener::from_std(listener))
                {
                    Ok(listener) => slot.socket = Socket::Accepting(listener),
                    Err(error) => return Poll::Ready(Event::Error(error)),
                }
            }
        }
        match &slot.socket {
            Socket::Accepting(listener) => match listener.poll_accept(cx) {
                Poll::Ready(Ok((stream, _))) => Poll::Ready(Event::Connection(stream)),
                Poll::Ready(Err(error)) => Poll::Ready(Event::Error(error)),
                Poll::Pending => Poll::Pending,
            },
            Socket::Closed | Socket::Bound(_) => Poll::Pending,
        }
    }
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
