//! The connection layer: the connections pglock locks on, behind one small
//! interface ([`Exec`] borrowed, [`Conn`] owned by a guard), the sources they come
//! from, and the per-source [`ledger`] of holds.
//!
//! Statements are prepared once per connection where a cache exists (a pooled
//! connection's, a [`Session`]'s) and sent as unnamed typed statements otherwise
//! (a plain `tokio_postgres::Transaction` or `Client`); either way an attempt is
//! one round trip once warm. A session lock's unlock is prepared together with
//! its lock statement (in the same round trip when neither is cached yet) and the
//! guard keeps it, so that a drop, which cannot wait, still queues a prepared
//! unlock (bind and execute; no parse or plan on the server).
//!
//! Statements on one connection run in the order they were queued, and a lock
//! wait holds up everything queued behind it. The ledger is what makes that order
//! safe when several guards share a connection.

pub(crate) mod contact;
pub(crate) mod ledger;
mod locker;
mod session;
pub(crate) mod source;

use std::future::Future;

use tokio_postgres::types::ToSql;
use tokio_postgres::{CancelToken, Row, Statement};

pub use locker::{Locker, LockerBuilder};
#[cfg(feature = "tls")]
pub(crate) use session::Driver;
pub use session::Session;
pub use source::{Borrowable, Source};

pub(crate) use crate::key::Param;
use crate::sql;

/// A statement ready to run on one connection.
pub(crate) enum Prepared {
    Statement(Statement),
    Typed(&'static str),
}

/// A borrowed connection that can run pglock's statements.
#[doc(hidden)]
#[derive(Clone, Copy)]
pub enum Exec<'a> {
    Session(&'a Session),
    Pooled(&'a deadpool_postgres::Object),
    Tx(&'a tokio_postgres::Transaction<'a>),
    PooledTx(&'a deadpool_postgres::Transaction<'a>),
    /// A connection the caller lent to a guard.
    Client(&'a tokio_postgres::Client),
}

impl<'a> Exec<'a> {
    /// Prepares (or finds in the cache) `sql`. Cache hits cost nothing on the wire.
    pub(crate) async fn prepare(
        self,
        sql: &'static str,
    ) -> Result<Prepared, tokio_postgres::Error> {
        Ok(match self {
            Exec::Session(s) => Prepared::Statement(s.prepare_cached(sql).await?),
            Exec::Pooled(o) => Prepared::Statement(o.prepare_cached(sql).await?),
            Exec::PooledTx(t) => Prepared::Statement(t.prepare_cached(sql).await?),
            Exec::Tx(_) | Exec::Client(_) => Prepared::Typed(sql),
        })
    }

    /// Runs a prepared statement. The request is queued on the connection at the
    /// first poll of the returned future, before it first returns `Pending`, so
    /// futures polled in order reach the server in order (pipelining).
    pub(crate) fn query<'b>(
        self,
        prepared: &'b Prepared,
        params: &'b [Param<'b>],
    ) -> impl Future<Output = Result<Vec<Row>, tokio_postgres::Error>> + Send + 'b
    where
        'a: 'b,
    {
        async move {
            match prepared {
                Prepared::Typed(sql) => match self {
                    Exec::Tx(t) => t.query_typed(sql, params).await,
                    Exec::PooledTx(t) => t.query_typed(sql, params).await,
                    Exec::Session(s) => s.client().query_typed(sql, params).await,
                    Exec::Pooled(o) => o.query_typed(sql, params).await,
                    Exec::Client(c) => c.query_typed(sql, params).await,
                },
                Prepared::Statement(st) => {
                    let untyped: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.0).collect();
                    match self {
                        Exec::Session(s) => s.client().query(st, &untyped).await,
                        Exec::Pooled(o) => o.query(st, &untyped).await,
                        Exec::Tx(t) => t.query(st, &untyped).await,
                        Exec::PooledTx(t) => t.query(st, &untyped).await,
                        Exec::Client(c) => c.query(st, &untyped).await,
                    }
                }
            }
        }
    }

    /// Prepares and runs one statement.
    pub(crate) async fn run(
        self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let prepared = self.prepare(sql).await?;
        self.query(&prepared, params).await
    }

