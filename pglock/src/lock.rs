//! The lock builder returned by [`advisory()`] and session-level acquisition.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::acquire::Wait;
use crate::borrowed::BorrowedGuard;
use crate::conn::source::private::Sealed;
use crate::conn::{Borrowable, Source};
use crate::error::Error;
use crate::guard::{Guard, Safety};
use crate::keepalive::Keepalive;
use crate::key::{LockId, LockKey, Mode};
use crate::xact::XactAdvisory;

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

/// The production-safety options of a session lock: loss checks, leases,
/// fencing tokens, labels.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Options {
    pub(crate) check_every: Option<Duration>,
    pub(crate) lease: Option<Duration>,
    pub(crate) auto_renew: bool,
    pub(crate) fencing: bool,
    pub(crate) label: Option<Arc<str>>,
    pub(crate) pooler_safe: bool,
    pub(crate) safety: Safety,
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
    /// (default 5 s, or half the lock's local deadline span when that is shorter).
    /// A closed connection is noticed at once regardless. Each answer also
    /// confirms contact with the server, which moves the lock's local deadline
    /// (see the crate docs, "Partitions"): where that deadline is known,
    /// acquiring refuses ([`is_invalid_argument`](Error::is_invalid_argument)) an
    /// interval longer than half of it.
    ///
    /// At most 24 h (longer is an invalid-argument error at acquisition).
    pub fn check_every(mut self, every: Duration) -> Advisory {
        self.options.check_every = Some(every.max(Duration::from_millis(10)));
        self
    }

    /// States the keepalive settings of the connections this lock is taken on —
    /// a pool whose `tokio_postgres::Config` went through
    /// [`Keepalive::configure`] or [`configure_keepalives`](crate::configure_keepalives)
    /// — so that the guard gets a local deadline from them: it reports the lock
    /// lost a safety margin before the server could free it over a silent
    /// connection. pglock cannot read these settings from a pooled connection;
    /// a [`Session`](crate::Session) made by [`connect`](crate::Session::connect)
    /// knows its own. Stating settings the connections do not have voids the
    /// guarantee.
    pub fn keepalive(mut self, keepalive: Keepalive) -> Advisory {
        self.options.safety.keepalive = Some(keepalive);
        self
    }

    /// How long before the server could free the lock the guard reports it lost
    /// (default: a tenth of the server bound, 2.5 s with the default keepalives,
    /// 3 s for a 30 s lease). It must cover the time an answer spends on its way
    /// from the server and the time the holder needs to stop acting on the lock;
    /// see the crate docs, "Partitions". A margin that leaves no deadline is
    /// refused when acquiring ([`is_invalid_argument`](Error::is_invalid_argument)).
    pub fn safety_margin(mut self, margin: Duration) -> Advisory {
        self.options.safety.margin = Some(margin);
        self
    }

    /// Refuses, before anything is sent, settings under which a healthy holder
    /// would lose its lock to its own deadline.
    fn check_safety<S: Source + ?Sized>(&self, source: &S) -> Result<(), Error> {
        self.options.safety.check(
            &self.id,
            Sealed::keepalive(source),
            self.options.lease,
            self.options.auto_renew,
            self.options.check_every,
        )
    }

    /// Takes the lock with a lease of `ttl`: if the holder goes silent for `ttl`
    /// (no renewal, no query on the lock's connection), the **server** ends the
    /// lock's session and the lock is freed. Renew with [`Guard::renew`], or let
    /// [`auto_renew`](Advisory::auto_renew) do it while the process is healthy.
    ///
    /// At least [`MIN_LEASE`](crate::MIN_LEASE) (100 ms): shorter is an
    /// invalid-argument error at acquisition, since no process could renew it
    /// reliably.
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
    /// than every token issued before for this lock, across restarts and
    /// failovers — even when the last tokens of the old primary never reached the
    /// promoted standby: the token carries the server's timeline in its high bits
    /// ([`fencing_token_parts`](crate::fencing_token_parts)). Needs the
    /// table that [`install_fencing`](crate::install_fencing) creates. The token
    /// is [`Guard::fencing_token`]. The token is issued by a statement pipelined
    /// behind the lock statement — no extra round trip — and only when the lock was
    /// granted.
    ///
    /// Exclusive locks only: with [`shared`](Advisory::shared) it is a
    /// [misuse](Error::is_misuse) error, since shared holders would carry tokens
    /// that storage could not tell apart from a stale holder's.
    pub fn fencing(mut self) -> Advisory {
        self.options.fencing = true;
        self
    }

    /// Labels the holder: the lock's session shows `label` as its
    /// `application_name` while it holds the lock, so [`status`](crate::status),
    /// `pg_stat_activity` and the not-acquired errors of others name it. The
    /// session's `application_name` is reset (to the connection's own) by a
    /// statement pipelined with the unlock.
    ///
    /// At most 63 bytes of printable ASCII (what PostgreSQL keeps and shows of an
    /// `application_name`); anything else is an invalid-argument error at
    /// acquisition, before anything is sent.
    pub fn label(mut self, label: impl Into<Arc<str>>) -> Advisory {
        self.options.label = Some(label.into());
        self
    }

    /// Holds the lock in a transaction the guard keeps open on its connection,
    /// instead of in the server session: the mode that works through a
    /// transaction-pooling proxy (PgBouncer's `pool_mode = transaction`, RDS Proxy,
    /// Supabase's pooler), which pins a client to one server session only for the
    /// length of a transaction.
    ///
    /// The guard is a [`Guard`] like any other — release, drop, loss, timeouts and
    /// cancellation behave the same — but its connection has a transaction open
    /// (`BEGIN` pipelined with `pg_advisory_xact_lock`) until the guard ends it:
    /// `COMMIT` on [`release`](Guard::release), `ROLLBACK` when dropped. Do not
    /// commit or roll back through [`Guard::client`]; queries you run there are
    /// part of that transaction. An open transaction has costs: the server's
    /// `idle_in_transaction_session_timeout`, when set, ends a holder that stays
    /// idle that long (its lock is then lost, as `lost()` reports), and a long
    /// open transaction holds back vacuum's horizon (dead rows are not cleaned up
    /// while it is open) — keep such locks short.
    ///
    /// Through a pool only (a shared [`Session`](crate::Session) would put every
    /// other guard's statements into this transaction), and without `lease`,
    /// `label` or `fencing` (a [misuse](Error::is_misuse) error).
    pub fn pooler_safe(mut self) -> Advisory {
        self.options.pooler_safe = true;
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
    /// [`Session`](crate::Session). Another guard of the same source holding the
    /// lock is waited for in the process first (its ledger; see the crate docs),
    /// without taking a connection; then the server is asked, in one round trip.
    ///
    /// # Errors
    /// [`is_not_acquired`](Error::is_not_acquired) when the lock stayed busy for the
    /// timeout (the error names the lock, the timeout and, when the server could
    /// tell, the holder's pid and application name — or says that another guard of
    /// this process holds it); [`is_deadlock`](Error::is_deadlock) from the server's
    /// deadlock detector, or at once when this task would wait without a timeout for
    /// a lock it holds itself through the same source; [`is_misuse`](Error::is_misuse)
    /// for a `lease` or `label` on a shared session; [`is_standby`](Error::is_standby)
    /// when the server is a standby (nothing is taken there: point the source at the
    /// primary); [`is_transaction_pooler`](Error::is_transaction_pooler) through a
    /// transaction-pooling proxy; lock table full, connection lost, pool and
    /// invalid-argument errors as their kinds say (among them partition-safety
    /// settings that could not keep a healthy lock: see
    /// [`check_every`](Advisory::check_every), [`safety_margin`](Advisory::safety_margin)).
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
    /// - From a [`Session`](crate::Session): no cancel request is sent, since on a shared connection
    ///   it could interrupt another task's statement. Instead a release-if-granted is
    ///   queued behind the wait at once, and runs the moment the wait ends (granted
    ///   or timed out). Until then the session is busy, as it is during any wait:
    ///   give waits on a shared session a timeout.
    pub async fn acquire<S: Source + ?Sized>(&self, source: &S) -> Result<Guard, Error> {
        self.check_safety(source)?;
        let wait = Wait::of(self.timeout);
        self.lock_session(source, wait, true)
            .await?
            .into_result(&self.id, wait)
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
        self.check_safety(source)?;
        let wait = Wait::of(Some(self.timeout.unwrap_or(Duration::ZERO)));
        Ok(self.lock_session(source, wait, false).await?.acquired())
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

    /// Takes the lock on a connection you already hold, waiting as the
    /// [`timeout`](Advisory::timeout) says: the guard borrows the connection, and
    /// you keep using it through the guard (it dereferences to it), transactions
    /// included. One connection then serves both the lock and your queries.
    ///
    /// ```no_run
    /// # async fn demo(pool: deadpool_postgres::Pool) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut client = pool.get().await?;
    /// let mut guard = pglock::advisory("account:42").acquire_on(&mut client).await?;
    /// let tx = guard.transaction().await?; // on the locked connection
    /// tx.execute("UPDATE accounts SET balance = balance - 10 WHERE id = 42", &[]).await?;
    /// tx.commit().await?;
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// No lease, label or automatic renewal here (they need a connection pglock
    /// controls); fencing tokens work. Nothing excludes a second guard in the
    /// process except the server: two borrowed connections are two sessions.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropped while it waits, a release-if-granted is queued behind
    /// the wait (no cancel request: it could hit your next statement), so the
    /// connection is yours again, without the lock, once the wait ends.
    pub async fn acquire_on<'c, C: Borrowable + ?Sized>(
        &self,
        conn: &'c mut C,
    ) -> Result<BorrowedGuard<'c, C>, Error> {
        let wait = Wait::of(self.timeout);
        let granted = self
            .lock_borrowed(conn.exec(), wait, true)
            .await?
            .into_result(&self.id, wait)?;
        Ok(BorrowedGuard::new(conn, self, granted))
    }

    /// [`try_acquire`](Advisory::try_acquire) on a connection you already hold;
    /// see [`acquire_on`](Advisory::acquire_on).
    ///
    /// # Cancel safety
    /// As [`acquire_on`](Advisory::acquire_on).
    pub async fn try_acquire_on<'c, C: Borrowable + ?Sized>(
        &self,
        conn: &'c mut C,
    ) -> Result<Option<BorrowedGuard<'c, C>>, Error> {
        let wait = Wait::of(Some(self.timeout.unwrap_or(Duration::ZERO)));
        let granted = self.lock_borrowed(conn.exec(), wait, false).await?;
        Ok(granted
            .acquired()
            .map(|granted| BorrowedGuard::new(conn, self, granted)))
    }
}
