//! [`Session`]: one PostgreSQL connection owned by pglock and shared by clones.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use tokio_postgres::{Client, Statement};

use crate::error::Error;

/// One PostgreSQL connection, shared by cheap clones, that guards can hold on to.
///
/// Use a `Session` when you lock through a single connection rather than a pool.
/// It owns the `tokio_postgres::Client` so that every guard can keep the connection
/// alive until its lock is released, which is what makes release-on-drop a
/// guarantee: the guard holds a clone, and dropping it queues the unlock on the
/// connection before the drop returns.
///
/// Locks taken through one session stack (PostgreSQL counts them per session), so
/// two guards on the same name from clones of one session do **not** exclude each
/// other. Use a pool, or one session per worker, for mutual exclusion inside a
/// process.
///
/// Statements are prepared once per session and cached.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    client: Owned,
    statements: Mutex<HashMap<&'static str, Statement>>,
}

/// The connection a session owns: connected by the user or taken out of a pool.
enum Owned {
    Plain(Client),
    Detached(deadpool_postgres::ClientWrapper),
}

impl Session {
    /// Wraps a client you connected yourself. Keep its connection task running.
    pub fn new(client: Client) -> Session {
        Session::with(Owned::Plain(client))
    }

    /// Takes a connection out of its pool for good: it is closed, not returned,
    /// when the last clone of the session is dropped. pglock does this for
    /// automatically renewed leases, whose renewing task shares the connection.
    pub fn from_pooled(object: deadpool_postgres::Object) -> Session {
        Session::with(Owned::Detached(deadpool_postgres::Object::take(object)))
    }

    fn with(client: Owned) -> Session {
        Session {
            inner: Arc::new(Inner {
                client,
                statements: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Connects without TLS (for example `postgres://user@host/db` or
    /// `host=localhost user=postgres`) and drives the connection on a spawned task.
    ///
    /// The connection gets pglock's dead-peer settings
    /// ([`configure_keepalives`](crate::configure_keepalives)), which replace any
    /// keepalive settings in the configuration string.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future drops the half-made connection.
    pub async fn connect(config: &str) -> Result<Session, Error> {
        let mut config: tokio_postgres::Config = config
            .parse()
            .map_err(|e| Error::invalid_argument(format!("invalid connection string: {e}")))?;
        crate::liveness::configure_keepalives(&mut config);
        let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "pglock: session connection ended with an error");
            }
        });
        Ok(Session::new(client))
    }

    /// The client, for your own queries on the same connection.
    pub fn client(&self) -> &Client {
        match &self.inner.client {
            Owned::Plain(client) => client,
            Owned::Detached(wrapper) => wrapper,
        }
    }

    /// Whether the connection is closed (every lock of this session is then gone).
    pub fn is_closed(&self) -> bool {
        self.client().is_closed()
    }

    pub(crate) async fn prepare_cached(
        &self,
        sql: &'static str,
    ) -> Result<Statement, tokio_postgres::Error> {
        if let Owned::Detached(wrapper) = &self.inner.client {
            // The pool's own statement cache came along with the connection.
            return wrapper.prepare_cached(sql).await;
        }
        if let Some(s) = self
            .inner
            .statements
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sql)
        {
            return Ok(s.clone());
        }
        let statement = self.client().prepare(sql).await?;
        self.inner
            .statements
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sql, statement.clone());
        Ok(statement)
    }
}

impl From<Client> for Session {
    fn from(client: Client) -> Self {
        Session::new(client)
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}
