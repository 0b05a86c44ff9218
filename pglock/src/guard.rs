//! [`Guard`]: a held session lock, and what happens when one is dropped.

use std::fmt;
use std::future::Future;
use std::task::{Context, Waker};
use std::time::{Duration, Instant, SystemTime};

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Row};

use crate::conn::{self, Conn, Param, Prepared};
use crate::error::Error;
use crate::key::{LockId, LockKey};
use crate::lock::{is_pair, key_params, unlock_if_held, Mode};
use crate::sql;

/// A held session-level advisory lock.
///
/// Release it with [`release`](Guard::release) to learn whether that worked, or drop
/// it: dropping queues the unlock on the lock's connection at once, without
/// blocking, and a background task (on the current tokio runtime) sees it through.
/// A pooled connection goes back to its pool only after the unlock has run; if the
/// unlock fails, the connection is closed instead, which ends its session and so
/// frees its locks. Either way the lock does not outlive the guard.
///
/// The guard is `Send + 'static`: move it into a spawned task if the work lives
/// there.
#[must_use = "dropping a guard releases its lock at once"]
pub struct Guard {
    conn: Option<Conn>,
    id: LockId,
    mode: Mode,
    acquired_at: Instant,
    acquired_system: SystemTime,
    wait: Duration,
    unlock_sent: bool,
}

impl Guard {
    pub(crate) fn new(conn: Conn, id: LockId, mode: Mode, started: Instant) -> Guard {
        let acquired_at = Instant::now();
        Guard {
            conn: Some(conn),
            id,
            mode,
            acquired_at,
            acquired_system: SystemTime::now(),
            wait: acquired_at - started,
            unlock_sent: false,
        }
    }

    /// The lock's name or key.
    pub fn id(&self) -> &LockId {
        &self.id
    }

    /// The lock's name, if it was given one.
    pub fn name(&self) -> Option<&str> {
        self.id.lock_name()
    }

    /// The key PostgreSQL holds.
    pub fn key(&self) -> LockKey {
        self.id.lock_key()
    }

    /// Exclusive or shared.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// When the lock was granted (monotonic clock).
    pub fn acquired_at(&self) -> Instant {
        self.acquired_at
    }

    /// When the lock was granted (wall clock).
    pub fn acquired_at_system(&self) -> SystemTime {
        self.acquired_system
    }

    /// How long acquiring took, from the call to the grant (connection checkout
    /// included).
    pub fn wait_time(&self) -> Duration {
        self.wait
    }

    /// The connection holding the lock, for your own queries in the same session.
    /// Do not unlock through it; use [`release`](Guard::release).
    pub fn client(&self) -> &Client {
        self.conn().client()
    }

    fn conn(&self) -> &Conn {
        self.conn
            .as_ref()
            .expect("a guard owns its connection until it is released")
    }

    /// Releases the lock, in one round trip.
    ///
    /// # Errors
    /// [`is_lost`](Error::is_lost) when the lock was no longer held (its session
    /// ended, was terminated, or `pg_advisory_unlock_all()` ran on it): whatever it
    /// protected may have overlapped with another holder. Never `Ok` for a lock
    /// that was not held.
    ///
    /// # Cancel safety
    /// Cancel-safe. Dropped before the unlock is sent, the guard's drop releases
    /// the lock; dropped after, the unlock is already queued on the connection ahead
    /// of anything else that will run on it.
    pub async fn release(mut self) -> Result<(), Error> {
        let span = tracing::debug_span!("pglock.release", lock = %self.id, mode = %self.mode,
            held_us = self.acquired_at.elapsed().as_micros() as u64);
        let _enter = span.enter();
        let key = self.key();
        let statement = sql::unlock(self.mode, is_pair(key));
        let prepared = match self.conn().exec().prepare(statement).await {
            Ok(p) => p,
            Err(e) => return Err(self.release_error(e)),
        };
        let params = key_params(&key);
        self.unlock_sent = true;
        let result = self.conn().exec().query(&prepared, &params).await;
        let conn = self
            .conn
            .take()
            .expect("a guard owns its connection until it is released");
        match result {
            Ok(rows) if unlocked(&rows) => {
                tracing::debug!("pglock: released");
                Ok(())
            }
            Ok(_) => Err(Error::lost(&self.id)),
            Err(e) => {
                conn.discard();
                Err(self.release_error(e))
            }
        }
    }

