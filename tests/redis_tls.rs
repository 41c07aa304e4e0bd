//! The shared budget over TLS (feature `tls`): a `redis-server` of the test's own that listens
//! only on a TLS port, with a self-signed certificate made by `rcgen` for 127.0.0.1.
//!
//! In real time, like `redis_store.rs`: counts and outcomes are asserted, waits only bound a
//! hang. Under `CI=true` a missing `redis-server` fails the tests; a `redis-server` built
//! without TLS fails them everywhere (it never gets ready).

use std::path::PathBuf;
use std::time::Duration;

use redis::TlsCertificates;
use reqwest_throttle::sim::SimulatedApi;
use reqwest_throttle::store::{OnStoreDown, RedisStore};
use reqwest_throttle::{Error, Rate};

mod redis_server;
use redis_server::{free_port, RedisServer};

mod store_clients;
use store_clients::{client, send_all, NO_HANG, URL};

/// A `redis-server` that speaks only TLS, with the certificate a client must trust.
struct TlsRedis {
    server: RedisServer,
    root_cert: Vec<u8>,
    dir: PathBuf,
}

impl TlsRedis {
    fn start() -> Option<TlsRedis> {
        let certified = rcgen::generate_simple_self_signed(["127.0.0.1".to_owned()])
            .expect("a self-signed certificate");
        let dir = std::env::temp_dir().join(format!(
            "reqwest-throttle-tls-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("a folder for the certificate");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let root_cert = certified.cert.pem().into_bytes();
        std::fs::write(&cert, &root_cert).expect("the certificate written");
        std::fs::write(&key, certified.signing_key.serialize_pem()).expect("the key written");
        let path = |file: &PathBuf| file.to_string_lossy().into_owned();
        let configure = |ports: &[u16]| {
            let port = ports[0];
            let args = [
                "--port".to_owned(),
                "0".to_owned(),
                "--tls-port".to_owned(),
                port.to_string(),
                "--bind".to_owned(),
                "127.0.0.1".to_owned(),
                "--tls-cert-file".to_owned(),
                path(&cert),
                "--tls-key-file".to_owned(),
                path(&key),
                "--tls-ca-cert-file".to_owned(),
                path(&cert),
                "--tls-auth-clients".to_owned(),
                "no".to_owned(),
            ];
            (port, args.to_vec())
        };
        let ready = |port: u16| {
            trusting(port, &root_cert)
                .get_connection_with_timeout(Duration::from_millis(200))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
        };
        let server = RedisServer::spawn_on_fresh_ports(1, configure, ready)?;
        Some(TlsRedis {
            server,
            root_cert,
            dir,
        })
    }

    fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/", self.server.port)
    }

    /// A client that trusts the server's certificate.
    fn client(&self) -> redis::Client {
        trusting(self.server.port, &self.root_cert)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn trusting(port: u16, root_cert: &[u8]) -> redis::Client {
    redis::Client::build_with_tls(
        format!("rediss://127.0.0.1:{port}/"),
        TlsCertificates {
            client_tls: None,
            root_cert: Some(root_cert.to_vec()),
        },
    )
    .expect("a TLS client")
}

#[tokio::test]
async fn two_throttles_share_a_budget_over_tls_with_a_certificate_of_their_own() {
    let Some(redis) = TlsRedis::start() else {
        return;
    };
    // The server's burst is well above the throttles': this test is about TLS, not about how
    // exactly the workers' timers fire on a busy machine.
    let rate = Rate::per_second(40).burst(4);
    let api = SimulatedApi::builder().token_bucket(40.0, 10).build();
    // A TLS handshake of this unoptimised test build takes longer than the default 100 ms.
    let store = || {
        RedisStore::from_client(redis.client())
            .prefix("tls")
            .timeout(Duration::from_secs(1))
    };
    let (first, one) = client(rate, Some(store()), &api);
    let (second, two) = client(rate, Some(store()), &api);
    let outcomes = send_all(&[&one, &two], 20, NO_HANG).await;
    assert!(outcomes.iter().all(|o| *o == Ok(200)), "{outcomes:?}");
    let stats = api.stats();
    assert_eq!((stats.received, stats.limited), (40, 0), "{stats:?}");
    for throttle in [&first, &second] {
        let store = throttle.stats().store.expect("store stats");
        assert!(store.up && store.round_trips >= 20, "{store:?}");
        assert_eq!(store.fallbacks, 0, "{store:?}");
    }
    // Booked in one schedule on the TLS server.
    let mut admin = redis
        .client()
        .get_connection_with_timeout(Duration::from_secs(1))
        .expect("a TLS connection");
    let bookings: u64 = redis::cmd("HGET")
        .arg("{tls:http://api.test:80}")
        .arg("s0")
        .query(&mut admin)
        .expect("the lane's state");
    assert_eq!(bookings, 40);
}

#[tokio::test]
async fn a_server_certificate_nobody_trusts_is_refused_and_nothing_is_sent() {
    let Some(redis) = TlsRedis::start() else {
        return;
    };
    // The URL alone trusts the system's roots, which never signed the test's certificate.
    let store = RedisStore::new(&redis.url())
        .expect("rediss:// is accepted with the feature tls")
        .on_down(OnStoreDown::FailFast);
    let api = SimulatedApi::builder().build();
    let (throttle, client) = client(Rate::per_second(40), Some(store), &api);
    let outcomes = send_all(&[&client], 3, NO_HANG).await;
    assert!(
        outcomes.iter().all(|o| o
            .as_ref()
            .is_err_and(|e| e.contains("store is unavailable"))),
        "{outcomes:?}"
    );
    let error = client.get(URL).send().await.unwrap_err();
    assert!(
        matches!(
            Error::from_middleware(&error),
            Some(Error::StoreUnavailable { .. })
        ),
        "{error}"
    );
    assert_eq!(api.stats().received, 0);
    let store = throttle.stats().store.expect("store stats");
    assert!(!store.up && store.failures >= 1, "{store:?}");
}
