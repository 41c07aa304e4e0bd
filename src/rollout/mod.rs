//! Shadow mode and gradual enforcement: putting a throttle in front of traffic that already
//! works without slowing or refusing any of it until it has proven itself.
//!
//! A policy enforces a **share** of its requests ([`Policy::enforce_percent`], runtime changes
//! through [`Throttle::rollout`]); the rest are **shadowed**. A shadowed request is sent at once,
//! exactly as the bare client would send it (no wait, no refusal, no retry), while the throttle
//! computes every decision it would have made and records it: the wait for rate and cooldown,
//! a missing concurrency slot, the breaker's verdict, the retry. Those land in
//! [`LaneStats::rollout`](crate::LaneStats::rollout) (enforced vs shadowed requests, their 429s,
//! their latency percentiles, and the would-have figures), as `tracing` events, and in the
//! `metrics` feature's metrics.
//!
//! # Which requests are enforced
//!
//! Each request has a rollout key: the caller's [`RolloutKey`] extension (a tenant id), or else
//! the lane's key. The key is hashed with 64-bit FNV-1a (mixed by MurmurHash3's finalizer)
//! into a bucket in `[0, 10 000)`
//! ([`bucket`]); the request is enforced when its bucket is below the share in basis points.
//! So a given key is always on the same side for a given share, in every process and every
//! version (the hash is specified, not the standard library's), and raising the share only
//! moves keys from shadowed to enforced, never back. An [`Enforcement`] extension decides for
//! one request regardless of the share.
//!
//! # What shadowing keeps truthful
//!
//! A shadowed request books its turn in a *shadow* budget that follows the lane's limits (set
//! or learned) and cooldowns and keeps the queue the throttle would have kept (enforced
//! requests are booked there too, when admitted): its wait there is the would-have wait, and
//! successive waits add up as they would have. The lane's own budget, which the enforced
//! requests book in, counts what the server counted: a shadowed request is charged as it leaves
//! when it could have left at once, else (its booking released as the real request goes) when
//! the server accepts it, never beyond empty; a refused one costs nothing. So shadowed traffic never builds a
//! backlog that enforced requests would then wait behind, and enforced requests do not leave
//! into a server that shadowed ones have already filled.
//!
//! The server's answers to shadowed requests teach the lane what the server announces (rate-limit
//! headers, the breaker's view of its health, a 503's pause), but a shadowed request's
//! *refusal* (a 429) teaches no pace and sets no cooldown: it was refused for a pace it was
//! never held to, and slowing the lane for it would make the prediction, and the enforced
//! requests, pay for traffic the throttle did not control.
//!
//! [`Policy::enforce_percent`]: crate::Policy::enforce_percent
//! [`Throttle::rollout`]: crate::Throttle::rollout

use std::sync::atomic::{AtomicU16, Ordering::Relaxed};
use std::sync::Arc;

use crate::key::LaneKey;

mod comparison;
mod histogram;

pub(crate) use comparison::{Comparison, Outcome};
pub use comparison::{RolloutStats, SideStats, WouldHave, WouldRefuse};
pub use histogram::Percentiles;

/// Basis points in a whole: a share is enforced for buckets below it.
pub const BASIS_POINTS: u16 = 10_000;

/// Per-request choice of side, set through `http::Extensions`; without it the policy's share
/// and the request's [`RolloutKey`] decide.
///
/// ```
/// use reqwest_throttle::rollout::Enforcement;
///
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).build();
/// // Sent at once whatever the policy says; what the throttle would have done is recorded.
/// let request = client
///     .get("http://127.0.0.1:9/")
///     .with_extension(Enforcement::Shadow);
/// # drop(request);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Enforcement {
    /// Throttle this request (wait, refuse, retry).
    Enforce,
    /// Send this request at once and record what the throttle would have done.
    Shadow,
}

