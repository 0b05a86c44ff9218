//! Transaction-level locks: taken inside the caller's transaction, held until it
//! ends.

use std::time::Instant;

use std::future::Future;

use futures_util::future::join;
use tokio_postgres::types::Type;
use tracing::Instrument;

use crate::conn::Exec;
use crate::error::Error;
use crate::acquire::{holder, Outcome, Wait};
use crate::lock::Advisory;
use crate::sql::{self, Attempt, Scope};

/// A transaction-level advisory lock to acquire: built by
/// [`Advisory::xact`](crate::Advisory::xact).
///
/// The lock is taken inside a transaction you pass in and held until that
/// transaction commits or rolls back; there is no guard and no unlock. Because
/// only a transaction is accepted, a transaction-level lock outside a transaction
/// cannot be written.
///
/// ```no_run
/// # async fn demo(client: &mut tokio_postgres::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let tx = client.transaction().await?;
/// pglock::advisory("account:42").xact().acquire_in(&tx).await?;
/// // … held until commit or rollback …
/// tx.commit().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[must_use = "a lock builder does nothing until you acquire it"]
pub struct XactAdvisory {
    pub(crate) lock: Advisory,
}

mod private {
    pub trait Sealed {}
}

/// A transaction that transaction-level locks can be taken in:
/// [`tokio_postgres::Transaction`] or [`deadpool_postgres::Transaction`] (whose
/// statement cache pglock then uses).
pub trait InTransaction: private::Sealed + Sync {
    #[doc(hidden)]
    fn exec(&self) -> Exec<'_>;
}

impl private::Sealed for tokio_postgres::Transaction<'_> {}
impl InTransaction for tokio_postgres::Transaction<'_> {
    fn exec(&self) -> Exec<'_> {
        Exec::Tx(self)
    }
}

impl private::Sealed for deadpool_postgres::Transaction<'_> {}
impl InTransaction for deadpool_postgres::Transaction<'_> {
    fn exec(&self) -> Exec<'_> {
        Exec::PooledTx(self)
    }
}

impl XactAdvisory {
    /// Makes the lock shared.
    pub fn shared(mut self) -> XactAdvisory {
        self.lock = self.lock.shared();
        self
    }

    /// Sets how long to wait; see [`Advisory::timeout`].
    pub fn timeout(mut self, timeout: std::time::Duration) -> XactAdvisory {
        self.lock = self.lock.timeout(timeout);
        self
    }

    /// The session-level description of the same lock.
    pub fn session(&self) -> &Advisory {
        &self.lock
    }

    /// Takes the lock in `tx`, waiting as the timeout says (without one: until
    /// granted, whatever the transaction's `lock_timeout`).
    ///
    /// Costs one round trip when the lock is free: a `pg_try_advisory_xact_lock`.
    /// When it is busy and the call may wait, one more round trip waits on the
    /// server under a savepoint (`SAVEPOINT` and the wait, pipelined), so that a
    /// timeout — or a deadlock — leaves `tx` usable and its `lock_timeout` as it
    /// was; a last round trip then releases the savepoint (or, after a failed wait,
    /// rolls back to it). The try never jumps the queue: PostgreSQL refuses it while
    /// others wait for a conflicting lock.
    ///
    /// # Errors
    /// As [`Advisory::acquire`].
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future while it waits queues, behind the wait, a
    /// rollback to pglock's savepoint, so that once the wait ends — granted or not —
    /// `tx` is usable and as it was before the call, without the lock. The wait
    /// itself is not interrupted (a cancel request could hit your next statement
    /// instead): `tx`'s next statement runs when it ends, so give waits you may
    /// abandon a timeout. Dropped during the first try, the lock may be held; it
    /// ends with the transaction like any transaction lock.
    pub async fn acquire_in<T: InTransaction + ?Sized>(&self, tx: &T) -> Result<(), Error> {
        let wait = Wait::of(self.lock.timeout);
        self.lock_in(tx.exec(), wait, true)
            .await?
            .into_result(&self.lock.id, wait)
    }