    fn release_error(&self, e: tokio_postgres::Error) -> Error {
        let err = Error::db(e).with_lock(&self.id);
        if err.is_connection_lost() {
            err.into_lost()
        } else {
            err
        }
    }
}

fn unlocked(rows: &[Row]) -> bool {
    rows.first().is_some_and(|r| r.get::<_, bool>(0))
}

impl Drop for Guard {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if self.unlock_sent {
            // `release` was cancelled after queueing its unlock.
            return;
        }
        let key = self.key();
        let mode = self.mode;
        let id = self.id.clone();
        finish_detached(async move {
            let statement = sql::unlock(mode, is_pair(key));
            let params = key_params(&key);
            // Typed, not prepared: queued on the very first poll, below.
            match conn
                .exec()
                .query(&Prepared::Typed(statement), &params)
                .await
            {
                Ok(rows) if unlocked(&rows) => {
                    tracing::debug!(lock = %id, "pglock: released on drop")
                }
                Ok(_) => {
                    tracing::warn!(lock = %id, "pglock: lock was already lost when its guard was dropped")
                }
                Err(e) => {
                    tracing::warn!(lock = %id, error = %e, "pglock: unlock on drop failed; closing the connection");
                    conn.discard();
                }
            }
        });
    }
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("id", &self.id)
            .field("mode", &self.mode)
            .field("acquired_at", &self.acquired_system)
            .field("held_for", &self.acquired_at.elapsed())
            .finish_non_exhaustive()
    }
}

/// Polls `work` once here — which queues its first statement on the connection
/// before this returns — and hands the rest to the current tokio runtime. Without
/// a runtime, what was queued still reaches the server.
pub(crate) fn finish_detached(work: impl Future<Output = ()> + Send + 'static) {
    let mut work = Box::pin(work);
    let mut cx = Context::from_waker(Waker::noop());
    if work.as_mut().poll(&mut cx).is_ready() {
        return;
    }
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        drop(handle.spawn(work));
    }
}

/// An acquisition whose lock statement is on the wire. If it is dropped there (the
/// acquire future was cancelled), it cancels the wait and releases the lock if the
/// server granted it anyway, before the connection is used again.
pub(crate) struct Pending {
    conn: Option<Conn>,
    id: LockId,
    mode: Mode,
    sent: bool,
}

impl Pending {
    pub(crate) fn new(conn: Conn, id: LockId, mode: Mode) -> Pending {
        Pending {
            conn: Some(conn),
            id,
            mode,
            sent: false,
        }
    }

    /// Sends the lock statement and waits for its answer.
    pub(crate) async fn send(
        &mut self,
        prepared: &Prepared,
        params: &[Param<'_>],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        // The statement is queued on the first poll of the query future, in the
        // same poll as this flag is set: a drop after this line has sent it.
        self.sent = true;
        let exec = self
            .conn
            .as_ref()
            .expect("pending owns its connection")
            .exec();
        exec.query(prepared, params).await
    }

    pub(crate) fn disarm(mut self) -> Conn {
        self.conn.take().expect("pending owns its connection")
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if !self.sent {
            return;
        }
        let (id, mode) = (self.id.clone(), self.mode);
        tracing::debug!(lock = %id, "pglock: acquire cancelled while waiting; cleaning up");
        if tokio::runtime::Handle::try_current().is_err() {
            // No runtime to send a cancel request from: closing a pooled connection
            // ends its session (freeing anything granted); a session is asked to
            // unlock once the wait is over.
            match conn {
                Conn::Pooled(_) => conn.discard(),
                Conn::Session(_) => finish_detached(async move {
                    let _ = unlock_if_held(conn.exec(), id.lock_key(), mode, true).await;
                }),
            }
            return;
        }
        let token = conn.exec().cancel_token();
        finish_detached(async move {
            conn::cancel(token).await;
            // The cancel may land on the cleanup instead of the wait, if the wait
            // ended just before: then run the cleanup again.
            for _ in 0..3 {
                match unlock_if_held(conn.exec(), id.lock_key(), mode, false).await {
                    Ok(()) => return,
                    Err(e) if e.code() == Some(&SqlState::QUERY_CANCELED) => continue,
                    Err(e) => {
                        tracing::warn!(lock = %id, error = %e, "pglock: cleanup after cancel failed; closing the connection");
                        break;
                    }
                }
            }
            conn.discard();
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn guard_is_send_and_static() {
        fn is_send<T: Send + Sync + 'static>() {}
        is_send::<super::Guard>();
    }
}