    pub(crate) async fn batch(self, sql: &str) -> Result<(), tokio_postgres::Error> {
        match self {
            Exec::Session(s) => s.client().batch_execute(sql).await,
            Exec::Pooled(o) => o.batch_execute(sql).await,
            Exec::Tx(t) => t.batch_execute(sql).await,
            Exec::PooledTx(t) => t.batch_execute(sql).await,
            Exec::Client(c) => c.batch_execute(sql).await,
        }
    }

    /// The address of the borrowed connection or transaction: the same for every
    /// use of one object while it is borrowed.
    pub(crate) fn address(self) -> usize {
        match self {
            Exec::Session(s) => s.client() as *const tokio_postgres::Client as usize,
            Exec::Pooled(o) => {
                let client: &tokio_postgres::Client = o;
                client as *const tokio_postgres::Client as usize
            }
            Exec::Tx(t) => t as *const tokio_postgres::Transaction<'_> as usize,
            Exec::PooledTx(t) => t as *const deadpool_postgres::Transaction<'_> as usize,
            Exec::Client(c) => c as *const tokio_postgres::Client as usize,
        }
    }

    pub(crate) fn cancel_token(self) -> CancelToken {
        match self {
            Exec::Session(s) => s.client().cancel_token(),
            Exec::Pooled(o) => o.cancel_token(),
            Exec::Tx(t) => t.cancel_token(),
            Exec::PooledTx(t) => t.cancel_token(),
            Exec::Client(c) => c.cancel_token(),
        }
    }
}

/// A connection a guard owns while it holds a session lock.
#[doc(hidden)]
pub enum Conn {
    /// Checked out of a pool; goes back when the guard is done with it.
    Pooled(Box<deadpool_postgres::Object>),
    /// A (shared) pglock session.
    Session(Session),
    /// A connection taken out of its pool for one lock (an automatically renewed
    /// lease): closed, not returned, when the guard is done.
    Dedicated(Session),
}

impl Conn {
    pub(crate) fn exec(&self) -> Exec<'_> {
        match self {
            Conn::Pooled(o) => Exec::Pooled(o),
            Conn::Session(s) | Conn::Dedicated(s) => Exec::Session(s),
        }
    }

    pub(crate) fn client(&self) -> &tokio_postgres::Client {
        match self {
            Conn::Pooled(o) => o,
            Conn::Session(s) | Conn::Dedicated(s) => s.client(),
        }
    }

    /// The client for a guard's owner to use mutably (transactions): only a
    /// connection the guard has to itself.
    pub(crate) fn client_mut(&mut self) -> Option<&mut tokio_postgres::Client> {
        match self {
            Conn::Pooled(o) => Some(&mut **o),
            Conn::Session(_) | Conn::Dedicated(_) => None,
        }
    }

    /// Whether other guards may share this connection.
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self, Conn::Session(_))
    }

    /// Gives the connection up after a failure that may have left it in an unknown
    /// state: a pooled connection is detached from its pool and closed (ending its
    /// session frees every lock it held); a dedicated one is closed with its last
    /// handle; a session is left to its owner.
    pub(crate) fn discard(self) {
        if let Conn::Pooled(o) = self {
            drop(deadpool_postgres::Object::take(*o));
        }
    }
}

/// Session settings an acquisition changed on a connection that outlives the
/// lock (a pooled one): they are put back with the unlock.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Settings {
    pub(crate) reset_ttl: bool,
    pub(crate) reset_label: bool,
}

impl Settings {
    pub(crate) fn changed(self) -> bool {
        self.reset_ttl || self.reset_label
    }

    /// The statements that put the settings back.
    pub(crate) fn resets(self) -> impl Iterator<Item = &'static str> {
        [
            (self.reset_ttl, sql::RESET_TTL),
            (self.reset_label, sql::RESET_LABEL),
        ]
        .into_iter()
        .filter_map(|(on, sql)| on.then_some(sql))
    }

    pub(crate) async fn reset(self, exec: Exec<'_>) -> Result<(), tokio_postgres::Error> {
        for sql in self.resets() {
            exec.batch(sql).await?;
        }
        Ok(())
    }
}

/// Sends a cancel request for whatever the connection is running, without TLS.
/// Best effort: a server that insists on TLS refuses it, and the wait then ends
/// when the lock is granted or the session closes.
pub(crate) async fn cancel(token: CancelToken) {
    if let Err(e) = token.cancel_query(tokio_postgres::NoTls).await {
        tracing::warn!(error = %crate::error::describe(&e), "pglock: could not send a cancel request");
    }
}
