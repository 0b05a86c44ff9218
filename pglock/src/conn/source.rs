//! Where locks come from: [`Source`]s that lend a guard a connection, and
//! [`Borrowable`] connections a caller lends one for a while.

use std::future::Future;
use std::sync::Arc;

use super::ledger::{self, Ledger, Pooling};
use super::{Conn, Exec, Session};
use crate::error::Error;
use crate::keepalive::Keepalive;
use crate::key::LockKey;

pub(crate) mod private {
    use super::*;

    /// What pglock needs of a source. Sealed: pglock must own the connection for
    /// as long as a guard holds its lock, which only these types allow.
    pub trait Sealed: Sync {
        /// A connection for one guard.
        fn checkout(&self) -> impl Future<Output = Result<Conn, Error>> + Send;
        /// A connection for one guard's lock on `key` (a multiplexing source
        /// keeps a key on one of its connections).
        fn checkout_for(&self, _key: LockKey) -> impl Future<Output = Result<Conn, Error>> + Send {
            self.checkout()
        }
        /// The ledger of the holds taken through this source.
        fn ledger(&self) -> Arc<Ledger>;
        /// Where a multiplexing source waits: a pool of connections of their own,
        /// so that a wait never holds up the shared connections.
        fn waiters(&self) -> Option<&deadpool_postgres::Pool> {
            None
        }
        /// Finds out, once per source, whether a transaction-pooling proxy sits
        /// between it and the server (`conn` is one of its connections).
        fn probe(&self, conn: &Conn) -> impl Future<Output = ()> + Send;
        /// The keepalive settings of the source's connections, when pglock made
        /// them.
        fn keepalive(&self) -> Option<Keepalive> {
            None
        }
    }

    /// What pglock needs of a borrowed connection.
    pub trait SealedBorrow: Sync {
        fn exec(&self) -> Exec<'_>;
    }
}

/// Where session locks come from: a [`deadpool_postgres::Pool`] (each guard gets
/// a pooled connection of its own), a [`Session`] (every guard shares its one
/// connection) or a [`Locker`](crate::Locker) (guards share a few connections;
/// waits take one of their own).
///
/// Either way, guards taken through one source exclude each other in the process
/// first: a second exclusive guard on a name waits for the first in the process
/// (never on the server against itself, never stacking on a shared connection).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a source of advisory locks",
    label = "expected a `deadpool_postgres::Pool`, a `pglock::Session` or a `pglock::Locker`",
    note = "to lock on a connection you already hold (`&mut tokio_postgres::Client`, \
            `&mut deadpool_postgres::Object`), use `acquire_on`/`try_acquire_on`"
)]
pub trait Source: private::Sealed {}

impl private::Sealed for deadpool_postgres::Pool {
    async fn checkout(&self) -> Result<Conn, Error> {
        Ok(Conn::Pooled(Box::new(
            self.get().await.map_err(Error::pool)?,
        )))
    }

    fn ledger(&self) -> Arc<Ledger> {
        ledger::of_pool(self)
    }

    /// Two client connections of the pool ask which server session serves them.
    /// Directly, or through session pooling, they are two sessions. Through
    /// transaction pooling the second is served by the server session the first
    /// just gave back (PgBouncer hands out its most recently used idle server
    /// connection first), so both name the same backend. Checked when a second
    /// connection can be had without waiting; otherwise at a later acquisition.
    async fn probe(&self, conn: &Conn) {
        let ledger = self.ledger();
        if ledger.pooling() != Pooling::Unknown {
            return;
        }
        let timeouts = deadpool_postgres::Timeouts {
            wait: Some(std::time::Duration::ZERO),
            create: Some(std::time::Duration::from_secs(5)),
            recycle: Some(std::time::Duration::from_secs(5)),
        };
        let Ok(other) = self.timeout_get(&timeouts).await else {
            return;
        };
        let first = backend_pid(conn.client()).await;
        let second = backend_pid(&other).await;
        if let (Some(first), Some(second)) = (first, second) {
            ledger.set_pooling(match first == second {
                true => Pooling::Transaction,
                false => Pooling::SessionKept,
            });
        }
    }
}
impl Source for deadpool_postgres::Pool {}

impl private::Sealed for Session {
    async fn checkout(&self) -> Result<Conn, Error> {
        Ok(Conn::Session(self.clone()))
    }

    fn ledger(&self) -> Arc<Ledger> {
        self.ledger().clone()
    }

    /// A session is checked when [`Session::connect`] makes it.
    async fn probe(&self, _: &Conn) {}
    fn keepalive(&self) -> Option<Keepalive> {
        Session::keepalive(self)
    }
}
impl Source for Session {}

/// A connection you already hold, that a guard can borrow for as long as it
/// holds its lock ([`Advisory::acquire_on`](crate::Advisory::acquire_on)): a
/// `tokio_postgres::Client` or a checked-out `deadpool_postgres::Object`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a connection a lock can be taken on",
    label = "expected a `tokio_postgres::Client` or a `deadpool_postgres::Object`, borrowed mutably"
)]
pub trait Borrowable: private::SealedBorrow {}

impl private::SealedBorrow for tokio_postgres::Client {
    fn exec(&self) -> Exec<'_> {
        Exec::Client(self)
    }
}
impl Borrowable for tokio_postgres::Client {}

impl private::SealedBorrow for deadpool_postgres::Object {
    fn exec(&self) -> Exec<'_> {
        Exec::Pooled(self)
    }
}
impl Borrowable for deadpool_postgres::Object {}

/// The backend (server process) serving `client`'s next statement.
pub(crate) async fn backend_pid(client: &tokio_postgres::Client) -> Option<i32> {
    // A simple query: one message, which no proxy can split across sessions.
    let messages = client
        .simple_query("SELECT pg_catalog.pg_backend_pid()")
        .await
        .ok()?;
    messages.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0)?.parse().ok(),
        _ => None,
    })
}
