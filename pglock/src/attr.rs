//! Support for the code that `#[pglock::advisory]` generates (re-exported from
//! `pglock::__private`; not public API). The attribute's documentation is on its
//! re-export in `lib.rs`.
//!
//! The generated code calls these generic functions and lets the function's
//! return type pick the trait impl, so the return-type rules live here, as traits
//! with `on_unimplemented` messages that say what to write instead.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use tokio_postgres::Client;

use crate::conn::{Session, Source};
use crate::error::Error;
use crate::guard::Guard;
use crate::held::{self, HeldLock, Loss};
use crate::key::{LockId, LockKey};
use crate::lock::Advisory;
use crate::xact::InTransaction;

pub use crate::defaults::require_default_pool as default_source;

/// What a lock id given to the attribute may be. Taken by reference, so that a
/// parameter used as the id stays usable in the body.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a lock id",
    label = "expected a lock name (`&str`, `String`), an `i64` key, an `(i32, i32)` key pair or a `pglock::LockKey`"
)]
pub trait ToLockId {
    /// The id.
    fn to_lock_id(&self) -> LockId;
}

impl ToLockId for str {
    fn to_lock_id(&self) -> LockId {
        LockId::name(self)
    }
}

impl ToLockId for String {
    fn to_lock_id(&self) -> LockId {
        LockId::name(self.as_str())
    }
}

impl ToLockId for Arc<str> {
    fn to_lock_id(&self) -> LockId {
        LockId::name(self.clone())
    }
}

impl ToLockId for std::borrow::Cow<'_, str> {
    fn to_lock_id(&self) -> LockId {
        LockId::name(&**self)
    }
}

impl ToLockId for i64 {
    fn to_lock_id(&self) -> LockId {
        LockId::key(LockKey::Big(*self))
    }
}

impl ToLockId for (i32, i32) {
    fn to_lock_id(&self) -> LockId {
        LockId::key(LockKey::Pair(self.0, self.1))
    }
}

impl ToLockId for LockKey {
    fn to_lock_id(&self) -> LockId {
        LockId::key(*self)
    }
}

impl ToLockId for LockId {
    fn to_lock_id(&self) -> LockId {
        self.clone()
    }
}

impl<T: ToLockId + ?Sized> ToLockId for &T {
    fn to_lock_id(&self) -> LockId {
        (**self).to_lock_id()
    }
}

impl<T: ToLockId + ?Sized> ToLockId for &mut T {
    fn to_lock_id(&self) -> LockId {
        (**self).to_lock_id()
    }
}

impl<T: ToLockId + ?Sized> ToLockId for Box<T> {
    fn to_lock_id(&self) -> LockId {
        (**self).to_lock_id()
    }
}

/// The lock the attribute takes: `pglock::advisory(id)`, borrowing the id.
pub fn lock<T: ToLockId + ?Sized>(id: &T) -> Advisory {
    crate::lock::advisory(id.to_lock_id())
}

/// What `label = …` may evaluate to: a string, taken by reference, so that a
/// parameter used as the label stays usable in the body.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a holder label",
    label = "expected a string: `&str`, `String`, `Arc<str>` or `Cow<str>`"
)]
pub trait ToLabel {
    /// The label.
    fn to_label(&self) -> Arc<str>;
}

impl ToLabel for str {
    fn to_label(&self) -> Arc<str> {
        Arc::from(self)
    }
}

impl ToLabel for String {
    fn to_label(&self) -> Arc<str> {
        Arc::from(self.as_str())
    }
}

impl ToLabel for Arc<str> {
    fn to_label(&self) -> Arc<str> {
        self.clone()
    }
}

impl ToLabel for std::borrow::Cow<'_, str> {
    fn to_label(&self) -> Arc<str> {
        Arc::from(&**self)
    }
}

impl<T: ToLabel + ?Sized> ToLabel for &T {
    fn to_label(&self) -> Arc<str> {
        (**self).to_label()
    }
}

