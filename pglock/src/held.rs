//! [`held()`]: what the body of a `#[pglock::advisory]` function knows about the
//! lock it runs under — its fencing token above all.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{watch, Notify};

use crate::error::Error;
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

/// What the body knows about the lock's fate, shared between the attributed call
/// (which watches the guard) and every [`HeldLock`] of that call.
pub(crate) struct Loss {
    /// Set by [`HeldLock::lost`]: someone wants to hear of a loss, so the call
    /// starts watching the guard (watching costs a check now and then, so it is
    /// done only when asked).
    wanted: Notify,
    state: watch::Sender<State>,
}

/// The fate of the lock of one attributed call.
#[derive(Clone)]
enum State {
    Held,
    /// Lost while the body ran: why.
    Lost(Arc<str>),
    /// The call has returned: the lock was released (or never used again).
    Ended,
}

impl Loss {
    pub(crate) fn new() -> Arc<Loss> {
        Arc::new(Loss {
            wanted: Notify::new(),
            state: watch::Sender::new(State::Held),
        })
    }

    /// Completes when some [`HeldLock::lost`] is waiting (at once if one has been).
    pub(crate) async fn wanted(&self) {
        self.wanted.notified().await;
    }

    /// Records the loss the guard reported.
    pub(crate) fn set_lost(&self, lock: &LockId, error: &Error) {
        // `Guard::lost` says "advisory lock <id>: lock lost while held: <why>";
        // keep the why, so that each `HeldLock::lost` builds the same error.
        let text = error.to_string();
        let prefix = format!("advisory lock {lock}: lock lost while held: ");
        let why = text.strip_prefix(&prefix).unwrap_or(&text);
        self.state.send_replace(State::Lost(Arc::from(why)));
    }

    /// Records the end of the call.
    pub(crate) fn set_ended(&self) {
        self.state.send_if_modified(|state| match state {
            State::Held => {
                *state = State::Ended;
                true
            }
            _ => false,
        });
    }
}

/// A description of a held session lock, as [`held()`] gives it: cheap to clone
/// (reference-counted strings and plain numbers), `Send + Sync`, and independent of
/// the [`Guard`] that holds the lock, so it neither holds nor releases anything —
/// but it can tell the body when the lock is [lost](HeldLock::lost).
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
    loss: Arc<Loss>,
}

impl HeldLock {
    pub(crate) fn of(guard: &Guard, loss: Arc<Loss>) -> HeldLock {
        HeldLock {
            id: guard.id().clone(),
            mode: guard.mode(),
            acquisition_id: guard.acquisition_id(),
            fencing_token: guard.fencing_token(),
            label: guard.label().map(Arc::from),
            lease_ttl: guard.lease_ttl(),
            acquired_at: guard.acquired_at(),
            acquired_at_system: guard.acquired_at_system(),
            loss,
        }
    }

    /// Completes, with an [`is_lost`](Error::is_lost) error, when the lock is lost
    /// while the body runs — within the bound of [`Guard::lost`]: 20 ms after its
    /// connection closes (backend terminated, server restarted, lease expired),
    /// otherwise at the next active check ([`DEFAULT_CHECK_EVERY`](crate::DEFAULT_CHECK_EVERY),
    /// none on a leased lock). Never completes while the lock is held and the call
    /// runs. Once the attributed call has returned, the lock is no longer this
    /// body's to hold: it completes at once, also with an `is_lost` error.
    ///
    /// The call starts watching its lock the first time this is awaited (watching
    /// costs an `is_held` query every check interval), so a body that never asks
    /// pays nothing. Race it against the critical section:
    ///
    /// ```no_run
    /// # async fn write_batch() -> Result<(), pglock::Error> { Ok(()) }
    /// #[pglock::advisory("ledger.compact", pool = pool)]
    /// async fn compact(pool: &deadpool_postgres::Pool) -> Result<(), pglock::Error> {
    ///     let lock = pglock::held().expect("inside an attributed body");
    ///     tokio::select! {
    ///         done = write_batch() => done,
    ///         lost = lock.lost() => Err(lost), // stop writing: someone else may hold it now
    ///     }
    /// }
    /// ```
    ///
    /// `on_lost = cancel` on the attribute does this for the whole body.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only watches.
    pub async fn lost(&self) -> Error {
        self.loss.wanted.notify_one();
        let mut state = self.loss.state.subscribe();
        let why = match state
            .wait_for(|s| !matches!(s, State::Held))
            .await
            .map(|s| s.clone())
        {
            Ok(State::Lost(why)) => why,
            _ => Arc::from(
                "the attributed call has returned, so its lock was released and is no \
                 longer held for this body",
            ),
        };
        Error::lost_while_held(&self.id, &why)
    }

    /// Whether a loss of the lock has been seen (by a [`lost`](HeldLock::lost)
    /// watch or by `on_lost = cancel`), or the call has returned. No round trip:
    /// `false` says only that no loss has been noticed yet.
    pub fn is_lost(&self) -> bool {
        !matches!(*self.loss.state.borrow(), State::Held)
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
