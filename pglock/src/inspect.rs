//! Who holds a lock, who waits for it, and releasing everything a session holds.

use std::net::IpAddr;
use std::time::SystemTime;

use tokio_postgres::types::Type;
use tokio_postgres::Client;

use crate::conn::Param;
use crate::error::Error;
use crate::key::{LockId, LockKey, Mode};
use crate::sql;

/// A session that holds or waits for a lock, as `pg_locks` and
/// `pg_stat_activity` show it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockHolder {
    /// Backend process id of the session.
    pub pid: i32,
    /// Exclusive or shared.
    pub mode: Mode,
    /// `true` for a holder, `false` for a waiter.
    pub granted: bool,
    /// The session's `application_name` (`None` when not visible to the asking
    /// role).
    pub application_name: Option<String>,
    /// The client's address (`None` for Unix sockets or when not visible).
    pub client_addr: Option<IpAddr>,
    /// When the session connected.
    pub backend_start: Option<SystemTime>,
    /// When a waiter started waiting (PostgreSQL 14 and later; `None` for holders).
    pub wait_start: Option<SystemTime>,
}

/// Everyone holding or waiting for one lock, from one snapshot of `pg_locks`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockStatus {
    /// The key looked up.
    pub key: LockKey,
    /// Sessions holding the lock (several only for shared holders).
    pub holders: Vec<LockHolder>,
    /// Sessions waiting for it, in the order they started waiting.
    pub waiters: Vec<LockHolder>,
}

impl LockStatus {
    /// Whether nobody holds the lock.
    pub fn is_free(&self) -> bool {
        self.holders.is_empty()
    }
}

/// Looks up who holds and who waits for a lock in the client's database.
///
/// `client` is any connection to the same database: a pooled connection
/// (`&pool.get().await?`), [`Session::client`](crate::Session::client) or
/// [`Guard::client`](crate::Guard::client). One round trip.
///
/// ```no_run
/// # async fn demo(client: &tokio_postgres::Client) -> Result<(), pglock::Error> {
/// let status = pglock::status(client, "reindex").await?;
/// for h in &status.holders {
///     println!("held by pid {} ({:?}) in {} mode", h.pid, h.application_name, h.mode);
/// }
/// # Ok(()) }
/// ```
///
/// # Cancel safety
/// Cancel-safe: it only reads.
pub async fn status(client: &Client, lock: impl Into<LockId>) -> Result<LockStatus, Error> {
    let id = lock.into();
    id.validate()?;
    let key = id.lock_key();
    let (classid, objid, objsubid) = key.pg_locks_triple();
    let params: [Param<'_>; 3] = [
        (&classid, Type::OID),
        (&objid, Type::OID),
        (&objsubid, Type::INT2),
    ];
    let rows = client
        .query_typed(sql::STATUS.as_str(), &params)
        .await
        .map_err(|e| Error::db(e).with_lock(&id))?;
    let mut status = LockStatus {
        key,
        holders: Vec::new(),
        waiters: Vec::new(),
    };
    for row in rows {
        let entry = LockHolder {
            pid: row.get(0),
            mode: Mode::from_pg_mode(row.get(1)),
            granted: row.get(2),
            application_name: row.get(3),
            client_addr: row.get(4),
            backend_start: row.get(5),
            wait_start: row.get(6),
        };
        if entry.granted {
            status.holders.push(entry);
        } else {
            status.waiters.push(entry);
        }
    }
    Ok(status)
}

/// Releases every session-level advisory lock the client's session holds
/// (`pg_advisory_unlock_all()`), whoever took them. Guards of that session then
/// report their locks [lost](Error::is_lost) on release.
///
/// # Cancel safety
/// Cancel-safe: once sent it completes on the server.
pub async fn release_all(client: &Client) -> Result<(), Error> {
    client.query(sql::UNLOCK_ALL, &[]).await?;
    Ok(())
}
