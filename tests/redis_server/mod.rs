//! `redis-server`s of a test's own on free loopback ports, killed when dropped: one server, or
//! a Redis Cluster of several, and stores on them. What `redis_store.rs`, `redis_windows.rs`,
//! `redis_cluster.rs` and `redis_tls.rs` share (each uses part of it).
//!
//! Under `CI=true` a missing `redis-server` or `redis-cli` fails the test; elsewhere the test
//! prints why and skips. `RT_REDIS` and `RT_REDIS_CLI` name the binaries if they are not on
//! `PATH`.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest_throttle::store::RedisStore;

fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true" || value == "1")
}

/// The binary the variable `env` names, else `default` (looked up on `PATH`).
fn binary(env: &str, default: &str) -> String {
    std::env::var(env).unwrap_or_else(|_| default.to_owned())
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` different ports nobody listens on now (each held until all are found).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("a bound port").port())
        .collect()
}

/// Whether a server answers PING on the loopback `port` within 100 ms.
fn answers_on(port: u16) -> bool {
    redis::Client::open(url_of(port))
        .expect("a valid URL")
        .get_connection_with_timeout(Duration::from_millis(100))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        .is_ok()
}

/// A `redis-server` on loopback, killed when dropped.
pub struct RedisServer {
    child: Child,
    pub port: u16,
    /// Where the server writes its log (removed when it is dropped).
    log: PathBuf,
}

impl RedisServer {
    /// Starts one on a free port; `None` (the reason printed) outside CI without the binary.
    pub fn start() -> Option<RedisServer> {
        RedisServer::start_with_fresh_ports(1, |ports| {
            let port = ports[0];
            (port, RedisServer::args(port, &[]))
        })
    }

    /// Starts one on `port` (a restart where an earlier one was killed).
    pub fn start_on(port: u16) -> Option<RedisServer> {
        RedisServer::start_with(port, &[])
    }

    /// Starts one on `port` with `extra` arguments (cluster mode, …), ready once it answers
    /// PING there.
    pub fn start_with(port: u16, extra: &[String]) -> Option<RedisServer> {
        let args = RedisServer::args(port, extra);
        match RedisServer::try_spawn(port, &args, || answers_on(port)) {
            Ok(server) => server,
            Err(exited) => panic!("{exited}"),
        }
    }

    /// Starts one on ports of its own: `configure` gets `n` free ports and returns the one the
    /// server answers on with its arguments. Ports found free may be taken before the server
    /// binds them (every outgoing connection of a test running beside this one takes a port of
    /// the same range), so a server that exits at start is started again on others, 5 times at
    /// most.
    pub fn start_with_fresh_ports(
        n: usize,
        configure: impl Fn(&[u16]) -> (u16, Vec<String>),
    ) -> Option<RedisServer> {
        RedisServer::spawn_on_fresh_ports(n, configure, answers_on)
    }

    /// As [`RedisServer::start_with_fresh_ports`], ready once `ready` holds of the port it
    /// answers on (a TLS port, say).
    pub fn spawn_on_fresh_ports(
        n: usize,
        configure: impl Fn(&[u16]) -> (u16, Vec<String>),
        ready: impl Fn(u16) -> bool,
    ) -> Option<RedisServer> {
        let mut exits = Vec::new();
        for _ in 0..5 {
            let (port, args) = configure(&free_ports(n));
            match RedisServer::try_spawn(port, &args, || ready(port)) {
                Ok(server) => return server,
                Err(exited) => exits.push(exited),
            }
        }
        panic!("no redis-server would start:\n{}", exits.join("\n"));
    }

    fn args(port: u16, extra: &[String]) -> Vec<String> {
        let mut args: Vec<String> = ["--port", &port.to_string(), "--bind", "127.0.0.1"]
            .map(str::to_owned)
            .to_vec();
        args.extend(extra.iter().cloned());
        args
    }

    /// Starts one with exactly `args` (plus no persistence), ready once `ready` holds (5 s at
    /// most, else the test fails); a server that exits at start is an `Err` with its log.
    fn try_spawn(
        port: u16,
        args: &[String],
        ready: impl Fn() -> bool,
    ) -> Result<Option<RedisServer>, String> {
        let binary = binary("RT_REDIS", "redis-server");
        let log = std::env::temp_dir().join(format!(
            "reqwest-throttle-redis-{}-{port}.log",
            std::process::id()
        ));
        let log_file = std::fs::File::create(&log).expect("a log file for redis-server");
        let spawned = Command::new(&binary)
            .args(args)
            .args(["--save", "", "--appendonly", "no"])
            .stdout(log_file)
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) if on_ci() => {
                panic!("redis-server unavailable under CI=true: {error}; .ci/run installs it")
            }
            Err(error) => {
                eprintln!("skipped: cannot run {binary} ({error}); apt-get install redis-server");
                return Ok(None);
            }
        };
        let mut server = RedisServer { child, port, log };
        for _ in 0..200 {
            if ready() {
                return Ok(Some(server));
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                // A setting this build does not support (TLS, say), or a port was taken.
                let said = std::fs::read_to_string(&server.log).unwrap_or_default();
                return Err(format!(
                    "{binary} exited at start ({status}) with {args:?}; its log:\n{said}"
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("{binary} on port {port} was not ready within 5 s");
    }

    pub fn url(&self) -> String {
        url_of(self.port)
    }

    /// A plain connection, to inspect keys or pause the server.
    pub fn connection(&self) -> redis::Connection {
        connection_to(self.port)
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
        let _ = std::fs::remove_file(&self.log);
    }
}

fn url_of(port: u16) -> String {
    format!("redis://127.0.0.1:{port}/")
}

/// A plain connection to the server on the loopback `port`.
pub fn connection_to(port: u16) -> redis::Connection {
    redis::Client::open(url_of(port))
        .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(1)))
        .expect("a connection to the test's redis-server")
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

/// A Redis Cluster on loopback: `redis-server --cluster-enabled yes` per node, joined by
/// `redis-cli --cluster create`, with a short `cluster-node-timeout` (1 s) so that a failover
/// takes seconds; its nodes killed and its folder removed when dropped.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    dir: PathBuf,
}

/// How long a cluster node may be unreachable before the others fail it over, in ms.
pub const NODE_TIMEOUT_MS: u64 = 1_000;

impl RedisCluster {
    /// `primaries` primaries with `replicas` replicas each, every slot covered and every
    /// replica in sync; `None` (the reason printed) outside CI without the binaries.
    pub fn start(primaries: usize, replicas: usize) -> Option<RedisCluster> {
        let dir = std::env::temp_dir().join(format!(
            "reqwest-throttle-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("a folder for the cluster's node files");
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            dir,
        };
        let nodes = primaries * (1 + replicas);
        let dir = cluster.dir.to_string_lossy().into_owned();
        for _ in 0..nodes {
            // The cluster bus gets a port of its own (the default, port + 10 000, may be taken
            // or above 65 535).
            let node = RedisServer::start_with_fresh_ports(2, |ports| {
                let (port, bus) = (ports[0], ports[1]);
                let extra = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus.to_string(),
                    "--cluster-config-file",
                    &format!("nodes-{port}.conf"),
                    "--cluster-node-timeout",
                    &NODE_TIMEOUT_MS.to_string(),
                    // A replica takes over however long ago it last heard from its primary.
                    "--cluster-replica-validity-factor",
                    "0",
                    "--dir",
                    &dir,
                ]
                .map(str::to_owned);
                (port, RedisServer::args(port, &extra))
            })?;
            cluster.nodes.push(node);
        }
        let mut create = Command::new(binary("RT_REDIS_CLI", "redis-cli"));
        create
            .arg("--cluster")
            .arg("create")
            .args(
                cluster
                    .nodes
                    .iter()
                    .map(|n| format!("127.0.0.1:{}", n.port)),
            )
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null());
        match create.output() {
            Ok(output) if output.status.success() => {}
            Ok(output) => panic!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(error) if on_ci() => {
                panic!("redis-cli unavailable under CI=true: {error}; .ci/run installs redis-server, which brings it")
            }
            Err(error) => {
                eprintln!("skipped: cannot run redis-cli ({error}); apt-get install redis-tools");
                return None;
            }
        }
        cluster.wait_until("every slot served and every replica in sync", |cluster| {
            cluster.is_ready(primaries * replicas)
        });
        Some(cluster)
    }

    /// The URLs of every node, as a client is given them.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The port of the living primary that serves `key`, as the node asked first sees it
    /// (`None` while the slot's primary is failed and no replica has taken over yet).
    pub fn primary_of(&self, key: &str) -> Option<u16> {
        let mut redis = self.nodes[0].connection();
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut redis)
            .expect("CLUSTER KEYSLOT answers");
        self.nodes_view()
            .into_iter()
            .find(|node| node.primary && node.slots.iter().any(|r| r.contains(&slot)))
            .map(|node| node.port)
    }

    /// The node on `port`'s own connection.
    pub fn connection(&self, port: u16) -> redis::Connection {
        connection_to(port)
    }

    /// Kills the node on `port` (its process, as a crash would).
    pub fn kill(&mut self, port: u16) {
        let index = self
            .nodes
            .iter()
            .position(|node| node.port == port)
            .expect("a node of this cluster");
        self.nodes.remove(index).kill();
    }

    /// Waits (at most 20 s of real time: the cluster's own timeouts are real) until `done`.
    pub fn wait_until(&self, what: &str, done: impl Fn(&RedisCluster) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(self) {
            assert!(Instant::now() < deadline, "the cluster never got {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn is_ready(&self, replicas: usize) -> bool {
        let ok = self.nodes.iter().all(|node| {
            redis::cmd("CLUSTER")
                .arg("INFO")
                .query::<String>(&mut node.connection())
                .is_ok_and(|info| info.contains("cluster_state:ok"))
        });
        let in_sync = self
            .nodes
            .iter()
            .filter(|node| {
                redis::cmd("INFO")
                    .arg("replication")
                    .query::<String>(&mut node.connection())
                    .is_ok_and(|info| info.contains("master_link_status:up"))
            })
            .count();
        ok && in_sync == replicas
    }

    /// The cluster as the first living node sees it: every node not marked failed.
    fn nodes_view(&self) -> Vec<NodeView> {
        let text: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query(&mut self.nodes[0].connection())
            .expect("CLUSTER NODES answers");
        text.lines().filter_map(NodeView::parse).collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One line of `CLUSTER NODES`: `id ip:port@bus flags primary ping pong epoch link slots…`.
struct NodeView {
    port: u16,
    primary: bool,
    slots: Vec<std::ops::RangeInclusive<u16>>,
}

impl NodeView {
    fn parse(line: &str) -> Option<NodeView> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let port = fields.get(1)?.split('@').next()?.rsplit(':').next()?;
        let flags = fields.get(2)?;
        if flags.contains("fail") {
            return None;
        }
        let slots = fields
            .iter()
            .skip(8)
            .filter_map(|range| match range.split_once('-') {
                Some((start, end)) => Some(start.parse().ok()?..=end.parse().ok()?),
                None => range.parse().ok().map(|slot| slot..=slot),
            })
            .collect();
        Some(NodeView {
            port: port.parse().ok()?,
            primary: flags.contains("master"),
            slots,
        })
    }
}
