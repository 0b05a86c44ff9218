//! The lock builder returned by [`advisory()`] and session-level acquisition.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tracing::Instrument;

use crate::conn::{Conn, Exec, Param, Prepared};
use crate::error::{Error, Holder};
use crate::fencing;
use crate::guard::{Guard, Held, Pending};
use crate::key::{LockId, LockKey};
use crate::lease::{self, Lease};
use crate::liveness::DEFAULT_CHECK_EVERY;
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
        options: Options::default(),
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
    pub(crate) options: Options,
}

/// The production-safety options of a session lock (DESIGN §5).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Options {
    pub(crate) check_every: Option<Duration>,
    pub(crate) lease: Option<Duration>,
    pub(crate) auto_renew: bool,
    pub(crate) fencing: bool,
    pub(crate) label: Option<Arc<str>>,
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
            Wait::For(d) => sql::millis(d).ok_or_else(|| {
                Error::invalid_argument(format!(
                    "timeout {d:?} is longer than PostgreSQL's lock_timeout allows \
                     (2147483647 ms, about 24.8 days); leave the timeout unset to wait \
                     without limit"
                ))
            }),
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
    ///
    /// The timeout bounds the wait for the lock only: checking a connection out of
    /// a pool is bounded by the pool's `wait_timeout`, and a session's
    /// `statement_timeout` still ends a long wait (SQLSTATE 57014).
    pub fn timeout(mut self, timeout: Duration) -> Advisory {
        self.timeout = Some(timeout);
        self
    }

    /// How often [`Guard::lost`] asks the server whether the lock is still held
    /// (default 5 s). A closed connection is noticed at once regardless.
    pub fn check_every(mut self, every: Duration) -> Advisory {
        self.options.check_every = Some(every.max(Duration::from_millis(10)));
        self
    }

    /// Takes the lock with a lease of `ttl`: if the holder goes silent for `ttl`
    /// (no renewal, no query on the lock's connection), the **server** ends the
    /// lock's session and the lock is freed. Renew with [`Guard::renew`], or let
    /// [`auto_renew`](Advisory::auto_renew) do it while the process is healthy.
    ///
    /// Needs PostgreSQL 14 or later (`idle_session_timeout`); older servers answer
    /// a [misuse](Error::is_misuse) error rather than a lease that never expires.
    /// The setting never reaches another user of a pool: it is reset by a
    /// statement pipelined with the unlock, and a connection whose reset fails is
    /// closed instead of returned. With [`auto_renew`](Advisory::auto_renew), whose
    /// renewing task needs a handle of its own on the connection, a pooled
    /// connection leaves its pool for good and is closed after release.
    pub fn lease(mut self, ttl: Duration) -> Advisory {
        self.options.lease = Some(ttl);
        self
    }

    /// Renews the lease every third of its time-to-live from a background task, so
    /// it expires only if the process (its tokio runtime) stops running. Taken
    /// through a pool, the lock then uses a connection of its own that is closed
    /// after release (the pool opens a new one).
    pub fn auto_renew(mut self) -> Advisory {
        self.options.auto_renew = true;
        self
    }

    /// Issues a fencing token with every acquisition: a number strictly greater
    /// than every token issued before for this lock, across restarts. Needs the
    /// table that [`install_fencing`](crate::install_fencing) creates. The token
    /// is [`Guard::fencing_token`]. The token is issued by a statement pipelined
    /// behind the lock statement — no extra round trip — and only when the lock was
    /// granted.
    pub fn fencing(mut self) -> Advisory {
        self.options.fencing = true;
        self
    }

    /// Labels the holder: the lock's session shows `label` as its
    /// `application_name` while it holds the lock, so [`status`](crate::status),
    /// `pg_stat_activity` and the not-acquired errors of others name it. The
    /// session's `application_name` is reset (to the connection's own) by a
    /// statement pipelined with the unlock.
    pub fn label(mut self, label: impl Into<Arc<str>>) -> Advisory {
        self.options.label = Some(label.into());
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
    /// Cancel-safe: nothing is left held after the future is gone, and no query is
    /// left waiting on a pooled connection.
    ///
    /// - From a pool: dropping the future while it waits sends a cancel request for
    ///   the wait and closes the connection instead of returning it. Its session
    ///   ends as soon as the wait does, freeing the lock if the server granted it
    ///   meanwhile, and the cancel request (which the server applies
    ///   asynchronously) cannot interrupt a later user of the connection.
    /// - From a [`Session`]: no cancel request is sent, since on a shared connection
    ///   it could interrupt another task's statement. Instead a release-if-granted is
    ///   queued behind the wait at once, and runs the moment the wait ends (granted
    ///   or timed out). Until then the session is busy, as it is during any wait:
    ///   give waits on a shared session a timeout.
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
        let ttl = self.options.lease.map(lease::ttl_value).transpose()?;
        let span = tracing::debug_span!(
            "pglock.acquire",
            lock = %self.id,
            mode = %self.mode,
            timeout = ?self.timeout,
            acquired = tracing::field::Empty,
            wait_us = tracing::field::Empty,
        );
        let span_handle = span.clone();
        async move {
            let started = Instant::now();
            let (conn, settings) = self.checkout(source).await?;
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
            // Statements pipelined behind the lock, in the same round trip.
            let (space, token_key) = fencing::token_key(key);
            let (classid, objid, objsubid) = key.pg_locks_triple();
            let label = self.options.label.as_deref();
            let mut extras: Vec<(&'static str, Vec<Param<'_>>)> = Vec::new();
            if let Some(ttl) = &ttl {
                extras.push((sql::SET_TTL, vec![(ttl, Type::TEXT)]));
            }
            if let Some(label) = &label {
                extras.push((sql::SET_LABEL, vec![(label, Type::TEXT)]));
            }
            if self.options.fencing {
                extras.push((
                    fencing::NEXT_TOKEN,
                    vec![
                        (&space, Type::INT2),
                        (&token_key, Type::INT8),
                        (&classid, Type::OID),
                        (&objid, Type::OID),
                        (&objsubid, Type::INT2),
                    ],
                ));
            }
            let mut prepared_extras = Vec::with_capacity(extras.len());
            for (sql, params) in &extras {
                // Session settings are sent once per connection (a dedicated one is
                // closed after the lock): unnamed, never a separate Parse round trip.
                let p = match *sql == fencing::NEXT_TOKEN {
                    true => conn
                        .exec()
                        .prepare(sql)
                        .await
                        .map_err(|e| extra_error(self.error(e), sql))?,
                    false => Prepared::Typed(sql),
                };
                prepared_extras.push((p, params.as_slice()));
            }
            let mut pending = Pending::new(conn, self.id.clone(), self.mode, settings);
            let (result, extra_results) = pending.send(&prepared, &params, &prepared_extras).await;
            let conn = pending.disarm();
            span.record("wait_us", started.elapsed().as_micros() as u64);
            let (granted, failure) = match result {
                Ok(rows) => {
                    let granted =
                        attempt == Attempt::Wait || rows.first().is_some_and(|r| r.get(0));
                    (granted, None)
                }
                Err(e) => match self.error(e) {
                    err if err.is_connection_lost() => {
                        conn.discard();
                        return Err(err);
                    }
                    err => (false, Some(err)),
                },
            };
            span.record("acquired", granted);
            if !granted {
                // A failed wait may have been granted just as it failed (DESIGN §3),
                // and changed settings go back.
                if failure.is_some() || settings.changed() {
                    if let Err(e) = self.undo(&conn, settings, false).await {
                        tracing::warn!(error = %e, "pglock: cleanup after a failed attempt failed");
                        conn.discard();
                        return Err(failure.unwrap_or_else(|| self.error(e)));
                    }
                }
                if let Some(err) = failure.filter(|err| !err.is_not_acquired()) {
                    return Err(err);
                }
                let holder = holder(want_holder, conn.exec(), key, self.mode).await;
                return Ok(Outcome::Busy(holder));
            }
            let mut fencing_token = None;
            for ((sql, _), result) in extras.iter().zip(extra_results) {
                match result {
                    Ok(rows) if *sql == fencing::NEXT_TOKEN => {
                        fencing_token = rows.first().map(|r| r.get(0))
                    }
                    Ok(_) => {}
                    Err(e) => {
                        // The lock is held but a promise that came with it is not:
                        // give the lock back and say why.
                        let err = extra_error(self.error(e), sql);
                        if self.undo(&conn, settings, true).await.is_err() {
                            conn.discard();
                        }
                        return Err(err);
                    }
                }
            }
            tracing::debug!("pglock: acquired");
            let lease = self.options.lease.map(|ttl| {
                let session = match &conn {
                    Conn::Session(s) | Conn::Dedicated(s) => Some(s.clone()),
                    Conn::Pooled(_) => None,
                };
                Lease::start(session, ttl, self.options.auto_renew)
            });
            let held = Held {
                check_every: self.options.check_every.unwrap_or(DEFAULT_CHECK_EVERY),
                lease,
                fencing_token,
                label: self.options.label.clone(),
                settings,
            };
            Ok(Outcome::Acquired(Guard::new(
                conn,
                self.id.clone(),
                self.mode,
                started,
                held,
            )))
        }
        .instrument(span_handle)
        .await
    }

    /// Checks a connection out of `source`; an automatically renewed lease takes
    /// it out of its pool for good (its renewing task needs a handle of its own).
    async fn checkout<S: Source + ?Sized>(&self, source: &S) -> Result<(Conn, Settings), Error> {
        let dedicate = self.options.lease.is_some() && self.options.auto_renew;
        let conn = source.checkout().await?;
        let conn = match conn {
            Conn::Pooled(object) if dedicate => Conn::Dedicated(Session::from_pooled(*object)),
            conn => conn,
        };
        // Settings changed on a connection that outlives the lock are reset
        // afterwards; a dedicated one is closed instead.
        let shared = !matches!(conn, Conn::Dedicated(_));
        let settings = Settings {
            reset_ttl: shared && self.options.lease.is_some(),
            reset_label: shared && self.options.label.is_some(),
        };
        Ok((conn, settings))
    }

    /// After an attempt that did not end with a held lock: release what the server
    /// may have granted (`held`: it did) and put back changed settings.
    async fn undo(
        &self,
        conn: &Conn,
        settings: Settings,
        held: bool,
    ) -> Result<(), tokio_postgres::Error> {
        let key = self.id.lock_key();
        if held {
            conn.exec()
                .run(sql::unlock(self.mode, is_pair(key)), &key_params(&key))
                .await?;
        } else {
            unlock_if_held(conn.exec(), key, self.mode, false).await?;
        }
        settings.reset(conn.exec()).await
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
/// Answers whether it was held. `typed` sends an unnamed statement, queued on the
/// first poll (for drops).
pub(crate) async fn unlock_if_held(
    exec: Exec<'_>,
    key: LockKey,
    mode: Mode,
    typed: bool,
) -> Result<bool, tokio_postgres::Error> {
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
    exec.query(&prepared, &params)
        .await
        .map(|rows| !rows.is_empty())
}

/// A session holding the key in a mode that conflicts with `mode`, if any.
/// Only asked on the failure path, and only where the answer is reported
/// (`wanted`).
pub(crate) async fn holder(
    wanted: bool,
    exec: Exec<'_>,
    key: LockKey,
    mode: Mode,
) -> Option<Holder> {
    if !wanted {
        return None;
    }
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
        Ok(Conn::Pooled(Box::new(
            self.get().await.map_err(Error::pool)?,
        )))
    }
}

/// The error for a statement pipelined behind a lock that failed.
fn extra_error(err: Error, sql: &str) -> Error {
    match err.code() {
        Some(c) if *c == SqlState::UNDEFINED_TABLE && sql == fencing::NEXT_TOKEN => Error::misuse(
            "fencing tokens need the pglock_fencing table: call pglock::install_fencing(&client) \
             once (or run pglock::FENCING_SCHEMA)",
        )
        .with_source(err),
        Some(c) if *c == SqlState::UNDEFINED_OBJECT && sql == sql::SET_TTL => Error::misuse(
            "leases need PostgreSQL 14 or later (idle_session_timeout); this server cannot \
             expire a lease, so none was taken",
        )
        .with_source(err),
        _ => err,
    }
}

/// Session settings an acquisition changed on a session it does not own.
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

impl private::Sealed for Session {}
impl Source for Session {
    async fn checkout(&self) -> Result<Conn, Error> {
        Ok(Conn::Session(self.clone()))
    }
}
