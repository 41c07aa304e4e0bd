//! The rate algorithms, free of HTTP: one GCRA cell ([`Gcra`]) and a budget of several cells
//! reserved together with a cooldown gate ([`Budget`]).
//!
//! The middleware uses these through lanes; they are public so that the same exact,
//! cancellation-safe limiter can pace anything else (a queue consumer, a websocket).

mod budget;
mod gcra;
mod ledger;
pub(crate) mod pace;

pub use budget::{
    Blocked, Booking, Budget, Commitment, Cost, Dimension, Limit, Reservation, Waited,
};
pub use gcra::{Gcra, Grant, Nanos};