/// Per-request rollout key (a tenant id, a user id), set through `http::Extensions`: requests
/// with the same key are always on the same side of the share. Without it the lane's key is used.
///
/// ```
/// use reqwest_throttle::rollout::RolloutKey;
///
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).build();
/// let request = client
///     .get("http://127.0.0.1:9/")
///     .with_extension(RolloutKey::new("tenant-42"));
/// # drop(request);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RolloutKey(String);

impl RolloutKey {
    /// The key `key`.
    pub fn new(key: impl Into<String>) -> RolloutKey {
        RolloutKey(key.into())
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The bucket of `key` in `[0, 10 000)`: the request is enforced when its bucket is below the
/// share in basis points. 64-bit FNV-1a of the key's UTF-8 bytes, mixed by MurmurHash3's
/// `fmix64` and scaled as `(hash × 10 000) >> 64`: the same in every process, platform and
/// version.
///
/// ```
/// use reqwest_throttle::rollout::bucket;
///
/// // Which side "tenant-42" is on at a 30 % share:
/// let enforced = bucket("tenant-42") < 3_000;
/// assert_eq!(enforced, bucket("tenant-42") < 3_000);
/// assert!(bucket("tenant-42") < 10_000);
/// ```
pub fn bucket(key: &str) -> u16 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = key.bytes().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    });
    ((u128::from(fmix64(hash)) * u128::from(BASIS_POINTS)) >> 64) as u16
}

/// MurmurHash3's 64-bit finalizer: FNV-1a alone leaves keys that differ in their last
/// characters (`tenant-1`, `tenant-2`) close together, so a share would enforce far from its
/// fraction of such keys; mixed, every bit of the hash depends on every byte.
fn fmix64(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// A percentage as basis points, if it is one (finite, from 0 to 100).
pub(crate) fn basis_points(percent: f64) -> Option<u16> {
    (percent.is_finite() && (0.0..=100.0).contains(&percent))
        .then(|| (percent * 100.0).round() as u16)
}

/// The share of a policy's requests that are enforced, changeable at runtime.
///
/// The lanes of one policy share it; a cloned [`Policy`](crate::Policy) gets its own (the
/// clone starts with the same share and moves on its own).
pub(crate) struct EnforcedShare {
    /// What the policy asked for, kept for validation: a share out of range is refused when the
    /// throttle is built.
    asked_percent: f64,
    basis_points: Arc<AtomicU16>,
}

impl EnforcedShare {
    pub fn percent(percent: f64) -> EnforcedShare {
        EnforcedShare {
            asked_percent: percent,
            basis_points: Arc::new(AtomicU16::new(
                basis_points(percent).unwrap_or(BASIS_POINTS),
            )),
        }
    }

    /// The percentage asked for, when it is not one.
    pub fn invalid(&self) -> Option<f64> {
        basis_points(self.asked_percent)
            .is_none()
            .then_some(self.asked_percent)
    }

    pub fn basis_points(&self) -> u16 {
        self.basis_points.load(Relaxed)
    }

    /// The handle a [`RolloutControl`](crate::RolloutControl) changes.
    pub fn handle(&self) -> Arc<AtomicU16> {
        Arc::clone(&self.basis_points)
    }
}

impl Default for EnforcedShare {
    fn default() -> Self {
        EnforcedShare::percent(100.0)
    }
}

impl Clone for EnforcedShare {
    fn clone(&self) -> Self {
        EnforcedShare {
            asked_percent: self.asked_percent,
            basis_points: Arc::new(AtomicU16::new(self.basis_points())),
        }
    }
}

impl std::fmt::Debug for EnforcedShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} %", f64::from(self.basis_points()) / 100.0)
    }
}

/// Which side of the rollout a request is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Enforced,
    Shadowed,
}

