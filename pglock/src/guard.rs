//! [`Guard`]: a held session lock, and what happens when one is dropped.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::{join, join_all};
use tokio_postgres::{Client, Row};
use tracing::Instrument;

use crate::conn::{self, Conn, Exec, Param, Prepared};
use crate::error::Error;
use crate::key::{LockId, LockKey};
use crate::lease::Lease;
use crate::lock::{is_pair, key_params, unlock_if_held, Mode, Settings};
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
    acquisition_id: u128,
    held: Held,
}

/// What came with an acquisition besides the lock itself.
pub(crate) struct Held {
    pub(crate) check_every: Duration,
    pub(crate) lease: Option<Lease>,
    pub(crate) fencing_token: Option<i64>,
    pub(crate) label: Option<Arc<str>>,
    pub(crate) settings: Settings,
}

impl Guard {
    pub(crate) fn new(conn: Conn, id: LockId, mode: Mode, started: Instant, held: Held) -> Guard {
        let acquired_at = Instant::now();
        Guard {
            conn: Some(conn),
            id,
            mode,
            acquired_at,
            acquired_system: SystemTime::now(),
            wait: acquired_at - started,
            unlock_sent: false,
            acquisition_id: new_acquisition_id(),
            held,
        }
    }

    /// A random 128-bit id, unique to this acquisition (logs, audit trails).
    pub fn acquisition_id(&self) -> u128 {
        self.acquisition_id
    }

    /// The fencing token issued with this acquisition, for a lock taken with
    /// [`fencing`](crate::Advisory::fencing): strictly greater than every token
    /// issued before for the same lock. Hand it to the storage you write to, which
    /// rejects writes carrying a token lower than the highest it has seen.
    pub fn fencing_token(&self) -> Option<i64> {
        self.held.fencing_token
    }

    /// The holder label given with [`label`](crate::Advisory::label).
    pub fn label(&self) -> Option<&str> {
        self.held.label.as_deref()
    }

    pub(crate) fn check_every(&self) -> Duration {
        self.held.check_every
    }

    pub(crate) fn lease(&self) -> Option<&Lease> {
        self.held.lease.as_ref()
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
    /// Do not unlock through it; use [`release`](Guard::release). Leave it as you
    /// found it: a pooled connection goes back to its pool after the guard, and a
    /// `SET` or an open transaction you left on it would go back with it.
    pub fn client(&self) -> &Client {
        self.conn().client()
    }

    pub(crate) fn conn(&self) -> &Conn {
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
        let span = tracing::debug_span!(
            "pglock.release",
            lock = %self.id,
            mode = %self.mode,
            held_us = self.acquired_at.elapsed().as_micros() as u64
        );
        async move {
            let key = self.key();
            let statement = sql::unlock(self.mode, is_pair(key));
            let prepared = match self.conn().exec().prepare(statement).await {
                Ok(p) => p,
                Err(e) => return Err(self.release_error(e)),
            };
            if let Some(lease) = &mut self.held.lease {
                lease.stop();
            }
            self.unlock_sent = true;
            let (result, reset) =
                unlock(self.conn().exec(), &prepared, key, self.held.settings).await;
            let conn = self
                .conn
                .take()
                .expect("a guard owns its connection until it is released");
            if result.is_err() || !reset || matches!(conn, Conn::Dedicated(_)) {
                conn.discard();
            }
            match result {
                Ok(true) => {
                    tracing::debug!("pglock: released");
                    Ok(())
                }
                Ok(false) => Err(Error::lost(&self.id)),
                Err(e) => Err(self.release_error(e)),
            }
        }
        .instrument(span)
        .await
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
        if let Some(lease) = &mut self.held.lease {
            lease.stop();
        }
        let (key, id, settings) = (self.key(), self.id.clone(), self.held.settings);
        let statement = Prepared::Typed(sql::unlock(self.mode, is_pair(key)));
        finish_detached(async move {
            // Typed, not prepared: queued on the very first poll, in `finish_detached`.
            let (result, reset) = unlock(conn.exec(), &statement, key, settings).await;
            match &result {
                Ok(true) => tracing::debug!(lock = %id, "pglock: released on drop"),
                Ok(false) => {
                    tracing::warn!(lock = %id, "pglock: lock was already lost when its guard was dropped")
                }
                Err(e) => {
                    tracing::warn!(lock = %id, error = %e, "pglock: unlock on drop failed; closing the connection")
                }
            }
            if result.is_err() || !reset || matches!(conn, Conn::Dedicated(_)) {
                conn.discard();
            }
        });
    }
}

/// Sends the unlock and, pipelined behind it, the resets of changed settings.
/// Answers whether the lock was held, and whether the resets worked.
async fn unlock(
    exec: Exec<'_>,
    statement: &Prepared,
    key: LockKey,
    settings: Settings,
) -> (Result<bool, tokio_postgres::Error>, bool) {
    let params = key_params(&key);
    let resets: Vec<Prepared> = settings.resets().map(Prepared::Typed).collect();
    let (result, reset) = join(
        exec.query(statement, &params),
        join_all(resets.iter().map(|r| exec.query(r, &[]))),
    )
    .await;
    (
        result.map(|rows| unlocked(rows.as_slice())),
        reset.iter().all(Result::is_ok),
    )
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

/// 128 random bits: two draws from the standard library's randomly seeded hasher,
/// mixed with a process-wide counter so that two ids never repeat in a process.
fn new_acquisition_id() -> u128 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let draw = |salt: u64| {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_u64(salt);
        h.finish()
    };
    (u128::from(draw(0)) << 64) | u128::from(draw(1) ^ n)
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
    settings: Settings,
    sent: bool,
}

impl Pending {
    pub(crate) fn new(conn: Conn, id: LockId, mode: Mode, settings: Settings) -> Pending {
        Pending {
            conn: Some(conn),
            id,
            mode,
            settings,
            sent: false,
        }
    }

