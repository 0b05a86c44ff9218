//! [`Guard`]: a held session lock, and what happens when one is dropped.

mod deadline;
mod lease;
pub(crate) mod park;
pub(crate) mod pending;
pub(crate) mod relay;
mod watch;

use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::{join, join_all};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Row};
use tracing::Instrument;

pub(crate) use deadline::Safety;
pub use deadline::ASSUMED_DRIFT_PERCENT;
pub(crate) use lease::{ttl_value, Lease};
pub use watch::DEFAULT_CHECK_EVERY;

use deadline::Deadline;
use relay::Relay;

use crate::conn::contact::Contact;
use crate::conn::ledger::Hold;
use crate::conn::{Conn, Exec, Prepared, Settings};
use crate::error::Error;
use crate::key::{LockId, LockKey, Mode};
use crate::sql;

/// A held session-level advisory lock.
///
/// Release it with [`release`](Guard::release) to learn whether that worked, or drop
/// it: dropping queues the unlock on the lock's connection at once (the statement
/// prepared when the lock was taken), without blocking, and a background task (on
/// the current tokio runtime) sees it through. On a [`Locker`](crate::Locker) a
/// dropped exclusive guard hands its unlock to such a task instead, which sends it
/// when it first runs — unless the next acquisition of the same lock through the
/// locker comes first and sends it, with its own try, as one statement.
/// A pooled connection goes back to its pool only after the unlock has run; if the
/// unlock fails, the connection is closed instead, which ends its session and so
/// frees its locks. Either way the lock does not outlive the guard.
///
/// The guard is `Send + 'static`: move it into a spawned task if the work lives
/// there.
#[must_use = "dropping a guard releases its lock at once: bind it, `let _guard = …`, \
              for as long as the lock must be held"]
pub struct Guard {
    conn: Option<Conn>,
    /// This guard's place in its source's ledger, given up once the unlock is
    /// through.
    hold: Option<Hold>,
    id: LockId,
    mode: Mode,
    acquired_at: Instant,
    acquired_system: SystemTime,
    wait: Duration,
    acquisition_id: u128,
    held: Held,
    deadline: Deadline,
}

/// What came with an acquisition besides the lock itself.
pub(crate) struct Held {
    pub(crate) check_every: Duration,
    pub(crate) lease: Option<Lease>,
    pub(crate) fencing_token: Option<i64>,
    pub(crate) label: Option<Arc<str>>,
    pub(crate) settings: Settings,
    /// The lock lives in a transaction the guard keeps open (pooler-safe mode):
    /// it ends with COMMIT, or ROLLBACK when dropped.
    pub(crate) in_transaction: bool,
    /// The backend (server process) that granted the lock.
    pub(crate) backend_pid: Option<i32>,
    /// The unlock, prepared on the lock's connection when it was taken.
    pub(crate) unlock: Option<tokio_postgres::Statement>,
    pub(crate) safety: Safety,
}

/// How a guard's hold ends.
enum Ending {
    /// `pg_advisory_unlock…` (`sql`, as `statement`), answering whether it was
    /// held.
    Unlock {
        statement: Prepared,
        sql: &'static str,
    },
    /// The end of the transaction the lock lives in.
    Transaction(&'static str),
}

impl Guard {
    /// How this guard's hold ends: `end` (COMMIT or ROLLBACK) for a lock in a
    /// transaction; else the unlock prepared when the lock was taken, or — where
    /// the connection keeps no prepared statements — sent unnamed. Nothing to
    /// wait for: a drop queues it before it returns.
    fn ending(&self, end: &'static str) -> Ending {
        let sql = sql::unlock(self.mode, self.key().is_pair());
        match (self.held.in_transaction, &self.held.unlock) {
            (true, _) => Ending::Transaction(end),
            (false, Some(unlock)) => Ending::Unlock {
                statement: Prepared::Statement(unlock.clone()),
                sql,
            },
            (false, None) => Ending::Unlock {
                statement: Prepared::Typed(sql),
                sql,
            },
        }
    }

    pub(crate) fn new(
        conn: Conn,
        hold: Hold,
        id: LockId,
        mode: Mode,
        started: Instant,
        held: Held,
    ) -> Guard {
        let acquired_at = Instant::now();
        let (contact, keepalive, connection_lease) = match &conn {
            Conn::Session(s) | Conn::Dedicated(s) => {
                (s.contact().clone(), s.keepalive(), s.connection_lease())
            }
            Conn::Pooled(_) => (Arc::new(Contact::new(acquired_at)), None, None),
        };
        let deadline = Deadline::new(
            contact,
            keepalive,
            connection_lease,
            held.safety,
            acquired_at,
        );
        Guard {
            deadline,
            conn: Some(conn),
            hold: Some(hold),
            id,
            mode,
            acquired_at,
            acquired_system: SystemTime::now(),
            wait: acquired_at - started,
            acquisition_id: new_acquisition_id(),
            held,
        }
    }