    /// Takes the lock in `tx` if it is free (or frees up within the timeout, when
    /// one is set): `Ok(false)` when busy, and `tx` stays usable.
    ///
    /// # Cancel safety
    /// As [`acquire_in`](XactAdvisory::acquire_in); with no timeout set there is no
    /// wait, and a dropped future leaves at most a held lock that ends with the
    /// transaction.
    pub async fn try_acquire_in<T: InTransaction + ?Sized>(&self, tx: &T) -> Result<bool, Error> {
        let wait = Wait::of(Some(self.lock.timeout.unwrap_or_default()));
        Ok(matches!(
            self.lock_in(tx.exec(), wait, false).await?,
            Outcome::Acquired(())
        ))
    }

    async fn lock_in(
        &self,
        exec: Exec<'_>,
        wait: Wait,
        want_holder: bool,
    ) -> Result<Outcome<()>, Error> {
        let lock = &self.lock;
        lock.id.validate()?;
        let lock_timeout = wait.lock_timeout()?;
        let span = tracing::debug_span!(
            "pglock.acquire",
            lock = %lock.id,
            mode = %lock.mode,
            scope = "xact",
            timeout = ?lock.timeout,
            wait_us = tracing::field::Empty,
        );
        let span_handle = span.clone();
        async move {
            let started = Instant::now();
            let key = lock.id.lock_key();
            let error = |e| Error::db(e).with_lock(&lock.id);
            let pair = key.is_pair();
            // First a try: the whole cost when the lock is free (the common case),
            // and cheap to plan where statements cannot be cached.
            let try_lock = exec.prepare(sql::lock(Scope::Xact, lock.mode, Attempt::Try, pair));
            let try_lock = try_lock.await.map_err(error)?;
            let key_only = key.params();
            let free = exec.query(&try_lock, &key_only).await.map_err(error)?;
            let result = if free.first().is_some_and(|r| r.get(0)) {
                Ok(true)
            } else if matches!(wait, Wait::Zero) {
                Ok(false)
            } else {
                // Busy, and allowed to wait: wait under a savepoint so that a timeout
                // or a deadlock leaves the transaction usable and its lock_timeout
                // as it was. The savepoint and the wait are pipelined; the savepoint
                // is released only once the wait has succeeded, so that a future
                // dropped during the wait can always roll back to it.
                let wait_lock =
                    exec.prepare(sql::lock(Scope::Xact, lock.mode, Attempt::Wait, pair));
                let wait_lock = wait_lock.await.map_err(error)?;
                let savepoint = exec.prepare(sql::SAVEPOINT).await.map_err(error)?;
                let release = exec.prepare(sql::RELEASE_SAVEPOINT).await.map_err(error)?;
                let mut params = key.params();
                params.push((&lock_timeout, Type::TEXT));
                let mut armed = RestoreOnDrop(Some(exec));
                let (begun, locked) =
                    join(exec.query(&savepoint, &[]), exec.query(&wait_lock, &params)).await;
                armed.0 = None;
                begun.map_err(error)?;
                match locked {
                    Ok(_) => exec.query(&release, &[]).await.map(|_| true),
                    Err(e) => {
                        exec.batch(sql::ROLLBACK_SAVEPOINT).await.map_err(error)?;
                        Err(e)
                    }
                }
            };
            span.record("wait_us", started.elapsed().as_micros() as u64);
            match result.map_err(error) {
                Ok(true) => return Ok(Outcome::Acquired(())),
                Ok(false) => {}
                Err(err) if err.is_not_acquired() => {}
                Err(err) => return Err(err),
            }
            Ok(Outcome::Busy(
                holder(want_holder, exec, key, lock.mode).await,
            ))
        }
        .instrument(span_handle)
        .await
    }
}

/// Rolls the caller's transaction back to pglock's savepoint if dropped while
/// armed, that is while the savepoint and the wait are on the wire: the rollback
/// is queued behind the wait at once, and whether the wait ends granted (the lock
/// is given back) or failed (the error is cleared), the transaction is then as it
/// was before the call.
struct RestoreOnDrop<'a>(Option<Exec<'a>>);

impl Drop for RestoreOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(exec) = self.0.take() {
            // Queued on the first poll; what is queued reaches the server even
            // though the future is dropped right after.
            let mut restore = std::pin::pin!(exec.batch(sql::ROLLBACK_SAVEPOINT));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            let _ = restore.as_mut().poll(&mut cx);
        }
    }
}
