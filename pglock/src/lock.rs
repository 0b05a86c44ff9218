//! The lock builder returned by [`advisory()`] and session-level acquisition.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use tokio_postgres::types::Type;
use tracing::Instrument;

use crate::conn::{Conn, Exec, Param, Prepared};
use crate::error::{Error, Holder};
use crate::guard::{Guard, Pending};
use crate::key::{LockId, LockKey};
use crate::session::Session;
use crate::sql::{self, Attempt, Scope};
use crate::xact::XactAdvisory;

/// Exclusive or shared.
///
/// Shared locks conflict only with exclusive locks on the same key: any number of
/// shared holders, or one exclusive holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// One holder at a time (`pg_advisory_lock`). The default.
    Exclusive = 0,
    /// Many holders, none exclusive (`pg_advisory_lock_shared`).
    Shared = 1,
}

impl Mode {
    /// The mode as `pg_locks.mode` shows it: `ExclusiveLock` or `ShareLock`.
    pub fn pg_mode(self) -> &'static str {
        match self {
            Mode::Exclusive => "ExclusiveLock",
            Mode::Shared => "ShareLock",
        }
    }

    pub(crate) fn from_pg_mode(mode: &str) -> Mode {
        if mode == "ShareLock" {
            Mode::Shared
        } else {
            Mode::Exclusive
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Exclusive => "exclusive",
            Mode::Shared => "shared",
        })
    }
}

/// Describes an advisory lock: start here.
///
/// `name_or_key` is a lock name (`&str`/`String`, hashed by [`key_for`](crate::key_for)),
/// an `i64` key, an `(i32, i32)` key pair, or a [`LockKey`]. The result is a cheap,
/// cloneable [`Advisory`] builder; nothing is sent until you acquire.
///
/// ```no_run
/// # async fn demo(pool: deadpool_postgres::Pool) -> Result<(), pglock::Error> {
/// use std::time::Duration;
/// let guard = pglock::advisory("reindex")
///     .timeout(Duration::from_secs(2))
///     .acquire(&pool)
///     .await?;
/// // … only one holder of "reindex" in the whole database runs this …
/// guard.release().await?;
/// # Ok(()) }
/// ```
pub fn advisory(name_or_key: impl Into<LockId>) -> Advisory {
    Advisory {
        id: name_or_key.into(),
        mode: Mode::Exclusive,
        timeout: None,
    }
}

/// A session-level advisory lock to acquire: built by [`advisory()`].
///
/// Session locks are held until released (by the guard) or until the session ends;
/// they ignore transaction commit and rollback. For locks that end with a
/// transaction, see [`xact`](Advisory::xact).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[must_use = "a lock builder does nothing until you acquire it"]
pub struct Advisory {
    pub(crate) id: LockId,
    pub(crate) mode: Mode,
    pub(crate) timeout: Option<Duration>,
}

/// How long an attempt may wait.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// One try (`pg_try_advisory_*`).
    Zero,
    /// The server waits at most this long (`lock_timeout`), then gives up.
    For(Duration),
    /// The server waits until the lock is granted, whatever the session's
    /// `lock_timeout`.
    Forever,
}

impl Wait {
    pub(crate) fn of(timeout: Option<Duration>) -> Wait {
        match timeout {
            None => Wait::Forever,
            Some(d) if d.is_zero() => Wait::Zero,
            Some(d) => Wait::For(d),
        }
    }

    pub(crate) fn attempt(self) -> Attempt {
        match self {
            Wait::Zero => Attempt::Try,
            _ => Attempt::Wait,
        }
    }

    /// The `lock_timeout` value for a waiting attempt: whole milliseconds, rounded
    /// up; `0` (no limit) to wait forever.
    pub(crate) fn lock_timeout(self) -> Result<String, Error> {
        match self {
            Wait::Zero | Wait::Forever => Ok("0".to_string()),
            Wait::For(d) => {
                let ms = d.as_nanos().div_ceil(1_000_000);
                if ms > i32::MAX as u128 {
                    return Err(Error::invalid_argument(format!(
                        "timeout {d:?} is longer than PostgreSQL's lock_timeout allows \
                         (2147483647 ms, about 24.8 days); leave the timeout unset to wait \
                         without limit"
                    )));
                }
                Ok(format!("{ms}ms"))
            }
        }
    }

    /// The timeout to report when the lock was not acquired.
    pub(crate) fn reported(self) -> Duration {
        match self {
            Wait::For(d) => d,
            _ => Duration::ZERO,
        }
    }
}

/// What one attempt came to.
pub(crate) enum Outcome<T> {
    Acquired(T),
    Busy(Option<Holder>),
}

impl Advisory {
    /// Makes the lock shared: it conflicts only with exclusive holders.
    pub fn shared(mut self) -> Advisory {
        self.mode = Mode::Shared;
        self
    }

    /// Makes the lock exclusive (the default).
    pub fn exclusive(mut self) -> Advisory {
        self.mode = Mode::Exclusive;
        self
    }

