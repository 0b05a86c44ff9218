//! PostgreSQL advisory locks as a safe, fast coordination primitive for async
//! services.
//!
//! If your services already share a PostgreSQL database, they already share a lock
//! server. pglock turns its advisory locks into string-named locks with guards,
//! shared and transaction-level modes, server-side timeouts and an attribute that
//! makes a function run in one place at a time — correct under cancellation, pools,
//! timeouts and crashes.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let mut cfg = deadpool_postgres::Config::new();
//! cfg.url = Some("postgres://postgres:postgres@localhost:5432/postgres".into());
//! let pool = cfg.create_pool(Some(deadpool_postgres::Runtime::Tokio1), tokio_postgres::NoTls)?;
//!
//! // A scoped guard: wait at most 2 s for "reindex".
//! let guard = pglock::advisory("reindex")
//!     .timeout(Duration::from_secs(2))
//!     .acquire(&pool)
//!     .await?;
//! // … only one holder in the whole database gets here …
//! guard.release().await?; // or drop it: the lock is released either way
//!
//! // Skip the work when someone else is doing it.
//! let done = pglock::advisory("send_invoices").run(&pool, async { 7 }).await?;
//! assert!(done.is_none() || done == Some(7));
//! # Ok(()) }
//! ```
//!
//! # Entry points
//!
//! - [`advisory(name)`](advisory()) builds a lock: [`.shared()`](Advisory::shared),
//!   [`.timeout(d)`](Advisory::timeout), [`.xact()`](Advisory::xact). Then
//!   [`.acquire(&source)`](Advisory::acquire) (a [`Guard`] or an error),
//!   [`.try_acquire(&source)`](Advisory::try_acquire) (`Ok(None)` when busy) or
//!   [`.run(&source, future)`](Advisory::run) (skips the future when busy).
//!   A source is a [`deadpool_postgres::Pool`] or a [`Session`].
//! - [`advisory(name).xact().acquire_in(&tx)`](XactAdvisory::acquire_in) locks
//!   inside your transaction until it ends.
//! - `#[pglock::advisory]` on an `async fn` (feature `macros`, on by default): at
//!   most one run at a time across every process on the database.
//!
//! # Names and keys
//!
//! PostgreSQL locks integers. A name becomes a `bigint` key by SipHash-2-4 with a
//! zero key over its UTF-8 bytes ([`key_for`]): a stable contract, so every version
//! of pglock — and any other program that follows it — agrees on the key. Raw `i64`
//! keys and `(i32, i32)` pairs are accepted too; the pair form is a separate key
//! space on the server. Only the integer travels, as a bind parameter.
//!
//! ```
//! assert_eq!(pglock::key_for("billing.nightly").unwrap(), 7699165080005827737);
//! ```
//!
//! # Session and transaction locks
//!
//! Session locks (the default) are held by a [`Guard`] until it is released or
//! dropped, or until the session ends; they ignore transaction rollback. One session
//! can take the same lock again: PostgreSQL stacks the holds and each needs its
//! release. Through a pool, each guard has its own connection, so two guards on the
//! same name exclude each other — even in one task, where the second waits for the
//! first (never take the same name twice in one task through a pool without a
//! timeout). Through one [`Session`], they stack instead.
//!
//! Transaction locks ([`Advisory::xact`]) end with the transaction and cannot be
//! released early.
//!
//! # Timeouts
//!
//! No timeout waits until the lock is granted, whatever the session's
//! `lock_timeout`. A zero timeout tries once. Any other timeout is enforced by the
//! server (`lock_timeout`, set for that one statement and restored by it), so each
//! attempt is one round trip and leaves no setting changed. The server queues
//! waiters fairly and its deadlock detector sees them ([`Error::is_deadlock`]);
//! nothing polls.
//!
//! # Busy locks
//!
//! | you want | call | when busy |
//! |---|---|---|
//! | Raise | [`acquire`](Advisory::acquire) | `Err(e)`, `e.is_not_acquired()`, with the holder's pid |
//! | Return | [`try_acquire`](Advisory::try_acquire) | `Ok(None)` |
//! | Skip | [`run`](Advisory::run) | `Ok(None)`, the future never runs |
//!
//! # Cancel safety and pools
//!
//! Every async method documents its cancel safety. Dropping an acquire future while
//! it waits cancels the wait on the server and releases the lock if it was granted
//! meanwhile. Dropping a guard queues the unlock at once, without blocking; a
//! pooled connection is returned to its pool only after its lock is released, and
//! closed instead if that fails. Nothing pglock does changes a setting that could
//! reach the pool.
//!
//! # Failure modes
//!
//! Each failure is a distinct [`ErrorKind`]: not acquired, deadlock, lost (released
//! but not held), lock table full, connection lost, pool, invalid argument, misuse,
//! and other database errors with their SQLSTATE ([`Error::code`]). A server
//! failover or a terminated backend loses every advisory lock of its sessions;
//! [`Guard::release`] then says [`is_lost`](Error::is_lost).
//!
//! # Observability
//!
//! [`status`] lists holders (pid, mode, application name, client address, session
//! start) and waiters of a lock. Acquire and release run in `tracing` spans
//! (`pglock.acquire` with the wait time in `wait_us`, `pglock.release`).

#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod conn;
mod defaults;
mod error;
mod guard;
mod inspect;
mod key;
mod lock;
mod session;
mod sql;
mod xact;

pub use defaults::{default_pool, set_default_pool};
pub use error::{Error, ErrorKind, Holder};
pub use guard::Guard;
pub use inspect::{release_all, status, LockHolder, LockStatus};
pub use key::{key_for, LockId, LockKey};
pub use lock::{advisory, Advisory, Mode, Source};
pub use session::Session;
pub use xact::{InTransaction, XactAdvisory};

pub use deadpool_postgres;
pub use tokio_postgres;

#[cfg(feature = "macros")]
#[doc(inline)]
pub use pglock_macros::advisory;

/// Support for code generated by `#[pglock::advisory]`. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::defaults::require_default_pool;
}