    /// Sends the lock statement, pipelined with `extras` behind it, and waits for
    /// their answers.
    pub(crate) async fn send(
        &mut self,
        prepared: &Prepared,
        params: &[Param<'_>],
        extras: &[(Prepared, &[Param<'_>])],
    ) -> (
        Result<Vec<Row>, tokio_postgres::Error>,
        Vec<Result<Vec<Row>, tokio_postgres::Error>>,
    ) {
        // The statements are queued on the first poll of the query futures, in the
        // same poll as this flag is set: a drop after this line has sent them.
        self.sent = true;
        let exec = self
            .conn
            .as_ref()
            .expect("pending owns its connection")
            .exec();
        let extras = join_all(extras.iter().map(|(p, ps)| exec.query(p, ps)));
        join(exec.query(prepared, params), extras).await
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
        match conn {
            // A session is shared, and a cancel request interrupts whatever the
            // connection runs when it lands — possibly another task's statement
            // queued behind the wait. So no cancel: the release-if-granted is
            // queued right now, behind the wait, and runs the moment it ends.
            Conn::Session(_) => {
                let resets: Vec<Prepared> = self.settings.resets().map(Prepared::Typed).collect();
                finish_detached(async move {
                    let exec = conn.exec();
                    let (unlocked, reset) = join(
                        unlock_if_held(exec, id.lock_key(), mode, true),
                        join_all(resets.iter().map(|r| exec.query(r, &[]))),
                    )
                    .await;
                    if unlocked.is_err() || reset.iter().any(Result::is_err) {
                        tracing::warn!(lock = %id, "pglock: cleanup after a cancelled acquire failed");
                    }
                })
            }
            // A pooled (or dedicated) connection is ours alone: cancel the wait and
            // close the connection, never reuse it. Its session ends as soon as the
            // wait does, which frees anything granted meanwhile, and a cancel that
            // lands late has nobody's statement to hit.
            Conn::Pooled(_) | Conn::Dedicated(_) => {
                let token = conn.exec().cancel_token();
                conn.discard();
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    drop(handle.spawn(conn::cancel(token)));
                }
            }
        }
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
