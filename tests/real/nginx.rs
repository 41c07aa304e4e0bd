//! nginx `limit_req` as a real limiter: one `limit_req_zone` per endpoint at
//! [`RATE_PER_SECOND`], keyed by client address, refusing with 429.
//!
//! | path | nginx says | what a client sees |
//! |---|---|---|
//! | `/burst0` | `limit_req` without burst | one request per 20 ms, every earlier one refused |
//! | `/burst10nodelay` | `burst=10 nodelay` | 10 extra at once, then one per 20 ms |
//! | `/burst10` | `burst=10` | up to 10 extra queued by the server (answered late), the rest refused |
//! | `/retryafter` | as `/burst0`, plus `Retry-After: 1` on its 429s | a server signal to honour |
//! | `/fleet` | as `/burst0`, one zone for every client (keyed by `$host`, as an API key would be) | a strict budget a fleet of throttles shares |
//!
//! Each path serves a small static file: nginx never rate-limits `return 200`, which answers
//! before the preaccess phase where `limit_req` runs.

use std::path::Path;
use std::process::Command;

use super::measure::{RealServer, ServerCounts};
use super::process::{start_on_free_port, ServerProcess};

/// The documented limit of every endpoint.
pub const RATE_PER_SECOND: u32 = 50;

/// Every limited path this server has.
pub const ENDPOINTS: [&str; 4] = ["/burst0", "/burst10nodelay", "/burst10", "/retryafter"];

/// The strict (no-burst) path shared by every client whatever its address: the one a fleet of
/// workers is measured on (not among [`ENDPOINTS`], the paths of the one-client comparison).
pub const FLEET: &str = "/fleet";

/// `(path, limit_req arguments after the zone)`; the zone is named after the path.
const LOCATIONS: [(&str, &str); 5] = [
    ("burst0", ""),
    ("burst10nodelay", " burst=10 nodelay"),
    ("burst10", " burst=10"),
    ("retryafter", ""),
    ("fleet", ""),
];

/// A running nginx; dropping it stops it. A new one has fresh zones.
pub struct Nginx {
    process: ServerProcess,
}

impl Nginx {
    /// Starts nginx on a free port. `None` (with the reason printed) only outside CI when no
    /// nginx binary is found; under `CI=true` that panics, and so does a failed start anywhere.
    pub async fn start() -> Option<Nginx> {
        let binary = super::find_tool(
            "RT_NGINX",
            &["/usr/sbin/nginx".into(), "/usr/local/sbin/nginx".into()],
            "nginx",
        );
        let binary = match binary {
            Ok(binary) => binary,
            Err(reason) => return super::unavailable(&reason),
        };
        let started = start_on_free_port("nginx", |dir, port| {
            write_site(dir, port)?;
            let mut command = Command::new(&binary);
            // `-e` too: nginx opens its compiled-in error log before it reads the config.
            command
                .arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .arg("-e")
                .arg(dir.join("error.log"));
            Ok(command)
        })
        .await;
        match started {
            Ok(process) => Some(Nginx { process }),
            Err(error) => panic!("{error}"),
        }
    }

    pub fn port(&self) -> u16 {
        self.process.port()
    }

    /// `(status, path)` of every request nginx has logged so far.
    fn access_log(&self) -> Vec<(u16, String)> {
        self.timed_log()
            .into_iter()
            .map(|(status, uri, _)| (status, uri))
            .collect()
    }

    /// `(status, path, seconds since the Unix epoch)` of every request nginx has logged so far,
    /// in the order it logged them.
    pub fn timed_log(&self) -> Vec<(u16, String, f64)> {
        self.process
            .read_file("access.log")
            .lines()
            .filter_map(|line| {
                let mut fields = line.split(' ');
                let status = fields.next()?.parse().ok()?;
                let uri = fields.next()?.to_owned();
                let at = fields.next().and_then(|at| at.parse().ok()).unwrap_or(0.0);
                Some((status, uri, at))
            })
            .collect()
    }
}

impl RealServer for Nginx {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port())
    }

    async fn counts(&self, path: &str) -> Result<ServerCounts, String> {
        let mut counts = ServerCounts::default();
        for (status, uri) in self.access_log() {
            if uri == path {
                counts.attempts += 1;
                counts.rate_limited += u64::from(status == 429);
            }
        }
        Ok(counts)
    }
}

/// Writes `nginx.conf` and the static files into `dir`.
fn write_site(dir: &Path, port: u16) -> Result<(), String> {
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text)
            .map_err(|e| format!("nginx: cannot write {}: {e}", path.display()))
    };
    let www = dir.join("www");
    std::fs::create_dir_all(&www).map_err(|e| format!("nginx: {}: {e}", www.display()))?;
    for (name, _) in LOCATIONS {
        write(&www.join(name), "ok\n")?;
    }
    write(&dir.join("nginx.conf"), &config(dir, port))
}

/// The whole configuration: foreground, one process, every path inside `dir`.
fn config(dir: &Path, port: u16) -> String {
    let dir = dir.display();
    let mut zones = String::new();
    let mut locations = String::new();
    for (name, options) in LOCATIONS {
        // The fleet's zone counts every client together, as a server counts an API key.
        let key = if name == "fleet" {
            "$host"
        } else {
            "$binary_remote_addr"
        };
        zones.push_str(&format!(
            "    limit_req_zone {key} zone={name}:1m rate={RATE_PER_SECOND}r/s;\n"
        ));
        let retry_after = if name == "retryafter" {
            "\n            add_header Retry-After $retry_after_on_429 always;"
        } else {
            ""
        };
        locations.push_str(&format!(
            "        location = /{name} {{\n            limit_req zone={name}{options};{retry_after}\n        }}\n"
        ));
    }
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    log_format counts '$status $uri $msec';
    access_log {dir}/access.log counts;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    default_type text/plain;
    keepalive_requests 100000;
    limit_req_status 429;
{zones}
    # An empty value adds no header: Retry-After goes on the 429s only.
    map $status $retry_after_on_429 {{
        429 1;
        default "";
    }}
    server {{
        listen 127.0.0.1:{port};
        root {dir}/www;
{locations}    }}
}}
"#
    )
}
