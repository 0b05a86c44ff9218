//! [`BorrowedGuard`]: a session lock held on a connection the caller lent.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::Instant;

use crate::acquire::Granted;
use crate::conn::{Borrowable, Prepared};
use crate::error::Error;
use crate::key::{LockId, LockKey, Mode};
use crate::lock::Advisory;
use crate::sql;

/// A session lock held on a connection you lent it
/// ([`Advisory::acquire_on`]): it dereferences to that connection, so you go on
/// using it — `guard.query(…)`, `guard.transaction()` — while the lock is held.
///
/// Release it with [`release`](BorrowedGuard::release), or drop it: dropping
/// queues the unlock on the connection at once, ahead of anything you send on it
/// afterwards. If the unlock cannot run (you left an aborted transaction open on
/// the connection: commit or roll back your transactions before the guard goes),
/// `release` says so; a dropped guard cannot, and the lock then lives until the
/// connection's session ends.
#[must_use = "dropping a guard releases its lock at once: bind it, `let _guard = …`, \
              for as long as the lock must be held"]
pub struct BorrowedGuard<'c, C: Borrowable + ?Sized> {
    conn: Option<&'c mut C>,
    id: LockId,
    mode: Mode,
    fencing_token: Option<i64>,
    acquired_at: Instant,
}

impl<'c, C: Borrowable + ?Sized> BorrowedGuard<'c, C> {
    pub(crate) fn new(conn: &'c mut C, lock: &Advisory, granted: Granted) -> Self {
        BorrowedGuard {
            conn: Some(conn),
            id: lock.id.clone(),
            mode: lock.mode,
            fencing_token: granted.fencing_token,
            acquired_at: Instant::now(),
        }
    }

    /// The lock's name or key.
    pub fn id(&self) -> &LockId {
        &self.id
    }

    /// The key PostgreSQL holds.
    pub fn key(&self) -> LockKey {
        self.id.lock_key()
    }

    /// Exclusive or shared.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The fencing token, for a lock taken with [`fencing`](Advisory::fencing).
    pub fn fencing_token(&self) -> Option<i64> {
        self.fencing_token
    }

    /// When the lock was granted (monotonic clock).
    pub fn acquired_at(&self) -> Instant {
        self.acquired_at
    }

    /// Releases the lock, in one round trip, and gives the connection back.
    ///
    /// # Errors
    /// [`is_lost`](Error::is_lost) when the lock was no longer held; a database
    /// error when the unlock could not run (an aborted transaction left open on
    /// the connection): the lock is then still held — end the transaction and
    /// release it with `pg_advisory_unlock`, or close the connection.
    ///
    /// # Cancel safety
    /// Cancel-safe: the unlock is queued on the first poll; dropped before that,
    /// the guard's drop queues it.
    pub async fn release(mut self) -> Result<(), Error> {
        let conn = self.conn.take().expect("a guard borrows its connection");
        let key = self.key();
        let statement = Prepared::Typed(sql::unlock(self.mode, key.is_pair()));
        match conn.exec().query(&statement, &key.params()).await {
            Ok(rows) if rows.first().is_some_and(|r| r.get::<_, bool>(0)) => Ok(()),
            Ok(_) => Err(Error::lost(&self.id)),
            Err(e) => {
                let err = Error::db(e).with_lock(&self.id);
                Err(match err.is_connection_lost() {
                    true => err.into_lost(),
                    false => err.context(
                        "the unlock could not run and the lock is still held by this \
                         connection: end its transaction, then unlock or close it",
                    ),
                })
            }
        }
    }
}

impl<C: Borrowable + ?Sized> Deref for BorrowedGuard<'_, C> {
    type Target = C;
    fn deref(&self) -> &C {
        self.conn.as_deref().expect("a guard borrows its connection")
    }
}

impl<C: Borrowable + ?Sized> DerefMut for BorrowedGuard<'_, C> {
    fn deref_mut(&mut self) -> &mut C {
        self.conn.as_deref_mut().expect("a guard borrows its connection")
    }
}

impl<C: Borrowable + ?Sized> Drop for BorrowedGuard<'_, C> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        let key = self.key();
        let statement = Prepared::Typed(sql::unlock(self.mode, key.is_pair()));
        let params = key.params();
        // Queued on the first poll; the answer is not awaited, since the
        // connection is the caller's again once this returns.
        let mut unlock = std::pin::pin!(conn.exec().query(&statement, &params));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let _ = std::future::Future::poll(unlock.as_mut(), &mut cx);
    }
}

impl<C: Borrowable + ?Sized> fmt::Debug for BorrowedGuard<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BorrowedGuard")
            .field("id", &self.id)
            .field("mode", &self.mode)
            .field("held_for", &self.acquired_at.elapsed())
            .finish_non_exhaustive()
    }
}