    /// Sets how long to wait for the lock.
    ///
    /// - not set: [`acquire`](Advisory::acquire) waits until the lock is granted,
    ///   whatever `lock_timeout` the session has; [`try_acquire`](Advisory::try_acquire)
    ///   and [`run`](Advisory::run) try once.
    /// - `Duration::ZERO`: one try, no waiting (`pg_try_advisory_lock`).
    /// - anything else: the *server* waits at most that long (a statement-local
    ///   `lock_timeout`, rounded up to whole milliseconds), in the same round trip
    ///   and without changing any setting of the connection. No polling.
    pub fn timeout(mut self, timeout: Duration) -> Advisory {
        self.timeout = Some(timeout);
        self
    }

    /// Turns this into a transaction-level lock, taken inside a transaction you
    /// pass to [`XactAdvisory::acquire_in`] and held until it commits or rolls back.
    pub fn xact(self) -> XactAdvisory {
        XactAdvisory { lock: self }
    }

    /// The lock's name or key.
    pub fn id(&self) -> &LockId {
        &self.id
    }

    /// The key PostgreSQL locks on.
    pub fn key(&self) -> LockKey {
        self.id.lock_key()
    }

    /// Exclusive or shared.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Takes the lock, waiting as the [`timeout`](Advisory::timeout) says (without
    /// one: until granted), and returns a guard that holds it.
    ///
    /// `source` is a [`deadpool_postgres::Pool`] (the guard owns a pooled
    /// connection and gives it back only after the lock is released) or a
    /// [`Session`].
    ///
    /// # Errors
    /// [`is_not_acquired`](Error::is_not_acquired) when the lock stayed busy for the
    /// timeout (the error names the lock, the timeout and, when the server could
    /// tell, the holder's pid and application name); deadlock, lock table full,
    /// connection lost, pool and invalid-argument errors as their kinds say.
    ///
    /// # Cancel safety
    /// Cancel-safe. Dropping the future while it waits for the server sends a cancel
    /// request for the wait and, once the connection is idle again, releases the
    /// lock if the server granted it meanwhile; a pooled connection goes back to the
    /// pool only after that (or is closed if that fails). Nothing is left held and no
    /// query is left waiting on a pooled connection.
    pub async fn acquire<S: Source + ?Sized>(&self, source: &S) -> Result<Guard, Error> {
        let wait = Wait::of(self.timeout);
        match self.lock_session(source, wait, true).await? {
            Outcome::Acquired(guard) => Ok(guard),
            Outcome::Busy(holder) => {
                Err(Error::not_acquired(&self.id, wait.reported()).with_holder(holder))
            }
        }
    }

    /// Takes the lock if it is free (or becomes free within the
    /// [`timeout`](Advisory::timeout), when one is set): `Ok(None)` when it is busy.
    ///
    /// # Cancel safety
    /// Cancel-safe, as [`acquire`](Advisory::acquire).
    pub async fn try_acquire<S: Source + ?Sized>(
        &self,
        source: &S,
    ) -> Result<Option<Guard>, Error> {
        let wait = Wait::of(Some(self.timeout.unwrap_or(Duration::ZERO)));
        match self.lock_session(source, wait, false).await? {
            Outcome::Acquired(guard) => Ok(Some(guard)),
            Outcome::Busy(_) => Ok(None),
        }
    }

