//! The demo's fleet phase (feature `redis`, and a `redis-server` to start): several workers,
//! each with a `Throttle` of its own configured with the API's whole rate, send to one API,
//! first each with its own budget, then sharing one through Redis; 429s and goodput side by
//! side. The workers are separate `Throttle`s in this process (each keeps its own budget, as a
//! separate process would; `examples/fleet.rs` runs them as processes).

/// The API's rate and burst, and what each worker is told (one unit of burst less: the
/// workers' timers fire a little apart).
#[cfg(feature = "redis")]
const FLEET_RATE: u64 = 50;
#[cfg(feature = "redis")]
const FLEET_BURST: u64 = 10;
#[cfg(feature = "redis")]
const FLEET_WORKERS: usize = 4;
#[cfg(feature = "redis")]
const FLEET_REQUESTS_PER_WORKER: usize = 50;
#[cfg(feature = "redis")]
const FLEET_TASKS_PER_WORKER: usize = 8;

type PhaseResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Without the `redis` feature: says how to see the phase.
#[cfg(not(feature = "redis"))]
pub async fn fleet_phase() -> PhaseResult {
    println!(
        "\nFleet phase skipped: built without the `redis` feature \
         (cargo run --release --example demo --features redis, with redis-server installed)."
    );
    Ok(())
}

/// Runs the phase, or says why it is skipped (no `redis-server` to start).
#[cfg(feature = "redis")]
pub async fn fleet_phase() -> PhaseResult {
    let server = match redis_server::RedisServer::start() {
        Ok(server) => server,
        Err(reason) => {
            println!("\nFleet phase skipped: {reason}");
            return Ok(());
        }
    };
    println!(
        "\nFleet: {FLEET_WORKERS} workers, each its own Throttle told the API's {FLEET_RATE}/s, \
         {FLEET_REQUESTS_PER_WORKER} GETs each from {FLEET_TASKS_PER_WORKER} tasks, no retries, \
         against one API allowing {FLEET_RATE}/s (burst {FLEET_BURST}):\n"
    );
    println!(
        "{:<36} {:>9} {:>6} {:>8} {:>7} {:>9}",
        "workers", "ok", "429s", "elapsed", "ok/s", "of limit"
    );
    fleet_run("each its own budget", None).await?;
    fleet_run("one budget shared through Redis", Some(&server.url())).await?;
    Ok(())
}

/// One run: every worker's batch at once; the server's counters are the truth.
#[cfg(feature = "redis")]
async fn fleet_run(name: &str, redis: Option<&str>) -> PhaseResult {
    use reqwest_middleware::ClientBuilder;
    use reqwest_throttle::retry::RetryPolicy;
    use reqwest_throttle::sim::SimulatedApi;
    use reqwest_throttle::store::RedisStore;
    use reqwest_throttle::{Policy, Rate, Throttle};

    let api = SimulatedApi::builder()
        .token_bucket(FLEET_RATE as f64, FLEET_BURST)
        .build();
    let server = api.serve().await?;
    let url = server.url("/v1/things");
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..FLEET_WORKERS {
        let policy = Policy::new()
            .rate(Rate::per_second(FLEET_RATE).burst(FLEET_BURST - 1))
            .retry(RetryPolicy::disabled())
            .no_breaker();
        let mut builder = Throttle::builder().default_policy(policy);
        if let Some(redis) = redis {
            builder = builder.store(
                RedisStore::new(redis)?
                    .prefix("demo-fleet")
                    .expected_workers(FLEET_WORKERS as u32),
            );
        }
        let client = ClientBuilder::new(reqwest::Client::new())
            .with(builder.build()?)
            .build();
        for task in 0..FLEET_TASKS_PER_WORKER {
            let (client, url) = (client.clone(), url.clone());
            tasks.push(tokio::spawn(async move {
                for _ in (task..FLEET_REQUESTS_PER_WORKER).step_by(FLEET_TASKS_PER_WORKER) {
                    // The server counts what matters; an error here is one more not-ok.
                    let _ = client.get(&url).send().await;
                }
            }));
        }
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed();
    let stats = api.stats();
    let span = stats.elapsed().as_secs_f64().max(f64::MIN_POSITIVE);
    let ok_per_second = stats.ok as f64 / span;
    println!(
        "{name:<36} {:>9} {:>6} {:>7.1}s {:>7.1} {:>8.0}%",
        format!("{}/{}", stats.ok, FLEET_WORKERS * FLEET_REQUESTS_PER_WORKER),
        stats.limited,
        elapsed.as_secs_f64(),
        ok_per_second,
        100.0 * ok_per_second / FLEET_RATE as f64,
    );
    Ok(())
}

#[cfg(feature = "redis")]
mod redis_server {
    use std::net::TcpListener;
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    /// A `redis-server` on a free loopback port (`RT_REDIS` names the binary), killed when
    /// dropped.
    pub struct RedisServer {
        child: Child,
        port: u16,
    }

    impl RedisServer {
        pub fn start() -> Result<RedisServer, String> {
            let binary = std::env::var("RT_REDIS").unwrap_or_else(|_| "redis-server".to_owned());
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .map_err(|error| format!("no free loopback port ({error})"))?
                .port();
            let child = Command::new(&binary)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|error| {
                    format!("cannot start {binary} ({error}); install redis-server or set RT_REDIS")
                })?;
            let server = RedisServer { child, port };
            let client = redis::Client::open(server.url()).map_err(|error| error.to_string())?;
            for _ in 0..100 {
                let pong = client
                    .get_connection_with_timeout(Duration::from_millis(100))
                    .and_then(|mut connection| redis::cmd("PING").query::<String>(&mut connection));
                if pong.is_ok() {
                    return Ok(server);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(format!("{binary} on port {port} did not answer within 2 s"))
        }

        pub fn url(&self) -> String {
            format!("redis://127.0.0.1:{}/", self.port)
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
