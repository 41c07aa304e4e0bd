//! The rate algorithms, free of HTTP: one GCRA cell ([`Gcra`]), longer rolling windows beside
//! it ([`RollingWindow`]), and a budget of several dimensions, each a cell and its windows,
//! reserved together with a cooldown gate ([`Budget`]).
//!
//! The middleware uses these through lanes; they are public so that the same exact,
//! cancellation-safe limiter can pace anything else (a queue consumer, a websocket).

mod budget;
mod charge;
mod cost;
mod departure;
mod reservation;

mod gcra;
mod ledger;
pub(crate) mod pace;
mod window;

pub use budget::Budget;
pub use cost::{Blocked, Cost, Dimension, Limit, RollingWindow};
pub(crate) use departure::sleep_exactly_until;
pub use gcra::{Gcra, Grant, Nanos};
#[cfg_attr(not(feature = "redis"), allow(unused_imports))]
pub(crate) use reservation::Settled;
pub use reservation::{Booking, Commitment, Reservation, Waited};
