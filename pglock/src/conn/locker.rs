//! [`Locker`]: many locks on a few connections.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio_postgres::types::Type;

use super::ledger::Ledger;
use super::source::private::Sealed;
use super::{Conn, Exec, Param, Prepared, Session, Source};
use crate::error::Error;
use crate::key::LockKey;

/// A multiplexing source: any number of session locks held on a small, fixed set
/// of shared connections, instead of a pooled connection per held lock.
///
/// ```no_run
/// # async fn demo(pool: deadpool_postgres::Pool) -> Result<(), pglock::Error> {
/// // Four connections taken out of the pool hold every lock; waits borrow one
/// // from the pool for as long as they wait and hold.
/// let locker = pglock::Locker::new(&pool, 4).await?;
/// let mut guards = Vec::new();
/// for account in 0..1000 {
///     let name = format!("account:{account}");
///     guards.push(pglock::advisory(name.as_str()).try_acquire(&locker).await?);
/// }
/// # Ok(()) }
/// ```
///
/// How it works, and what it costs:
///
/// - Every acquisition first *tries* (`pg_try_advisory_lock`) on one of the shared
///   connections, chosen by the key, pipelined with the other guards' statements
///   there; a free lock costs one round trip and no connection of its own. A try
///   never waits, so it never holds up the other guards' statements on that
///   connection, and PostgreSQL refuses it while others wait for a conflicting
///   lock, so it does not jump the server's queue.
/// - When the lock is busy and the call may wait, the wait happens on a
///   connection of its own from the pool (checked out for the wait, and kept by
///   the guard until release if the lock is granted): the server's fair queue and
///   its deadlock detector see that wait as usual. Contended locks therefore cost
///   a pooled connection each while they wait and are held; uncontended ones do
///   not.
/// - Releases are queued on the lock's connection without waiting for the one
///   before; [`Guard::release`](crate::Guard::release) still waits for its answer.
/// - When another task of the process waits for an exclusive lock a guard
///   releases, the release and that waiter's try go out as one statement
///   (`pg_advisory_unlock` then `pg_try_advisory_lock`): a handoff between two
///   local guards costs one round trip, and no wake-up of the waiter before its
///   try. A session waiting for the lock on the server is granted it by the
///   unlock first, so the try fails and the waiter waits its turn there. Local
///   waiters are served first come, first served.
/// - A dropped exclusive guard that nobody waits for leaves its unlock to a
///   task, which sends it when it first runs; if the next acquisition of the same
///   lock through the locker comes first, that acquisition sends the unlock and
///   its own try as one statement (the same one). A worker that takes the same
///   lock over and over pays one statement per cycle. Any other acquisition of
///   that lock (shared, fenced) sends the waiting unlock before its own
///   statements.
/// - Guards of one locker exclude each other in the process (one ledger across
///   its connections), as guards of one pool do.
/// - A shared connection that dies loses every lock held on it: each of those
///   guards reports it ([`Guard::lost`](crate::Guard::lost), `release()` →
///   [`is_lost`](Error::is_lost)); the locker replaces the connection for new
///   acquisitions.
/// - Settings belong to a connection, and a shared connection's are everybody's:
///   per-guard [`lease`](crate::Advisory::lease) and
///   [`label`](crate::Advisory::label) are refused (as on a [`Session`]). A locker
///   has its own instead ([`Locker::builder`]): one label for its connections, and
///   one lease per connection — the server ends a shared connection that stays
///   silent for the time-to-live (a hung or frozen process), freeing every lock
///   on it, and a task renews it every third of it for all those locks at once;
///   the guards' local deadlines count on it.
/// - The server's lock table (about `max_locks_per_transaction × max_connections`
///   entries, 6,400 with the defaults) bounds how many locks all clients hold at
///   once, however few connections hold them; past it an acquisition fails with
///   [`is_lock_table_full`](Error::is_lock_table_full).
///
/// The shared connections are taken out of the pool for good (the pool may open
/// others in their place) and closed when the last clone of the locker is dropped.
#[derive(Clone)]
pub struct Locker {
    inner: Arc<Inner>,
}

struct Inner {
    pool: deadpool_postgres::Pool,
    shared: Mutex<Vec<Session>>,
    ledger: Arc<Ledger>,
    settings: Settings,
    renewers: Mutex<Vec<AbortHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for renewer in lock(&self.renewers).drain(..) {
            renewer.abort();
        }
    }
}

/// A locker's own settings, applied to each of its shared connections.
#[derive(Clone, Debug, Default)]
struct Settings {
    lease: Option<Duration>,
    label: Option<String>,
}

/// Builds a [`Locker`] with settings of its own: [`Locker::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is awaited"]
pub struct LockerBuilder {
    pool: deadpool_postgres::Pool,
    connections: usize,
    settings: Settings,
}

impl LockerBuilder {
    /// How many shared connections hold the locks (default 4).
    pub fn connections(mut self, connections: usize) -> Self {
        self.connections = connections;
        self
    }

    /// A time-to-live for each shared connection (at least
    /// [`MIN_LEASE`](crate::MIN_LEASE); PostgreSQL 14 or later): the server ends a
    /// connection that stays silent that long, and a task renews it every third
    /// of it while the process runs.
    pub fn lease(mut self, ttl: Duration) -> Self {
        self.settings.lease = Some(ttl);
        self
    }