impl<T: ToLabel + ?Sized> ToLabel for &mut T {
    fn to_label(&self) -> Arc<str> {
        (**self).to_label()
    }
}

impl<T: ToLabel + ?Sized> ToLabel for Box<T> {
    fn to_label(&self) -> Arc<str> {
        (**self).to_label()
    }
}

/// The holder label of `label = …`, borrowing the expression's value.
pub fn label<T: ToLabel + ?Sized>(label: &T) -> Arc<str> {
    label.to_label()
}

/// What `timeout = …` may evaluate to: a `Duration`, or an `Option<Duration>`
/// where `None` means the default of the side effect (Raise: wait until granted;
/// Skip: try once).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a lock timeout",
    label = "expected a `std::time::Duration` or an `Option<Duration>` (`None`: the default)"
)]
pub trait ToTimeout {
    /// The timeout, if any.
    fn to_timeout(&self) -> Option<Duration>;
}

impl ToTimeout for Duration {
    fn to_timeout(&self) -> Option<Duration> {
        Some(*self)
    }
}

impl ToTimeout for Option<Duration> {
    fn to_timeout(&self) -> Option<Duration> {
        *self
    }
}

impl<T: ToTimeout + ?Sized> ToTimeout for &T {
    fn to_timeout(&self) -> Option<Duration> {
        (**self).to_timeout()
    }
}

/// `timeout = …`: the lock with the timeout, or unchanged for `None`.
pub fn timeout<T: ToTimeout + ?Sized>(lock: Advisory, timeout: &T) -> Advisory {
    match timeout.to_timeout() {
        Some(t) => lock.timeout(t),
        None => lock,
    }
}

/// The shortest `lease = …` the attribute accepts: renewed every third of its
/// time-to-live, a one-second lease leaves a healthy process about 660 ms for a
/// renewal's round trip and its scheduling delays; shorter leases expire under
/// ordinary load and leave the body running without the lock.
pub const LEASE_FLOOR: Duration = Duration::from_secs(1);

/// The attribute's own checks of the lock, made before it is tried.
fn check(lock: &Advisory) -> Result<(), Error> {
    match lock.options.lease {
        Some(ttl) if ttl < LEASE_FLOOR => Err(Error::invalid_argument(format!(
            "#[pglock::advisory] lease {ttl:?} is shorter than the 1 s floor: an automatically \
             renewed lease that short can expire under ordinary load and leave the body \
             running without the lock; give `lease = …` at least 1 s"
        ))
        .with_lock(lock.id())),
        _ => Ok(()),
    }
}

/// What `pool = …` may evaluate to: a pool or a session, or a reference, `Arc` or
/// `Box` of one.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a connection source for #[pglock::advisory]",
    label = "`pool = …` must give a `deadpool_postgres::Pool`, a `pglock::Session` or a `pglock::Locker`",
    note = "a reference, `Arc` or `Box` of one works too, e.g. `pool = &self.pool`"
)]
pub trait AsSource {
    /// The source locks are taken through.
    type Source: Source + ?Sized;
    /// Borrows it.
    fn as_source(&self) -> &Self::Source;
}

impl AsSource for deadpool_postgres::Pool {
    type Source = deadpool_postgres::Pool;
    fn as_source(&self) -> &Self::Source {
        self
    }
}

impl AsSource for Session {
    type Source = Session;
    fn as_source(&self) -> &Self::Source {
        self
    }
}

#[diagnostic::do_not_recommend]
impl AsSource for crate::defaults::DefaultSource {
    type Source = crate::defaults::DefaultSource;
    fn as_source(&self) -> &Self::Source {
        self
    }
}

impl AsSource for crate::conn::Locker {
    type Source = crate::conn::Locker;
    fn as_source(&self) -> &Self::Source {
        self
    }
}

