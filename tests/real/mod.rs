//! Real third-party rate limiters on loopback, for measuring the client against servers that
//! limit by their own rules, not by our model of them.
//!
//! - [`nginx::Nginx`]: nginx `limit_req` at 50 r/s, one zone per endpoint (`/burst0`,
//!   `/burst10nodelay`, `/burst10`, `/retryafter`), serving a small static file (nginx never
//!   limits `return 200`), its 429s counted from its own access log.
//! - [`flask::FlaskLimiter`]: Flask-Limiter at 10/second, `/fixed` (fixed window) and `/moving`
//!   (moving window), `X-RateLimit-*` headers on, its 429s counted by a WSGI wrapper and read
//!   from `/stats`.
//! - [`measure::measure`]: N requests from T tasks through a client, bounded in count and wall
//!   time, counted below the client under test and by the server, into a [`measure::Report`].
//! - [`contenders::Contender`]: the clients compared (this crate, reqwest-retry, governor).
//!
//! Every server is a child process on a free `127.0.0.1` port, started from a config written
//! into its own temporary directory (logs, pid and temp files included) and killed when its
//! handle drops; a fresh handle is a fresh limiter state.
//!
//! Where the tools come from: `RT_NGINX` / `RT_PYTHON` if set, else the places `.ci/run`
//! installs them (`/usr/sbin/nginx`, `$CARGO_TARGET_DIR/limiters-venv` or `target/limiters-venv`),
//! else `nginx` / `python3` on `PATH`. Under `CI=true` a missing tool fails the test loudly;
//! elsewhere the test prints why and skips.

pub mod contenders;
pub mod flask;
pub mod measure;
pub mod nginx;
mod process;

use std::path::{Path, PathBuf};

/// Whether this run is CI's (`CI=true`), where nothing may be skipped.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true" || value == "1")
}

/// A required tool is missing: a loud failure under CI, a printed skip elsewhere.
fn unavailable<T>(reason: &str) -> Option<T> {
    let fix = "run `bash .ci/run` once (it installs nginx-light and a venv with flask and \
               flask-limiter), or point RT_NGINX / RT_PYTHON at them";
    if in_ci() {
        panic!("real limiter unavailable under CI=true: {reason}; {fix}");
    }
    eprintln!("skipping a real-limiter test: {reason}; {fix}");
    None
}

/// The tool named by the environment variable `env` (which must then exist), else the first
/// of `candidates` that exists, else `on_path` found on `PATH`.
fn find_tool(env: &str, candidates: &[PathBuf], on_path: &str) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{env}={} is not a file", path.display()))
        };
    }
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .or_else(|| search_path(on_path))
        .ok_or_else(|| {
            let places: Vec<_> = candidates.iter().map(|p| p.display().to_string()).collect();
            format!("no {on_path}: {env} unset, none of {places:?}, none on PATH")
        })
}

fn search_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The cargo target directory, where `.ci/run` puts the Python venv.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
    }
}