    /// A label for the holders: the shared connections' `application_name`
    /// (at most 63 bytes of printable ASCII), shown by [`status`](crate::status),
    /// `pg_stat_activity` and others' not-acquired errors.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.settings.label = Some(label.into());
        self
    }

    /// Takes the shared connections out of the pool and applies the settings.
    ///
    /// # Errors
    /// [`is_pool`](Error::is_pool) when the pool cannot hand out the connections;
    /// [`is_invalid_argument`](Error::is_invalid_argument) for zero connections, a
    /// bad lease or label; a database error when the server refuses a setting.
    ///
    /// # Cancel safety
    /// Cancel-safe: connections already taken are closed when dropped.
    pub async fn build(self) -> Result<Locker, Error> {
        if self.connections == 0 {
            return Err(Error::invalid_argument(
                "a locker needs at least one connection",
            ));
        }
        if let Some(label) = &self.settings.label {
            if label.len() > 63 || label.chars().any(|c| !(' '..='~').contains(&c)) {
                return Err(Error::invalid_argument(format!(
                    "locker label {label:?}: at most 63 bytes of printable ASCII (what \
                     PostgreSQL keeps and shows of an application_name)"
                )));
            }
        }
        let locker = Locker {
            inner: Arc::new(Inner {
                pool: self.pool,
                shared: Mutex::new(Vec::new()),
                ledger: Arc::default(),
                settings: self.settings,
                renewers: Mutex::new(Vec::new()),
            }),
        };
        for _ in 0..self.connections {
            let session = locker.open().await?;
            lock(&locker.inner.shared).push(session);
        }
        Ok(locker)
    }
}

impl Locker {
    /// A locker holding its locks on `connections` connections taken out of
    /// `pool` (at least one); waits use connections of `pool`.
    ///
    /// # Errors
    /// [`is_pool`](Error::is_pool) when the pool cannot hand out the connections;
    /// [`is_invalid_argument`](Error::is_invalid_argument) for zero connections.
    ///
    /// # Cancel safety
    /// Cancel-safe: connections already taken are closed when dropped.
    pub async fn new(pool: &deadpool_postgres::Pool, connections: usize) -> Result<Locker, Error> {
        Locker::builder(pool).connections(connections).build().await
    }

    /// A locker with settings of its own: a lease per connection, a label.
    ///
    /// ```no_run
    /// # async fn demo(pool: deadpool_postgres::Pool) -> Result<(), pglock::Error> {
    /// use std::time::Duration;
    /// let locker = pglock::Locker::builder(&pool)
    ///     .connections(2)
    ///     .lease(Duration::from_secs(30))
    ///     .label("billing-worker-7")
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn builder(pool: &deadpool_postgres::Pool) -> LockerBuilder {
        LockerBuilder {
            pool: pool.clone(),
            connections: 4,
            settings: Settings::default(),
        }
    }

    /// A shared connection: taken out of the pool for good, with the locker's
    /// label and lease.
    async fn open(&self) -> Result<Session, Error> {
        let session = Session::from_pooled(self.inner.pool.get().await.map_err(Error::pool)?);
        if let Some(label) = &self.inner.settings.label {
            let params: [Param<'_>; 1] = [(label, Type::TEXT)];
            Exec::Session(&session)
                .query(&Prepared::Typed(crate::sql::SET_LABEL), &params)
                .await
                .map_err(Error::db)?;
        }
        if let Some(ttl) = self.inner.settings.lease {
            let renewer = session.lease_connection(ttl).await?;
            lock(&self.inner.renewers).push(renewer);
        }
        // Handoffs between local guards send their unlock and the next try as
        // one statement (a relay), prepared here once: a guard's drop cannot
        // wait for a prepare.
        let (big, pair) = futures_util::future::join(
            session.prepare_cached(crate::sql::relay(false)),
            session.prepare_cached(crate::sql::relay(true)),
        )
        .await;
        big.and(pair).map_err(Error::db)?;
        Ok(session)
    }

    /// How many shared connections hold the locks.
    pub fn connections(&self) -> usize {
        lock(&self.inner.shared).len()
    }

    /// The shared connection for `key`: the same one for a key as long as it
    /// lives, so that a key's statements stay in order; a closed one is replaced.
    async fn shared_for(&self, key: LockKey) -> Result<Session, Error> {
        let (index, session) = {
            let shared = lock(&self.inner.shared);
            let index = slot(key, shared.len());
            (index, shared[index].clone())
        };
        if !session.is_closed() {
            return Ok(session);
        }
        let fresh = self.open().await?;
        let mut shared = lock(&self.inner.shared);
        if shared[index].is_closed() {
            shared[index] = fresh;
        }
        Ok(shared[index].clone())
    }
}

fn slot(key: LockKey, n: usize) -> usize {
    let (classid, objid, objsubid) = key.pg_locks_triple();
    let mixed = (u64::from(classid) << 32 | u64::from(objid)) ^ objsubid as u64;
    (mixed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % n
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sealed for Locker {
    async fn checkout_for(&self, key: LockKey) -> Result<Conn, Error> {
        Ok(Conn::Session(self.shared_for(key).await?))
    }

    async fn checkout(&self) -> Result<Conn, Error> {
        self.checkout_for(LockKey::Big(0)).await
    }

    fn ledger(&self) -> Arc<Ledger> {
        self.inner.ledger.clone()
    }

    fn waiters(&self) -> Option<&deadpool_postgres::Pool> {
        Some(&self.inner.pool)
    }

    async fn probe(&self, conn: &Conn) {
        self.inner.pool.probe(conn).await;
        self.inner
            .ledger
            .set_pooling(Sealed::ledger(&self.inner.pool).pooling());
    }
}
impl Source for Locker {}

impl fmt::Debug for Locker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Locker")
            .field("connections", &self.connections())
            .finish_non_exhaustive()
    }
}