    /// A 128-bit id of this acquisition (logs, audit trails): never repeated in
    /// the process, and scrambled with a random per-process seed, so that ids of
    /// different processes do not collide in practice.
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

    /// The process id of the server backend that holds the lock
    /// (`pg_backend_pid()` there; `pid` in `pg_locks`).
    pub fn backend_pid(&self) -> Option<i32> {
        self.held.backend_pid
    }

    /// The holder label given with [`label`](crate::Advisory::label).
    pub fn label(&self) -> Option<&str> {
        self.held.label.as_deref()
    }

    /// The active-check interval: as set, or by default at most half the local
    /// deadline span, so that a healthy lock's checks keep it.
    pub(crate) fn check_every(&self) -> Duration {
        match self.deadline.check_cap() {
            Some(cap) => self.held.check_every.min(cap),
            None => self.held.check_every,
        }
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

    /// The connection holding the lock, mutably — for a transaction on the locked
    /// connection (`guard.client_mut().unwrap().transaction()`) — when the guard
    /// has the connection to itself (taken through a pool). `None` on a shared
    /// [`Session`](crate::Session) and for a lock with an automatically renewed
    /// lease, whose connection a renewing task shares. The same caveats as
    /// [`client`](Guard::client) apply: finish your transaction before releasing.
    pub fn client_mut(&mut self) -> Option<&mut Client> {
        self.conn
            .as_mut()
            .expect("a guard owns its connection until it is released")
            .client_mut()
    }

    pub(crate) fn conn(&self) -> &Conn {
        self.conn
            .as_ref()
            .expect("a guard owns its connection until it is released")
    }

    /// What the guard's end needs, taken out of it (`end`: COMMIT or ROLLBACK
    /// for a lock in a transaction); `None` once taken. Its lease stops, and its
    /// task no longer owns the hold (the end may run in another task, or be
    /// relayed to a waiter, and take a while).
    fn ended(&mut self, end: &'static str) -> Option<Ended> {
        let conn = self.conn.take()?;
        crate::metrics::ended(self.mode, self.acquired_at.elapsed());
        if let Some(lease) = &mut self.held.lease {
            lease.stop();
        }
        let hold = self.hold.take();
        if let Some(hold) = &hold {
            hold.disown();
        }
        Some(Ended {
            conn,
            hold,
            id: self.id.clone(),
            mode: self.mode,
            holder: self.held.backend_pid,
            settings: self.held.settings,
            ending: self.ending(end),
            unlock: self.held.unlock.clone(),
        })
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
            // From here on the guard's drop does nothing: this call sees the
            // release through. The first poll below queues the unlock on the
            // connection, ahead of anything else that will run on it.
            let ended = self
                .ended(sql::COMMIT)
                .expect("a guard owns its connection until it is released");
            let (report, relayed) = tokio::sync::oneshot::channel();
            let result = match ended.relay(move |result| drop(report.send(result))) {
                // Unanswered only when the runtime shuts down, taking the
                // connection's driver (and so the session's locks) with it.
                None => relayed.await.unwrap_or_else(|_| {
                    Err(Error::lost_while_held(
                        &self.id,
                        "the runtime shut down before the release was confirmed",
                    ))
                }),
                Some(ended) => ended.unlock().await,
            };
            match result {
                Ok(()) => {
                    tracing::debug!("pglock: released");
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        .instrument(span)
        .await
    }
}

/// A guard that is done with its lock: what its unlock needs.
pub(crate) struct Ended {
    conn: Conn,
    hold: Option<Hold>,
    id: LockId,
    mode: Mode,
    holder: Option<i32>,
    settings: Settings,
    ending: Ending,
    /// The prepared unlock (a relayed waiter's guard needs the same one).
    unlock: Option<tokio_postgres::Statement>,
}

impl Ended {
    /// Relays the lock to a local waiter (see `relay`) when one asked for it and
    /// the lock ends with a plain unlock: the relay is queued before this
    /// returns, and `report` gets the release's result. Gives `self` back
    /// otherwise.
    fn relay(self, report: impl FnOnce(Result<(), Error>) + Send + 'static) -> Option<Ended> {
        let plain = matches!(self.ending, Ending::Unlock { .. }) && !self.settings.changed();
        let relay = plain
            .then(|| {
                let pair = self.id.lock_key().is_pair();
                Relay::start(&self.conn, self.hold.as_ref(), self.mode, pair)
            })
            .flatten();
        let Some(relay) = relay else {
            return Some(self);
        };
        let (Conn::Session(session), Some(hold)) = (self.conn, self.hold) else {
            unreachable!("relays start only from a shared session's hold")
        };
        relay.detach(session, hold, self.id, self.unlock, self.holder, report);
        None
    }

    /// Sends the unlock (queued on the first poll) and settles its answer.
    ///
    /// On a shared connection (a `Session`, a `Locker`'s) the next guard of the
    /// same key sends its statements on the same connection, so they run after
    /// an unlock already queued there: the ledger's hold goes as soon as the
    /// unlock is queued, and a handoff between two local guards costs no round
    /// trip of its own. (Should the unlock then fail, the server still counts the
    /// hold; the one retried later releases exactly one hold, whichever guard it
    /// was.) On a connection of the guard's own, the hold goes only once the
    /// unlock is through.
    async fn unlock(self) -> Result<(), Error> {
        let Ended {
            conn,
            mut hold,
            id,
            mode,
            holder,
            settings,
            ending,
            ..
        } = self;
        let result = {
            let mut unlocking = std::pin::pin!(unlock(
                conn.exec(),
                &ending,
                id.lock_key(),
                settings,
                holder
            ));
            match std::future::poll_fn(|cx| Poll::Ready(unlocking.as_mut().poll(cx))).await {
                Poll::Ready(result) => result,
                Poll::Pending => {
                    if conn.is_shared() {
                        drop(hold.take());
                    }
                    unlocking.await
                }
            }
        };
        finish(conn, hold, &id, mode, holder, result)
    }

    /// Sends the unlock before this returns, and hands the answer to a task.
    fn unlock_detached(self) {
        let id = self.id.clone();
        finish_detached(async move { dropped(&id, self.unlock().await) });
    }
}

/// Settles an unlock's answer: a connection whose settings could not be put back
/// (or that was dedicated to the lock) is closed; an unlock that could not run is
/// taken over by the session, or the pooled connection is closed, which frees the
/// lock; the ledger's hold is given up once the lock is released.
fn finish(
    conn: Conn,
    hold: Option<Hold>,
    id: &LockId,
    mode: Mode,
    holder: Option<i32>,
    Unlocked {
        held: result,
        reset,
        elsewhere,
    }: Unlocked,
) -> Result<(), Error> {
    if let Some(elsewhere) = elsewhere {
        // A transaction-pooling proxy: refuse session locks through this source
        // from now on, and say so.
        if let Some(hold) = &hold {
            hold.ledger()
                .set_pooling(crate::conn::ledger::Pooling::Transaction);
        }
        let released = matches!(result, Ok(true));
        conn.discard();
        let ran_in = match elsewhere {
            Some(backend) => format!("backend {backend}"),
            None => "a server session that had not prepared it".to_string(),
        };
        return Err(Error::transaction_pooler(&format!(
            "the lock was granted in server backend {} but its unlock ran in {ran_in}{}",
            holder.unwrap_or_default(),
            match released {
                true => "; sent again, it reached the holder and released the lock",
                false => "; the lock may still be held there until that server session ends",
            }
        ))
        .with_lock(id));
    }
    match result {
        Ok(held) => {
            if !reset || matches!(conn, Conn::Dedicated(_)) {
                conn.discard();
            }
            drop(hold);
            match held {
                true => Ok(()),
                false => Err(Error::lost(id)),
            }
        }
        Err(e) => {
            let err = Error::db(e).with_lock(id);
            if err.is_connection_lost() {
                return Err(err.into_lost());
            }
            Err(match conn {
                Conn::Session(session) => {
                    session.owe_unlock(id.clone(), mode, false, hold);
                    err.context(
                        "the unlock could not run; the session retries it until it goes \
                         through (after the open transaction ends), and a session that drives \
                         its own connection closes it after 5 s",
                    )
                }
                conn => {
                    conn.discard();
                    err.context(
                        "the unlock could not run; its connection was closed instead, which \
                         frees the lock",
                    )
                }
            })
        }
    }
}

fn unlocked(rows: &[Row]) -> bool {
    rows.first().is_some_and(|r| r.get::<_, bool>(0))
}

impl Drop for Guard {
    fn drop(&mut self) {
        let Some(ended) = self.ended(sql::ROLLBACK) else {
            return;
        };
        let id = ended.id.clone();
        // A waiting local guard is relayed the lock; else an exclusive lock on a
        // locker's connection waits for its next local acquirer (see `park`);
        // others are unlocked now.
        if let Some(ended) = ended.relay(move |result| dropped(&id, result)) {
            park::Parked::park_or_unlock(ended);
        }
    }
}

/// Logs how a dropped guard's release ended.
fn dropped(id: &LockId, result: Result<(), Error>) {
    match result {
        Ok(()) => tracing::debug!(lock = %id, "pglock: released on drop"),
        Err(e) if e.is_lost() => {
            tracing::warn!(lock = %id, error = %e, "pglock: lock was already lost when its guard was dropped")
        }
        Err(e) => tracing::warn!(lock = %id, error = %e, "pglock: unlock on drop failed"),
    }
}

/// Sends the unlock and, pipelined behind it, the resets of changed settings.
/// Answers whether the lock was held, and whether the resets worked.
/// What an unlock came to.
struct Unlocked {
    /// Whether the lock was held, or why the unlock could not run.
    held: Result<bool, tokio_postgres::Error>,
    /// Whether changed settings were put back.
    reset: bool,
    /// Set when the unlock ran in a server session other than the one holding the
    /// lock (a transaction-pooling proxy routed it elsewhere): that session's
    /// backend, when known.
    elsewhere: Option<Option<i32>>,
}

/// How often an unlock routed to the wrong server session is sent again, hoping
/// that the proxy routes it to the holding one.
const REROUTES: usize = 20;

async fn unlock(
    exec: Exec<'_>,
    ending: &Ending,
    key: LockKey,
    settings: Settings,
    holder: Option<i32>,
) -> Unlocked {
    let (statement, sql) = match ending {
        Ending::Unlock { statement, sql } => (statement, *sql),
        // The transaction's end releases its locks; nothing else was changed.
        Ending::Transaction(sql) => {
            return Unlocked {
                held: exec.batch(sql).await.map(|()| true),
                reset: true,
                elsewhere: None,
            }
        }
    };
    let params = key.params();
    let resets: Vec<Prepared> = settings.resets().map(Prepared::Typed).collect();
    let (mut result, reset) = join(
        exec.query(statement, &params),
        join_all(resets.iter().map(|r| exec.query(r, &[]))),
    )
    .await;
    let ran_in = |rows: &[Row]| rows.first().map(|r| r.get::<_, i32>(1));
    let mut elsewhere = None;
    // A prepared unlock that its server session does not know reached a session
    // other than the one it was prepared in (with the lock): a transaction-pooling
    // proxy routed it. Sent unnamed from then on, it can run anywhere, and the
    // backend that runs it says where it went.
    let unnamed = Prepared::Typed(sql);
    let mut statement = statement;
    if matches!(statement, Prepared::Statement(_))
        && matches!(&result, Err(e) if e.code() == Some(&SqlState::INVALID_SQL_STATEMENT_NAME))
    {
        elsewhere = Some(None);
        statement = &unnamed;
        result = exec.query(statement, &params).await;
    }
    for _ in 0..REROUTES {
        match &result {
            Ok(rows) if holder.is_some() && ran_in(rows) != holder => {
                if !matches!(elsewhere, Some(Some(_))) {
                    elsewhere = Some(ran_in(rows));
                }
                result = exec.query(statement, &params).await;
            }
            _ => break,
        }
    }
    Unlocked {
        held: result.map(|rows| unlocked(rows.as_slice())),
        reset: reset.iter().all(Result::is_ok),
        elsewhere,
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

/// 128 bits, unique in the process (the low half is a bijection of a counter) and
/// unpredictable across processes (both halves are mixed with a random seed drawn
/// once per process), without drawing randomness per acquisition.
fn new_acquisition_id() -> u128 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();
    let (high_seed, low_seed) = *SEED.get_or_init(|| {
        let draw = |salt: u64| {
            let mut h = RandomState::new().build_hasher();
            h.write_u64(salt);
            h.finish()
        };
        (draw(0), draw(1))
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    (u128::from(splitmix64(high_seed.wrapping_add(n))) << 64) | u128::from(splitmix64(n) ^ low_seed)
}

/// SplitMix64's output function: a bijection on `u64` that scrambles its input.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
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

#[cfg(test)]
mod tests {
    #[test]
    fn acquisition_ids_are_unique_and_scattered() {
        let ids: Vec<u128> = (0..10_000).map(|_| super::new_acquisition_id()).collect();
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        // Consecutive ids differ in many bits, in both halves.
        for pair in ids.windows(2) {
            let diff = pair[0] ^ pair[1];
            assert!((diff >> 64).count_ones() > 8 && (diff as u64).count_ones() > 8);
        }
    }

    #[test]
    fn guard_is_send_and_static() {
        fn is_send<T: Send + Sync + 'static>() {}
        is_send::<super::Guard>();
    }
}
