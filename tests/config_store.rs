//! A configuration file's `[store]` section: the throttle it builds keeps its lanes in the Redis
//! server named, under the prefix and with the lease given. Against a `redis-server` the test
//! starts itself on a free loopback port (its absence fails the test under CI=true).

use std::sync::Arc;

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{ClientBuilder, Middleware, Next};
use reqwest_throttle::{ThrottleConfig, ThrottleStats};
use tokio::sync::{Notify, Semaphore};

mod redis_server;
use redis_server::RedisServer;

/// Answers 200 once the test lets it (one permit per request), telling the test it has one.
#[derive(Clone)]
struct Held {
    arrived: Arc<Notify>,
    release: Arc<Semaphore>,
}

impl Held {
    fn new() -> Held {
        Held {
            arrived: Arc::new(Notify::new()),
            release: Arc::new(Semaphore::new(0)),
        }
    }
}

#[async_trait::async_trait]
impl Middleware for Held {
    async fn handle(
        &self,
        _: Request,
        _: &mut Extensions,
        _: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        self.arrived.notify_one();
        let permit = self.release.acquire().await.expect("never closed");
        permit.forget();
        Ok(Response::from(http::Response::new(String::new())))
    }
}

#[tokio::test]
async fn a_store_section_keeps_the_lanes_in_that_redis_under_its_prefix_and_lease() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config: ThrottleConfig = toml::from_str(&format!(
        r#"
        [default]
        rate = "100/s"

        [store]
        url = "{url}"
        prefix = "from-config"
        lease = "1h 30m"
        timeout = "2s"
        concurrency = 4
        expected_workers = 2
        "#,
        url = server.url()
    ))
    .unwrap();
    let throttle = config.into_builder().build().unwrap();
    let held = Held::new();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(throttle.clone())
        .with(held.clone())
        .build();
    let request = tokio::spawn(async move { client.get("http://api.test/").send().await });
    held.arrived.notified().await;

    // While the request is in flight it holds a fleet-wide slot: a lease under the prefix.
    let mut redis = server.connection();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut redis).unwrap();
    assert!(!keys.is_empty());
    assert!(
        // Written in a hash tag (`{prefix:lane}`), for Redis Cluster.
        keys.iter()
            .all(|key| key.trim_start_matches('{').starts_with("from-config:")),
        "{keys:?}"
    );
    let leases = keys
        .iter()
        .find(|key| key.ends_with(":leases"))
        .unwrap_or_else(|| panic!("a lease key among {keys:?}"));
    let ttl_ms: i64 = redis::cmd("PTTL").arg(leases).query(&mut redis).unwrap();
    // The lease given, 1h 30m (5 400 s), not the default 5 s.
    assert!(
        (5_000_000..=5_500_000).contains(&ttl_ms),
        "PTTL {ttl_ms} ms"
    );

    held.release.add_permits(1);
    let response = request.await.unwrap().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let ThrottleStats { store, .. } = throttle.stats();
    let store = store.expect("the throttle has a store");
    assert!(store.up && store.round_trips > 0, "{store:?}");
}

#[test]
fn a_bad_store_section_names_its_field() {
    let cases = [
        ("url = \"http://127.0.0.1/\"", "store:"),
        (
            "url = \"redis://127.0.0.1/\"\ntimeout = \"0s\"",
            "store.timeout:",
        ),
        (
            "url = \"redis://127.0.0.1/\"\nconcurrency = 0",
            "store.concurrency:",
        ),
        (
            "url = \"redis://127.0.0.1/\"\nexpected_workers = 0",
            "store.expected_workers:",
        ),
        (
            "url = \"redis://127.0.0.1/\"\non_down = \"fail_fast\"\nexpected_workers = 4",
            "store.expected_workers:",
        ),
    ];
    for (section, field) in cases {
        let config: ThrottleConfig = toml::from_str(&format!("[store]\n{section}")).unwrap();
        let error = config.into_builder().build().unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with(field), "{section}: {message}");
    }
    // The URL may hold a password: never printed.
    let config: ThrottleConfig =
        toml::from_str("[store]\nurl = \"redis://:s3cret@127.0.0.1/\"").unwrap();
    assert!(!format!("{config:?}").contains("s3cret"));
    // Unknown fields and bad values fail at load time.
    for section in [
        "url = \"redis://x/\"\nleese = \"5s\"",
        "on_down = \"maybe\"",
    ] {
        assert!(toml::from_str::<ThrottleConfig>(&format!("[store]\n{section}")).is_err());
    }
    // A good section builds (nothing connects until the first request).
    let config: ThrottleConfig = toml::from_str(
        "[store]\nurl = \"redis://127.0.0.1:1/\"\non_down = \"fail_fast\"\nlease = \"250ms\"",
    )
    .unwrap();
    assert!(config.into_builder().build().is_ok());
}
