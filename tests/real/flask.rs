//! Flask-Limiter as a real limiter: [`LIMIT_PER_SECOND`] per client address on `/fixed`
//! (fixed window) and `/moving` (moving window), in-memory storage, `X-RateLimit-*` and
//! `Retry-After` headers on, served by werkzeug's threaded server.
//!
//! A WSGI wrapper outside Flask counts every request and every 429 per path; `GET /stats?path=`
//! returns those counts (the endpoint itself is neither limited nor counted).

use std::process::Command;
use std::sync::OnceLock;

use super::measure::{RealServer, ServerCounts};
use super::process::{start_on_free_port, ServerProcess};

/// The documented limit of both endpoints.
pub const LIMIT_PER_SECOND: u32 = 10;

/// Every limited path this server has.
pub const ENDPOINTS: [&str; 2] = ["/fixed", "/moving"];

/// The app, written next to the server's logs. One `Limiter` per strategy: Flask-Limiter picks
/// the strategy per limiter, not per route.
const APP: &str = r#"
import json
import logging
import sys
import threading

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from werkzeug.serving import run_simple

app = Flask(__name__)
app.config["RATELIMIT_HEADERS_ENABLED"] = True
fixed = Limiter(get_remote_address, app=app, storage_uri="memory://",
                strategy="fixed-window", key_prefix="fixed")
moving = Limiter(get_remote_address, app=app, storage_uri="memory://",
                 strategy="moving-window", key_prefix="moving")


@app.get("/fixed")
@fixed.limit("@LIMIT@/second")
def fixed_window():
    return "ok\n"


@app.get("/moving")
@moving.limit("@LIMIT@/second")
def moving_window():
    return "ok\n"


class Counting:
    """Counts every answer per path and status, outside Flask and its limiter."""

    def __init__(self, inner):
        self.inner = inner
        self.lock = threading.Lock()
        self.counts = {}

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/stats":
            return self.stats(environ, start_response)

        def counting_start_response(status, headers, exc_info=None):
            code = int(status.split(" ", 1)[0])
            with self.lock:
                attempts, limited = self.counts.get(path, (0, 0))
                self.counts[path] = (attempts + 1, limited + (code == 429))
            return start_response(status, headers, exc_info)

        return self.inner(environ, counting_start_response)

    def stats(self, environ, start_response):
        wanted = environ.get("QUERY_STRING", "").removeprefix("path=")
        with self.lock:
            attempts, limited = self.counts.get(wanted, (0, 0))
        body = json.dumps({"attempts": attempts, "rate_limited": limited}).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]


if __name__ == "__main__":
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    run_simple("127.0.0.1", int(sys.argv[1]), Counting(app), threaded=True)
"#;

/// A running Flask-Limiter app; dropping it stops it. A new one has fresh windows.
pub struct FlaskLimiter {
    process: ServerProcess,
    stats_client: reqwest::Client,
}

impl FlaskLimiter {
    /// Starts the app on a free port. `None` (with the reason printed) only outside CI when no
    /// Python with flask and flask-limiter is found; under `CI=true` that panics, and so does a
    /// failed start anywhere.
    pub async fn start() -> Option<FlaskLimiter> {
        let python = match python_with_flask() {
            Ok(python) => python.clone(),
            Err(reason) => return super::unavailable(reason),
        };
        let app = APP.replace("@LIMIT@", &LIMIT_PER_SECOND.to_string());
        let started = start_on_free_port("flask", |dir, port| {
            let path = dir.join("app.py");
            std::fs::write(&path, &app)
                .map_err(|e| format!("flask: cannot write {}: {e}", path.display()))?;
            let mut command = Command::new(&python);
            command.arg("-u").arg(&path).arg(port.to_string());
            Ok(command)
        })
        .await;
        match started {
            Ok(process) => Some(FlaskLimiter {
                process,
                stats_client: reqwest::Client::new(),
            }),
            Err(error) => panic!("{error}"),
        }
    }

    pub fn port(&self) -> u16 {
        self.process.port()
    }
}

impl RealServer for FlaskLimiter {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port())
    }

    async fn counts(&self, path: &str) -> Result<ServerCounts, String> {
        let url = format!("{}?path={path}", self.url("/stats"));
        let answer = async {
            let text = self.stats_client.get(&url).send().await?.text().await?;
            Ok::<_, reqwest::Error>(text)
        };
        let text = answer.await.map_err(|e| format!("flask: GET {url}: {e}"))?;
        let stats: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("flask: /stats said {text:?}: {e}"))?;
        let field = |name: &str| {
            stats[name]
                .as_u64()
                .ok_or_else(|| format!("flask: /stats has no {name}: {text}"))
        };
        Ok(ServerCounts {
            attempts: field("attempts")?,
            rate_limited: field("rate_limited")?,
        })
    }
}

/// The first Python that imports flask and flask_limiter, looked for once per process.
fn python_with_flask() -> Result<&'static std::path::PathBuf, &'static str> {
    static FOUND: OnceLock<Result<std::path::PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let venv = super::target_dir().join("limiters-venv/bin/python");
            let python = super::find_tool("RT_PYTHON", &[venv], "python3")?;
            let imports = Command::new(&python)
                .args(["-c", "import flask, flask_limiter"])
                .output();
            match imports {
                Ok(output) if output.status.success() => Ok(python),
                _ => Err(format!(
                    "{} cannot import flask and flask_limiter",
                    python.display()
                )),
            }
        })
        .as_ref()
        .map_err(String::as_str)
}
