//! The listening socket of one simulated server, in a slot shared by its accept loop and
//! [`SimulatedApi::set_outage`](super::SimulatedApi::set_outage).
//!
//! An [`Outage::Refuse`](super::Outage::Refuse) closes the port, and a recovery reopens it on
//! the same port, synchronously, before `set_outage` returns: a test that starts an outage and
//! then connects is refused every time, never by luck. The accept loop polls the slot under
//! its lock, and is woken when the slot changes.

use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::net::{TcpListener, TcpStream};

/// The listening socket of one server, shared with `set_outage`.
#[derive(Debug)]
pub(super) struct Listening {
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
pub(super) enum Event {
    Connection(TcpStream),
    /// The port was closed since the loop last looked: its connections must go too.
    Closed,
    Error(io::Error),
}

impl Listening {
    /// The slot of `listener`, bound and listening at `addr` (the port reopened after an
    /// outage).
    pub(super) fn bound(addr: SocketAddr, listener: StdTcpListener) -> Listening {
        Listening {
            state: Mutex::new(Slot {
                addr,
                socket: Socket::Bound(listener),
                generation: 0,
                waker: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes the port (`refuse`) or makes sure it is open again.
    pub(super) fn apply_outage(&self, refuse: bool) {
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

    /// The next thing the accept loop must handle: a connection, the port closed since it
    /// last looked, or an error.
    pub(super) fn poll_event(
        &self,
        cx: &mut Context<'_>,
        seen_generation: &mut u64,
    ) -> Poll<Event> {
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