impl<T: AsSource + ?Sized> AsSource for &T {
    type Source = T::Source;
    fn as_source(&self) -> &Self::Source {
        (**self).as_source()
    }
}

impl<T: AsSource + ?Sized> AsSource for &mut T {
    type Source = T::Source;
    fn as_source(&self) -> &Self::Source {
        (**self).as_source()
    }
}

impl<T: AsSource + ?Sized> AsSource for Arc<T> {
    type Source = T::Source;
    fn as_source(&self) -> &Self::Source {
        (**self).as_source()
    }
}

impl<T: AsSource + ?Sized> AsSource for Box<T> {
    type Source = T::Source;
    fn as_source(&self) -> &Self::Source {
        (**self).as_source()
    }
}

/// What `xact = tx` may name: a `tokio_postgres::Transaction` or a
/// `deadpool_postgres::Transaction`, by value or by reference.
#[diagnostic::on_unimplemented(
    message = "`xact = …` must name a transaction, not `{Self}`",
    label = "expected a `tokio_postgres::Transaction` or a `deadpool_postgres::Transaction` (or a reference to one)"
)]
pub trait AsTransaction {
    /// The transaction the lock is taken in.
    type Transaction: InTransaction + ?Sized;
    /// Borrows it.
    fn as_transaction(&self) -> &Self::Transaction;
}

impl<'a> AsTransaction for tokio_postgres::Transaction<'a> {
    type Transaction = tokio_postgres::Transaction<'a>;
    fn as_transaction(&self) -> &Self::Transaction {
        self
    }
}

impl<'a> AsTransaction for deadpool_postgres::Transaction<'a> {
    type Transaction = deadpool_postgres::Transaction<'a>;
    fn as_transaction(&self) -> &Self::Transaction {
        self
    }
}

impl<T: AsTransaction + ?Sized> AsTransaction for &T {
    type Transaction = T::Transaction;
    fn as_transaction(&self) -> &Self::Transaction {
        (**self).as_transaction()
    }
}

impl<T: AsTransaction + ?Sized> AsTransaction for &mut T {
    type Transaction = T::Transaction;
    fn as_transaction(&self) -> &Self::Transaction {
        (**self).as_transaction()
    }
}

/// Raise: waits as the timeout says (without one, until granted).
pub async fn acquire<S: Source + ?Sized>(
    lock: &Advisory,
    source: Result<&S, Error>,
) -> Result<Guard, Error> {
    check(lock)?;
    lock.acquire(source?).await
}

/// `pool = …` as a source: the one place its type is checked (a plain function
/// call, so a value that is no source is reported once).
pub fn source<S: AsSource + ?Sized>(source: Result<&S, Error>) -> Result<&S::Source, Error> {
    source.map(AsSource::as_source)
}

/// Skip: one try, or waits at most the timeout when one is given.
pub async fn try_acquire<S: Source + ?Sized>(
    lock: &Advisory,
    source: Result<&S, Error>,
) -> Result<Option<Guard>, Error> {
    check(lock)?;
    lock.try_acquire(source?).await
}

/// Raise, transaction-level.
pub async fn acquire_in<T: InTransaction + ?Sized>(lock: &Advisory, tx: &T) -> Result<(), Error> {
    lock.clone().xact().acquire_in(tx).await
}

/// `xact = …` as a transaction: the one place its type is checked (a plain
/// function call, so a value that is no transaction is reported once).
pub fn transaction<T: AsTransaction + ?Sized>(tx: &T) -> &T::Transaction {
    tx.as_transaction()
}

/// Skip, transaction-level: `Ok(false)` when busy.
pub async fn try_acquire_in<T: InTransaction + ?Sized>(
    lock: &Advisory,
    tx: &T,
) -> Result<bool, Error> {
    lock.clone().xact().try_acquire_in(tx).await
}

