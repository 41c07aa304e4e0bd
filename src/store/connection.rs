//! The store's way to Redis: one server through a connection manager, or a Redis Cluster
//! (feature `cluster`) through a cluster connection; made on first use, inside the runtime, with
//! the store's timeout, or the caller's own connection used as it is.
//!
//! Both speak [`ConnectionLike`], so the scripts run the same way on either: a cluster
//! connection sends each script to the primary of its key's slot (every key of a lane shares
//! the lane's hash tag, see [`Store::key_for`](super::Store::key_for)), follows `MOVED` when
//! slots migrate, and finds the new primary after a failover.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::StoreError;

/// Where the store's connection comes from.
pub(crate) enum Source {
    /// One server: a connection manager is made on first use, with the store's timeout.
    Client(Box<redis::Client>),
    /// A Redis Cluster: a cluster connection is made on first use, with the store's timeout.
    #[cfg(feature = "cluster")]
    Cluster(Box<redis::cluster::ClusterClient>),
    /// The caller's own connection: used as it is (its own timeouts and reconnection).
    Ready(Connection),
}

impl Source {
    /// Whether the store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        match self {
            Source::Client(_) | Source::Ready(Connection::Node(_)) => false,
            #[cfg(feature = "cluster")]
            Source::Cluster(_) | Source::Ready(Connection::Cluster(_)) => true,
        }
    }
}

/// A connection to one server or to a cluster: cheap to clone (both multiplex one socket per
/// node), so each call takes its own.
#[derive(Clone)]
pub(crate) enum Connection {
    /// One server, reconnected in the background by the manager.
    Node(ConnectionManager),
    /// A Redis Cluster: one connection per node, requests routed by slot.
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Node(manager) => manager.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            Connection::Cluster(cluster) => cluster.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Node(manager) => manager.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "cluster")]
            Connection::Cluster(cluster) => cluster.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Node(manager) => manager.get_db(),
            #[cfg(feature = "cluster")]
            Connection::Cluster(cluster) => cluster.get_db(),
        }
    }
}

/// The source, and the connection made from it.
pub(crate) struct Connector {
    source: Source,
    /// The connection calls share, cloned out under a short lock.
    made: Mutex<Option<Connection>>,
    /// Held while a connection is being made, so that calls wait for one attempt instead of
    /// each making their own.
    connecting: tokio::sync::Mutex<()>,
}

impl Connector {
    pub fn new(source: Source) -> Connector {
        let made = match &source {
            Source::Ready(connection) => Some(connection.clone()),
            _ => None,
        };
        Connector {
            source,
            made: Mutex::new(made),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    fn made(&self) -> MutexGuard<'_, Option<Connection>> {
        // A plain value: consistent even if a holder panicked.
        self.made
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The connection, made now if there is none. A failed attempt leaves nothing behind: the
    /// next call tries again.
    pub async fn connection(&self, timeout: Duration) -> Result<Connection, StoreError> {
        if let Some(connection) = self.made().clone() {
            return Ok(connection);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(connection) = self.made().clone() {
            return Ok(connection);
        }
        let connection = self.connect(timeout).await?;
        *self.made() = Some(connection.clone());
        Ok(connection)
    }

    /// Drops a cluster connection made here after a probe of the down store failed: the next
    /// call connects anew through the seed nodes and reads the slot map afresh, whatever state
    /// the old connection's own recovery is in. (A connection manager reconnects by itself;
    /// the caller's own connection is kept.)
    pub fn reconnect_cluster(&self) {
        #[cfg(feature = "cluster")]
        if matches!(self.source, Source::Cluster(_)) {
            self.made().take();
        }
    }

    async fn connect(&self, timeout: Duration) -> Result<Connection, StoreError> {
        #[cfg(feature = "tls")]
        crypto_provider();
        let failed = |error: redis::RedisError| StoreError::Redis(error.to_string());
        match &self.source {
            Source::Client(client) => {
                // Reconnection gives up quickly: a probe starts it again, and no booking waits
                // on it longer than the timeout anyway.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(500))
                    .set_number_of_retries(3);
                ConnectionManager::new_lazy_with_config(client.as_ref().clone(), config)
                    .map(Connection::Node)
                    .map_err(failed)
            }
            #[cfg(feature = "cluster")]
            Source::Cluster(client) => {
                // Connects to the nodes now (the slot map is read from them): a cluster that
                // is down fails this call, and the next one tries again.
                let config = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(timeout)
                    .set_response_timeout(timeout);
                client
                    .get_async_connection_with_config(config)
                    .await
                    .map(Connection::Cluster)
                    .map_err(failed)
            }
            Source::Ready(connection) => Ok(connection.clone()),
        }
    }
}

/// Installs rustls' *ring* provider for the process unless one is installed already: rustls
/// picks a provider by itself only when exactly one is compiled in, and another crate of the
/// program (reqwest's rustls, say) may bring a second. A program that wants another one
/// (aws-lc-rs, for its post-quantum key exchange) installs it before the first request.
#[cfg(feature = "tls")]
fn crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Deprecated for lacking post-quantum key exchange, which a connection to Redis can do
        // without; ring builds with a C compiler alone. Another thread may install a provider
        // in between: either is fine.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
