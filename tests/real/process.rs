//! A server child process on a free loopback port, in its own temporary directory, killed and
//! cleaned up on drop.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a server may take to answer on its port before the start counts as failed.
const STARTUP_LIMIT: Duration = Duration::from_secs(15);

/// A directory removed with everything in it on drop.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// A new empty directory under the system's temp dir, unique to this process and call.
    pub fn new(label: &str) -> std::io::Result<ScratchDir> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "reqwest-throttle-{label}-{}-{unique}",
            std::process::id()
        ));
        // A leftover from a killed run of the same pid would only hold stale logs.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(ScratchDir(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port that was free on 127.0.0.1 a moment ago. Another process may still take it before the
/// server binds; [`ServerProcess::start`]'s callers retry with a new port when the server exits.
pub fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// A running server. Dropping it kills the process, then removes its directory.
pub struct ServerProcess {
    child: Child,
    port: u16,
    // Declared after `child`: the directory goes only once the process is gone.
    dir: ScratchDir,
}

impl ServerProcess {
    /// Starts `command` (its output goes to `dir/server.log`) and waits until `port` accepts a
    /// connection. Fails with the server's own log when it exits or stays deaf.
    pub async fn start(
        mut command: Command,
        dir: ScratchDir,
        port: u16,
    ) -> Result<ServerProcess, String> {
        let log_path = dir.path().join("server.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot share {}: {e}", log_path.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot start {command:?}: {e}"))?;
        let mut server = ServerProcess { child, port, dir };
        server.wait_until_listening().await?;
        Ok(server)
    }

    async fn wait_until_listening(&mut self) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + STARTUP_LIMIT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "the server exited ({status}) before listening on 127.0.0.1:{}; its log:\n{}",
                    self.port,
                    self.read_file("server.log")
                ));
            }
            if tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "nothing answered on 127.0.0.1:{} within {STARTUP_LIMIT:?}; the server's log:\n{}",
                    self.port,
                    self.read_file("server.log")
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A file of the server's directory as text (empty when it cannot be read), for diagnostics.
    pub fn read_file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a server up to three times, each on a new free port (another process can take a
/// port between our probe and the server's bind).
pub async fn start_on_free_port(
    label: &str,
    prepare: impl Fn(&Path, u16) -> Result<Command, String>,
) -> Result<ServerProcess, String> {
    let mut last_error = String::new();
    for _ in 0..3 {
        let dir = ScratchDir::new(label).map_err(|e| format!("{label}: temp dir: {e}"))?;
        let port = free_port().map_err(|e| format!("{label}: no free port: {e}"))?;
        let command = prepare(dir.path(), port)?;
        match ServerProcess::start(command, dir, port).await {
            Ok(server) => return Ok(server),
            Err(error) => last_error = error,
        }
    }
    Err(format!("{label} did not start (3 tries): {last_error}"))
}