/// The return types of a Raise function: `Result<T, E>` with `E: From<pglock::Error>`.
#[diagnostic::on_unimplemented(
    message = "#[pglock::advisory] (side_effect = Raise, the default) needs the function to return `Result<T, E>` with `E: From<pglock::Error>`, not `{Self}`",
    label = "a busy lock or a connection error is returned as `Err(E::from(error))` here",
    note = "return a `Result` whose error type converts from `pglock::Error` (e.g. `Result<T, pglock::Error>`, or your own error with `impl From<pglock::Error>`), or use `side_effect = Skip` to return `()`/`Option<T>` without running the body"
)]
pub trait RaiseValue: Sized {
    /// The value returned when the lock was not acquired.
    fn from_lock_error(error: Error) -> Self;
    /// The body's value once the lock is released: a failed release (the lock was
    /// lost while the body ran) turns `Ok` into `Err`.
    fn after_release(self, released: Result<(), Error>) -> Self;
}

impl<T, E: From<Error>> RaiseValue for Result<T, E> {
    fn from_lock_error(error: Error) -> Self {
        Err(E::from(error))
    }

    fn after_release(self, released: Result<(), Error>) -> Self {
        match (self, released) {
            (Ok(_), Err(e)) => Err(E::from(e)),
            (output, Err(e)) => {
                tracing::warn!(error = %e, "pglock: #[advisory] release failed after the function failed");
                output
            }
            (output, Ok(())) => output,
        }
    }
}

/// The return types of a Skip function.
#[diagnostic::on_unimplemented(
    message = "#[pglock::advisory(side_effect = Skip)] cannot return `{Self}`: a skipped call needs a value that says \"not run\"",
    label = "return `()`, `Option<T>`, `Result<(), E>` or `Result<Option<T>, E>` here",
    note = "a skipped call returns `()`, `None`, `Ok(())` or `Ok(None)`; with a `Result`, `E: From<pglock::Error>` receives connection errors (with `()`/`Option<T>` they are logged with `tracing` and the call counts as skipped)"
)]
pub trait SkipValue: Sized {
    /// The value of a skipped call.
    fn skipped() -> Self;
    /// The value when the lock could not even be tried (no default pool,
    /// connection failed …).
    fn from_lock_error(lock: &LockId, error: Error) -> Self;
    /// As [`RaiseValue::after_release`].
    fn after_release(self, released: Result<(), Error>) -> Self;
}

/// A `()`/`Option` Skip function cannot return an error: a connection error is
/// logged and the call counts as not run, but a programming error (no default
/// pool, a lease or label on a shared session, a lease under the floor, an empty
/// name …) would then pass for a busy lock forever. It panics instead.
fn log_not_run(lock: &LockId, error: Error) {
    if error.is_misuse() || error.is_invalid_argument() {
        panic!(
            "#[pglock::advisory] function on lock {lock} cannot run, and never will as \
             written: {error}. This is a programming error, not a busy lock (return a \
             `Result` to receive it as an error instead of this panic)"
        );
    }
    if error.is_lost() {
        // `on_lost = cancel` stopped the body.
        tracing::error!(lock = %lock, error = %error, "pglock: #[advisory] body stopped: its lock was lost");
    } else {
        tracing::error!(lock = %lock, error = %error, "pglock: #[advisory] function not run: its lock could not be tried");
    }
}

fn log_release_error(released: Result<(), Error>) {
    if let Err(e) = released {
        tracing::error!(error = %e, "pglock: #[advisory] function ran but its lock could not be released cleanly");
    }
}

impl SkipValue for () {
    fn skipped() -> Self {}
    fn from_lock_error(lock: &LockId, error: Error) -> Self {
        log_not_run(lock, error);
    }
    fn after_release(self, released: Result<(), Error>) -> Self {
        log_release_error(released);
    }
}

impl<T> SkipValue for Option<T> {
    fn skipped() -> Self {
        None
    }
    fn from_lock_error(lock: &LockId, error: Error) -> Self {
        log_not_run(lock, error);
        None
    }
    fn after_release(self, released: Result<(), Error>) -> Self {
        log_release_error(released);
        self
    }
}

