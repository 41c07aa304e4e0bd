//! A `redis-server` of a test's own on a free loopback port, killed when dropped, and stores
//! on it: what `redis_store.rs` and `redis_windows.rs` share (each uses part of it).
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest_throttle::store::RedisStore;

fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true" || value == "1")
}

/// A `redis-server` on loopback, killed when dropped.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    /// Starts one on a free port; `None` (the reason printed) outside CI without the binary.
    pub fn start() -> Option<RedisServer> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        RedisServer::start_on(port)
    }

    pub fn start_on(port: u16) -> Option<RedisServer> {
        let binary = std::env::var("RT_REDIS").unwrap_or_else(|_| "redis-server".to_owned());
        let spawned = Command::new(&binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) if on_ci() => {
                panic!("redis-server unavailable under CI=true: {error}; .ci/run installs it")
            }
            Err(error) => {
                eprintln!("skipped: cannot run {binary} ({error}); apt-get install redis-server");
                return None;
            }
        };
        let server = RedisServer { child, port };
        let client = redis::Client::open(server.url()).expect("a valid URL");
        for _ in 0..200 {
            let pong = client
                .get_connection_with_timeout(Duration::from_millis(100))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if pong.is_ok() {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server on port {port} did not answer PING within 5 s");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A plain connection, to inspect keys or pause the server.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(1)))
            .expect("a connection to the test's redis-server")
    }

    pub fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn store(server: &RedisServer, prefix: &str) -> RedisStore {
    store_of(server.port, prefix)
}

/// A store on the loopback `port` (its server may be down).
pub fn store_of(port: u16, prefix: &str) -> RedisStore {
    RedisStore::new(&format!("redis://127.0.0.1:{port}/"))
        .expect("a valid URL")
        .prefix(prefix)
}