impl Side {
    /// The side of a request: its own [`Enforcement`] first, then its key's bucket against the
    /// share (`share` basis points; all and none need no hashing).
    pub fn of(
        share: u16,
        enforcement: Option<&Enforcement>,
        key: Option<&RolloutKey>,
        lane: &LaneKey,
    ) -> Side {
        let enforced = match enforcement {
            Some(Enforcement::Enforce) => true,
            Some(Enforcement::Shadow) => false,
            None if share >= BASIS_POINTS => true,
            None if share == 0 => false,
            None => bucket(key.map_or(lane.as_str(), RolloutKey::as_str)) < share,
        };
        if enforced {
            Side::Enforced
        } else {
            Side::Shadowed
        }
    }
}

/// What the throttle would have done to a shadowed request before sending it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Foresight {
    /// How long it would have waited for its turn (rate or cooldown); `None` when refused.
    pub wait: Option<std::time::Duration>,
    /// Why it would have been refused, if it would have been.
    pub refused: Option<WouldRefuse>,
    /// It found no free concurrency slot.
    pub queued_for_slot: bool,
    /// The lane's budget was charged for it when it left (it could have left at once).
    pub charged: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 64-bit FNV-1a reference values (from the specification's test suite).
    #[test]
    fn the_hash_is_fnv_1a() {
        fn fnv(key: &str) -> u64 {
            // The unscaled hash, recovered from the bucket arithmetic's input.
            key.bytes().fold(0xcbf2_9ce4_8422_2325, |h: u64, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            })
        }
        assert_eq!(fnv(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv("foobar"), 0x8594_4171_f739_67e8);
        let scaled = |h: u64| ((u128::from(fmix64(h)) * 10_000) >> 64) as u16;
        // MurmurHash3's finalizer: zero stays zero, and one known value.
        assert_eq!(fmix64(0), 0);
        for key in ["", "a", "foobar", "tenant-42"] {
            assert_eq!(bucket(key), scaled(fnv(key)), "{key}");
        }
        // Pinned, so that no later version moves a tenant to the other side: computed by an
        // independent implementation (a few lines of Python with the same constants).
        assert_eq!(fmix64(1), 0xb456_bcfc_34c2_cb2c);
        assert_eq!(
            [bucket(""), bucket("a"), bucket("tenant-42")],
            [9_367, 5_102, 1_290]
        );
    }

    #[test]
    fn buckets_spread_evenly() {
        let mut counts = [0u32; 10];
        for n in 0..100_000 {
            counts[usize::from(bucket(&format!("tenant-{n}")) / 1_000)] += 1;
        }
        for count in counts {
            assert!((9_500..=10_500).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn percentages_are_checked() {
        assert_eq!(basis_points(0.0), Some(0));
        assert_eq!(basis_points(30.0), Some(3_000));
        assert_eq!(basis_points(12.345), Some(1_235));
        assert_eq!(basis_points(100.0), Some(10_000));
        for bad in [-0.1, 100.1, f64::NAN, f64::INFINITY] {
            assert_eq!(basis_points(bad), None);
        }
    }

    #[test]
    fn a_request_override_wins_over_the_share() {
        let lane = LaneKey::new("https://api.test:443");
        let shadow = Some(&Enforcement::Shadow);
        assert_eq!(Side::of(10_000, shadow, None, &lane), Side::Shadowed);
        let enforce = Some(&Enforcement::Enforce);
        assert_eq!(Side::of(0, enforce, None, &lane), Side::Enforced);
        assert_eq!(Side::of(0, None, None, &lane), Side::Shadowed);
        assert_eq!(Side::of(10_000, None, None, &lane), Side::Enforced);
    }

    #[test]
    fn a_clone_gets_its_own_share() {
        let share = EnforcedShare::percent(30.0);
        let clone = share.clone();
        share.handle().store(5_000, Relaxed);
        assert_eq!(clone.basis_points(), 3_000);
        assert_eq!(share.basis_points(), 5_000);
        assert_eq!(EnforcedShare::percent(101.0).invalid(), Some(101.0));
    }
}
