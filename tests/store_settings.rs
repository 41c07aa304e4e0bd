//! No setting of a `RedisStore` that cannot work gets through: each is refused when the
//! throttle is built, with a `PolicyError::StoreSetting` that names the setting and the value
//! given, and the same setter with a workable value builds (so a store that refused everything
//! would fail too). Nothing here connects: a store connects on its first booking.

use std::time::Duration;

use reqwest_throttle::store::{OnStoreDown, RedisStore, DEFAULT_LEASE, DEFAULT_TIMEOUT};
use reqwest_throttle::{PolicyError, Throttle};

fn local_store() -> RedisStore {
    RedisStore::new("redis://127.0.0.1:1/").expect("a valid URL")
}

fn build(store: RedisStore) -> Result<Throttle, PolicyError> {
    Throttle::builder().store(store).build()
}

/// Each invalid setting, with the field its error names and the value it must show.
fn invalid() -> Vec<(&'static str, &'static str, RedisStore)> {
    let share = |share: f64| local_store().on_down(OnStoreDown::Fallback { share });
    vec![
        ("concurrency", "0", local_store().concurrency(0)),
        ("lease", "0s", local_store().lease(Duration::ZERO)),
        (
            "lease",
            "29ms",
            local_store().lease(Duration::from_millis(29)),
        ),
        ("timeout", "0s", local_store().timeout(Duration::ZERO)),
        (
            "timeout",
            "2h",
            local_store().timeout(Duration::from_secs(7_200)),
        ),
        ("timeout", "", local_store().timeout(Duration::MAX)),
        ("expected_workers", "0", local_store().expected_workers(0)),
        ("on_down", "NaN", share(f64::NAN)),
        ("on_down", "0", share(0.0)),
        ("on_down", "-0.5", share(-0.5)),
        ("on_down", "1.5", share(1.5)),
        ("on_down", "inf", share(f64::INFINITY)),
        ("prefix", "\"team{a}\"", local_store().prefix("team{a}")),
        ("prefix", "\"}\"", local_store().prefix("}")),
    ]
}

#[test]
fn every_invalid_setting_is_refused_with_its_field_and_value() {
    let cases = invalid();
    assert_eq!(cases.len(), 14);
    for (field, value, store) in cases {
        let context = format!("{field} = {value}");
        match build(store) {
            Err(error @ PolicyError::StoreSetting { .. }) => {
                let PolicyError::StoreSetting {
                    field: named,
                    value: shown,
                    ..
                } = &error
                else {
                    unreachable!()
                };
                assert_eq!(*named, field, "{context}: {error}");
                assert!(shown.contains(value), "{context}: shows {shown:?}");
                let message = error.to_string();
                assert!(
                    message.starts_with(&format!("store {field}: ")),
                    "{context}: {message}"
                );
                assert!(message.contains(value), "{context}: {message}");
            }
            other => panic!("{context}: expected a StoreSetting error, got {other:?}"),
        }
    }
}

#[test]
fn the_same_setters_with_workable_values_build_and_keep_them() {
    let store = local_store()
        .concurrency(1)
        .lease(Duration::from_millis(30))
        .timeout(Duration::from_secs(60))
        .expected_workers(1)
        .prefix("team-a");
    assert_eq!(store.configured_concurrency(), Some(1));
    assert_eq!(store.configured_lease(), Duration::from_millis(30));
    assert_eq!(store.configured_timeout(), Duration::from_secs(60));
    assert_eq!(
        store.configured_on_down(),
        OnStoreDown::Fallback { share: 1.0 }
    );
    assert_eq!(store.configured_prefix(), "team-a");
    assert!(build(store).is_ok());

    let tiny_share = local_store()
        .on_down(OnStoreDown::Fallback { share: 1e-9 })
        .prefix("");
    assert!(build(tiny_share).is_ok());
    assert!(build(local_store().on_down(OnStoreDown::FailFast)).is_ok());
}

#[test]
fn defaults_are_workable() {
    let store = local_store();
    assert_eq!(store.configured_concurrency(), None);
    assert_eq!(store.configured_lease(), DEFAULT_LEASE);
    assert_eq!(store.configured_timeout(), DEFAULT_TIMEOUT);
    assert_eq!(
        store.configured_on_down(),
        OnStoreDown::Fallback { share: 1.0 }
    );
    assert!(build(store).is_ok());
}

#[test]
fn a_refused_setting_keeps_the_previous_value_and_the_first_error_is_told() {
    let store = local_store()
        .concurrency(4)
        .concurrency(0)
        .timeout(Duration::ZERO)
        .concurrency(8);
    // The refused value never replaced the workable one; a later one does.
    assert_eq!(store.configured_concurrency(), Some(8));
    assert_eq!(store.configured_timeout(), DEFAULT_TIMEOUT);
    match build(store) {
        Err(PolicyError::StoreSetting { field, .. }) => assert_eq!(field, "concurrency"),
        other => panic!("expected the first refused setting, got {other:?}"),
    }
}

#[test]
fn messages_say_what_to_do() {
    let message = |store| build(store).expect_err("refused").to_string();
    assert_eq!(
        message(local_store().concurrency(0)),
        "store concurrency: must be at least 1 (got 0); leave it unset for no fleet-wide cap"
    );
    assert_eq!(
        message(local_store().on_down(OnStoreDown::Fallback { share: f64::NAN })),
        "store on_down: a fallback share must be a number above 0 and at most 1 (got a fallback \
         share of NaN); use 1/N for a fleet of N workers (expected_workers(N)), or \
         OnStoreDown::FailFast"
    );
    assert!(message(local_store().prefix("a}b")).contains("hash tag"));
}

#[test]
fn urls_that_cannot_work_are_refused_at_once() {
    for url in ["http://127.0.0.1/", "", "redis://"] {
        match RedisStore::new(url) {
            Err(PolicyError::StoreUrl { .. }) => {}
            other => panic!("{url:?}: expected StoreUrl, got {other:?}"),
        }
    }
}

/// Without the `tls` feature a `rediss://` URL says which feature it needs; with it, it is
/// accepted (nothing connects yet).
#[test]
fn a_tls_url_needs_the_tls_feature() {
    let store = RedisStore::new("rediss://127.0.0.1:6380/");
    if cfg!(feature = "tls") {
        assert!(store.is_ok(), "{store:?}");
    } else {
        let error = store.expect_err("refused without the feature").to_string();
        assert!(error.contains("feature `tls`"), "{error}");
    }
}

/// A cluster's node URLs are checked as a server's URL is; nothing connects yet.
#[cfg(feature = "cluster")]
#[test]
fn cluster_node_urls_that_cannot_work_are_refused_at_once() {
    assert!(RedisStore::cluster(["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]).is_ok());
    let nodes: [&str; 0] = [];
    for bad in [vec!["http://127.0.0.1:7000"], nodes.to_vec()] {
        match RedisStore::cluster(&bad) {
            Err(PolicyError::StoreUrl { .. }) => {}
            other => panic!("{bad:?}: expected StoreUrl, got {other:?}"),
        }
    }
}