impl<E: From<Error>> SkipValue for Result<(), E> {
    fn skipped() -> Self {
        Ok(())
    }
    fn from_lock_error(_: &LockId, error: Error) -> Self {
        Err(E::from(error))
    }
    fn after_release(self, released: Result<(), Error>) -> Self {
        RaiseValue::after_release(self, released)
    }
}

impl<T, E: From<Error>> SkipValue for Result<Option<T>, E> {
    fn skipped() -> Self {
        Ok(None)
    }
    fn from_lock_error(_: &LockId, error: Error) -> Self {
        Err(E::from(error))
    }
    fn after_release(self, released: Result<(), Error>) -> Self {
        RaiseValue::after_release(self, released)
    }
}

/// What `on_lost = …` says to do when the lock is lost while the body runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnLost {
    /// Let the body run on; [`HeldLock::lost`] tells it, and a `Result` function
    /// returns the lost error after the body (the default).
    Continue,
    /// Drop the body's future at once and return the lost error.
    Cancel,
}

/// The acquisition's outcome, kept in the function's frame while the body runs:
/// the body may borrow the lock's connection from it (`client = …`).
pub struct Held {
    guard: Option<Guard>,
    /// Why the lock was not acquired (`None` with no guard: busy, for Skip).
    error: Mutex<Option<Error>>,
    loss: Arc<Loss>,
}

impl Held {
    /// Raise: the guard, or why there is none.
    pub fn raise(acquired: Result<Guard, Error>) -> Held {
        match acquired {
            Ok(guard) => Held::new(Some(guard), None),
            Err(e) => Held::new(None, Some(e)),
        }
    }

    /// Skip: the guard, none (busy), or why there is none.
    pub fn skip(acquired: Result<Option<Guard>, Error>) -> Held {
        match acquired {
            Ok(guard) => Held::new(guard, None),
            Err(e) => Held::new(None, Some(e)),
        }
    }

    fn new(guard: Option<Guard>, error: Option<Error>) -> Held {
        Held {
            guard,
            error: Mutex::new(error),
            loss: Loss::new(),
        }
    }

    /// `client = …`: the lock's connection. The body runs only with the lock held.
    pub fn client(&self) -> &Client {
        self.guard
            .as_ref()
            .expect("the body of an attributed function runs only while its lock is held")
            .client()
    }

