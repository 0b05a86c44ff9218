//! [`held()`]: what the body of a `#[pglock::advisory]` function knows about the
//! lock it runs under — its fencing token above all.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::guard::Guard;
use crate::key::{LockId, LockKey, Mode};

tokio::task_local! {
    /// The lock of the innermost attributed function running in this task.
    static HELD: HeldLock;
}

/// The lock held for the body of the `#[pglock::advisory]` function that is
/// running in this task, or `None` outside such a body.
///
/// Attributed functions may nest: the body of the inner function sees the inner
/// lock, and after the inner call returns the outer body sees its own lock again.
/// The value lives in a tokio task-local, scoped around the body, so it costs no
/// round trip and stays out of the function's signature. It is not inherited by
/// tasks the body spawns (`tokio::spawn`): pass them the [`HeldLock`] (it is
/// `Clone + Send`). Transaction-level locks (`xact = …`) have no guard and set
/// nothing: in their body `held()` answers as it does around the call.
///
/// ```no_run
/// #[pglock::advisory("ledger.compact", fencing, pool = pool)]
/// async fn compact(pool: &deadpool_postgres::Pool) -> Result<i64, pglock::Error> {
///     let lock = pglock::held().expect("inside an attributed body");
///     let token = lock.fencing_token().expect("taken with `fencing`");
///     // … write to storage with `token`; it rejects writes with a lower one …
///     Ok(token)
/// }
///
/// assert!(pglock::held().is_none()); // outside any attributed body
/// ```
pub fn held() -> Option<HeldLock> {
    HELD.try_with(HeldLock::clone).ok()
}

/// Runs `body` with `held` as what [`held()`] answers.
pub(crate) fn scope<F: Future>(held: HeldLock, body: F) -> impl Future<Output = F::Output> {
    HELD.scope(held, body)
}

/// A description of a held session lock, as [`held()`] gives it: cheap to clone
/// (reference-counted strings and plain numbers), `Send + Sync`, and independent of
/// the [`Guard`] that holds the lock, so it neither holds nor releases anything.
#[derive(Clone)]
pub struct HeldLock {
    id: LockId,
    mode: Mode,
    acquisition_id: u128,
    fencing_token: Option<i64>,
    label: Option<Arc<str>>,
    lease_ttl: Option<Duration>,
    acquired_at: Instant,
    acquired_at_system: SystemTime,
}

impl HeldLock {
    pub(crate) fn of(guard: &Guard) -> HeldLock {
        HeldLock {
            id: guard.id().clone(),
            mode: guard.mode(),
            acquisition_id: guard.acquisition_id(),
            fencing_token: guard.fencing_token(),
            label: guard.label().map(Arc::from),
            lease_ttl: guard.lease_ttl(),
            acquired_at: guard.acquired_at(),
            acquired_at_system: guard.acquired_at_system(),
        }
    }

    /// The fencing token of this acquisition, for a lock taken with `fencing`
    /// (see [`Guard::fencing_token`]): strictly greater than every token issued
    /// before for the same lock. `None` without `fencing`.
    pub fn fencing_token(&self) -> Option<i64> {
        self.fencing_token
    }

    /// The random 128-bit id of this acquisition (see [`Guard::acquisition_id`]).
    pub fn acquisition_id(&self) -> u128 {
        self.acquisition_id
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

    /// The holder label the lock was taken with (`label = …`), if any.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// The lease's time-to-live, for a lock taken with `lease = …`.
    pub fn lease_ttl(&self) -> Option<Duration> {
        self.lease_ttl
    }

    /// When the lock was granted (monotonic clock).
    pub fn acquired_at(&self) -> Instant {
        self.acquired_at
    }

    /// When the lock was granted (wall clock).
    pub fn acquired_at_system(&self) -> SystemTime {
        self.acquired_at_system
    }
}

impl fmt::Debug for HeldLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeldLock")
            .field("id", &self.id)
            .field("mode", &self.mode)
            .field(
                "acquisition_id",
                &format_args!("{:032x}", self.acquisition_id),
            )
            .field("fencing_token", &self.fencing_token)
            .field("label", &self.label)
            .field("lease_ttl", &self.lease_ttl)
            .finish_non_exhaustive()
    }
}
