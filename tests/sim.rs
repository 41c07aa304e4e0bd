//! Behaviour of the simulated API through its public interface.