    fn take_error(&self) -> Option<Error> {
        self.error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

/// Turns the body's value into the call's, given the release's outcome.
type AfterRelease<R> = fn(R, Result<(), Error>) -> R;

/// The body's value, and what to do with it once the lock is released.
pub struct Finished<R> {
    output: R,
    /// `None`: there is no lock to release (not acquired, or lost and cancelled).
    after_release: Option<AfterRelease<R>>,
}

/// Runs `body` with [`held()`](crate::held()) describing the lock, watching for its
/// loss when asked ([`HeldLock::lost`]) or told (`on_lost = cancel`, which then
/// drops `body` and returns the lost error).
async fn body_phase<F: Future>(
    guard: &Guard,
    loss: &Arc<Loss>,
    on_lost: OnLost,
    body: F,
) -> Result<F::Output, Error> {
    let mut body = pin!(held::scope(HeldLock::of(guard, loss.clone()), body));
    let mut watch = pin!(async {
        if on_lost == OnLost::Continue {
            loss.wanted().await;
        }
        guard.lost().await
    });
    let mut watching = true;
    poll_fn(|cx| {
        if let Poll::Ready(output) = body.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        if watching {
            if let Poll::Ready(lost) = watch.as_mut().poll(cx) {
                watching = false;
                loss.set_lost(guard.id(), &lost);
                if on_lost == OnLost::Cancel {
                    tracing::warn!(error = %lost, "pglock: lock lost; #[advisory] body cancelled");
                    return Poll::Ready(Err(lost));
                }
                tracing::warn!(error = %lost, "pglock: lock lost while the #[advisory] body runs");
            }
        }
        Poll::Pending
    })
    .await
}

/// What a function's return type makes of each outcome: the one place the return
/// type is checked against the side effect (a plain function call, so a return
/// type that does not fit is reported once), as plain function pointers, so that
/// the async helpers need no bound on it.
pub struct Outcomes<R> {
    /// The lock was not acquired: busy (`None`, Skip only) or an error.
    not_run: fn(&Advisory, Option<Error>) -> R,
    after_release: AfterRelease<R>,
}

/// Raise: `Result<T, E>` with `E: From<pglock::Error>`.
pub fn raise_outcomes<R: RaiseValue>() -> Outcomes<R> {
    Outcomes {
        not_run: |_, error| {
            R::from_lock_error(error.expect("a Raise acquisition gives a guard or an error"))
        },
        after_release: R::after_release,
    }
}

/// Skip: `()`, `Option<T>`, `Result<(), E>` or `Result<Option<T>, E>`.
pub fn skip_outcomes<R: SkipValue>() -> Outcomes<R> {
    Outcomes {
        not_run: |lock, error| match error {
            None => skipped(lock),
            Some(error) => R::from_lock_error(lock.id(), error),
        },
        after_release: R::after_release,
    }
}

/// Session lock: runs `body` if the lock was acquired and hands back its value
/// for [`finish`]; otherwise the not-run value (`Err(E::from(error))`, or the
/// skipped value) without polling `body`. If `body` panics or this future is
/// dropped, the guard (in `held`, in the function's frame) is dropped and its
/// `Drop` releases the lock.
pub async fn run<R, F>(
    lock: &Advisory,
    held: &Held,
    on_lost: OnLost,
    outcomes: Outcomes<R>,
    body: F,
) -> Finished<R>
where
    F: Future<Output = R>,
{
    let Some(guard) = &held.guard else {
        return Finished {
            output: (outcomes.not_run)(lock, held.take_error()),
            after_release: None,
        };
    };
    match body_phase(guard, &held.loss, on_lost, body).await {
        Ok(output) => Finished {
            output,
            after_release: Some(outcomes.after_release),
        },
        Err(lost) => Finished {
            output: (outcomes.not_run)(lock, Some(lost)),
            after_release: None,
        },
    }
}

/// Releases the lock (awaited, so it is free when the function returns) and
/// gives the body's value — turned into the release's error if the lock was lost.
pub async fn finish<R>(mut held: Held, finished: Finished<R>) -> R {
    match (held.guard.take(), finished.after_release) {
        (Some(guard), Some(after_release)) => after_release(finished.output, guard.release().await),
        // Lost and cancelled: dropping the guard queues what can still be done.
        _ => finished.output,
    }
}

impl Drop for Held {
    /// The call is over (returned, panicked or dropped): a [`HeldLock::lost`]
    /// still waiting in a task the body spawned hears that the lock is gone.
    fn drop(&mut self) {
        self.loss.set_ended();
    }
}

/// Raise, transaction lock: `Some(value to return)` when the lock was not acquired.
pub fn xact_raise<R: RaiseValue>(acquired: Result<(), Error>) -> Option<R> {
    acquired.err().map(R::from_lock_error)
}

/// Skip, transaction lock: `Some(value to return)` when the lock is busy or could
/// not be tried.
pub fn xact_skip<R: SkipValue>(lock: &Advisory, acquired: Result<bool, Error>) -> Option<R> {
    match acquired {
        Ok(true) => None,
        Ok(false) => Some(skipped(lock)),
        Err(error) => Some(R::from_lock_error(lock.id(), error)),
    }
}

fn skipped<R: SkipValue>(lock: &Advisory) -> R {
    tracing::debug!(lock = %lock.id(), "pglock: lock busy; #[advisory] function skipped");
    R::skipped()
}