    /// Runs `work` only if the lock is acquired, as [`try_acquire`](Advisory::try_acquire)
    /// takes it, and releases the lock when `work` finishes: `Ok(Some(output))`, or
    /// `Ok(None)` without running `work` when the lock is busy ("skip").
    ///
    /// ```no_run
    /// # async fn demo(pool: deadpool_postgres::Pool) -> Result<(), pglock::Error> {
    /// let sent = pglock::advisory("send_invoices")
    ///     .run(&pool, async { /* send them */ 42 })
    ///     .await?;
    /// match sent {
    ///     Some(n) => println!("sent {n} invoices"),
    ///     None => println!("another worker is sending them; skipped"),
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Those of acquiring, and those of releasing (a lock [lost](Error::is_lost)
    /// while `work` ran is reported as an error although `work` finished).
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future drops `work` and releases the lock as a
    /// dropped [`Guard`] does.
    pub async fn run<S, F>(&self, source: &S, work: F) -> Result<Option<F::Output>, Error>
    where
        S: Source + ?Sized,
        F: Future,
    {
        let Some(guard) = self.try_acquire(source).await? else {
            return Ok(None);
        };
        let output = work.await;
        guard.release().await?;
        Ok(Some(output))
    }

    pub(crate) async fn lock_session<S: Source + ?Sized>(
        &self,
        source: &S,
        wait: Wait,
        want_holder: bool,
    ) -> Result<Outcome<Guard>, Error> {
        self.id.validate()?;
        let lock_timeout = wait.lock_timeout()?;
        let span = tracing::debug_span!(
            "pglock.acquire",
            lock = %self.id,
            mode = %self.mode,
            timeout = ?self.timeout,
            acquired = tracing::field::Empty,
            wait_us = tracing::field::Empty,
        );
        async move {
            let started = Instant::now();
            let conn = source.checkout().await?;
            let key = self.id.lock_key();
            let attempt = wait.attempt();
            let statement = sql::lock(Scope::Session, self.mode, attempt, is_pair(key));
            let prepared = conn
                .exec()
                .prepare(statement)
                .await
                .map_err(|e| self.error(e))?;
            let mut params = key_params(&key);
            if attempt == Attempt::Wait {
                params.push((&lock_timeout, Type::TEXT));
            }
            let mut pending = Pending::new(conn, self.id.clone(), self.mode);
            let result = pending.send(&prepared, &params).await;
            let conn = pending.disarm();
            let span = tracing::Span::current();
            span.record("wait_us", started.elapsed().as_micros() as u64);
            match result {
                Ok(rows) => {
                    let granted =
                        attempt == Attempt::Wait || rows.first().is_some_and(|r| r.get(0));
                    span.record("acquired", granted);
                    if granted {
                        tracing::debug!("pglock: acquired");
                        return Ok(Outcome::Acquired(Guard::new(
                            conn,
                            self.id.clone(),
                            self.mode,
                            started,
                        )));
                    }
                    let holder = match want_holder {
                        true => holder(conn.exec(), key, self.mode).await,
                        false => None,
                    };
                    Ok(Outcome::Busy(holder))
                }
                Err(e) => {
                    span.record("acquired", false);
                    let err = self.error(e);
                    if err.is_connection_lost() {
                        conn.discard();
                        return Err(err);
                    }
                    // The server may have granted the lock as the wait failed.
                    if let Err(e) = unlock_if_held(conn.exec(), key, self.mode, false).await {
                        tracing::warn!(error = %e, "pglock: cleanup after a failed wait failed");
                        conn.discard();
                        return Err(err);
                    }
                    if err.is_not_acquired() {
                        let holder = match want_holder {
                            true => holder(conn.exec(), key, self.mode).await,
                            false => None,
                        };
                        return Ok(Outcome::Busy(holder));
                    }
                    Err(err)
                }
            }
        }
        .instrument(span)
        .await
    }

    fn error(&self, e: tokio_postgres::Error) -> Error {
        Error::db(e).with_lock(&self.id)
    }
}

pub(crate) fn is_pair(key: LockKey) -> bool {
    matches!(key, LockKey::Pair(..))
}

/// The bind parameters that carry a key.
pub(crate) fn key_params(key: &LockKey) -> Vec<Param<'_>> {
    let mut params: Vec<Param<'_>> = Vec::with_capacity(4);
    match key {
        LockKey::Big(k) => params.push((k, Type::INT8)),
        LockKey::Pair(a, b) => {
            params.push((a, Type::INT4));
            params.push((b, Type::INT4));
        }
    }
    params
}

/// Releases the key in `mode` if this session holds it; see [`sql::unlock_if_held`].
/// `typed` sends an unnamed statement, queued on the first poll (for drops).
pub(crate) async fn unlock_if_held(
    exec: Exec<'_>,
    key: LockKey,
    mode: Mode,
    typed: bool,
) -> Result<(), tokio_postgres::Error> {
    let (classid, objid, objsubid) = key.pg_locks_triple();
    let mut params = key_params(&key);
    params.push((&classid, Type::OID));
    params.push((&objid, Type::OID));
    params.push((&objsubid, Type::INT2));
    let statement = sql::unlock_if_held(mode, is_pair(key));
    let prepared = match typed {
        true => Prepared::Typed(statement),
        false => exec.prepare(statement).await?,
    };
    exec.query(&prepared, &params).await.map(drop)
}

/// A session holding the key in a mode that conflicts with `mode`, if any.
/// Only asked on the failure path, and only where the answer is reported.
pub(crate) async fn holder(exec: Exec<'_>, key: LockKey, mode: Mode) -> Option<Holder> {
    let (classid, objid, objsubid) = key.pg_locks_triple();
    let exclusive = mode == Mode::Exclusive;
    let params: [Param<'_>; 4] = [
        (&classid, Type::OID),
        (&objid, Type::OID),
        (&objsubid, Type::INT2),
        (&exclusive, Type::BOOL),
    ];
    let rows = exec.run(sql::HOLDER.as_str(), &params).await.ok()?;
    let row = rows.first()?;
    Some(Holder {
        pid: row.get(0),
        application_name: row.get(1),
    })
}

mod private {
    pub trait Sealed {}
}

/// Where session locks come from: a [`deadpool_postgres::Pool`] or a [`Session`].
///
/// Sealed: pglock needs to own the connection for as long as a guard holds its
/// lock, which only these types allow.
pub trait Source: private::Sealed + Sync {
    #[doc(hidden)]
    fn checkout(&self) -> impl Future<Output = Result<Conn, Error>> + Send;
}

impl private::Sealed for deadpool_postgres::Pool {}
impl Source for deadpool_postgres::Pool {
    async fn checkout(&self) -> Result<Conn, Error> {
        Ok(Conn::Pooled(Box::new(self.get().await.map_err(Error::pool)?)))
    }
}

impl private::Sealed for Session {}
impl Source for Session {
    async fn checkout(&self) -> Result<Conn, Error> {
        Ok(Conn::Session(self.clone()))
    }
}
