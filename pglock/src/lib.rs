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
//!   A source is a [`deadpool_postgres::Pool`], a [`Session`] or a [`Locker`] (many
//!   locks on a few shared connections); a connection you
//!   already hold can be lent with [`.acquire_on(&mut client)`](Advisory::acquire_on).
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
//! dropped, or until the session ends; they ignore transaction rollback.
//!
//! # Sharing a connection
//!
//! PostgreSQL counts holds per *server session*: a session that takes a lock it
//! already holds is granted it again (both "granted"), and an unlock releases
//! whichever hold it finds. So every source — a pool, a [`Session`] — keeps a
//! ledger of the holds taken through it. Two guards of one source on one name
//! exclude each other in the process: the second waits there (in order, within its
//! timeout) rather than stacking on a shared session or spending a second pooled
//! connection to wait on itself; shared guards share. At most one attempt per name
//! is on a connection at a time, so the cleanup after a failed, timed-out or
//! cancelled wait releases only what that attempt produced, never another guard's
//! hold. A task that would wait without a timeout for its own hold gets
//! [`Error::is_deadlock`] at once. Settings belong to the server session: a
//! per-guard [`lease`](Advisory::lease) or [`label`](Advisory::label) is refused on a
//! shared [`Session`]. To lock on a connection you already hold, see
//! [`Advisory::acquire_on`].
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
//! Every async method documents its cancel safety. Dropping a session-lock acquire
//! future while it waits never leaves the lock held: through a pool, a cancel
//! request ends the server-side wait and the connection is closed rather than
//! reused (so a late cancel cannot hit its next user); through a [`Session`], a
//! release-if-granted is queued behind the wait and runs when it ends (a cancel
//! request could hit another task's statement on the shared connection). Dropping
//! [`XactAdvisory::acquire_in`] mid-wait queues a rollback to pglock's savepoint
//! behind the wait, so the transaction is usable, and without the lock, once the
//! wait ends.
//! Dropping a guard queues the unlock at once, without blocking (on a [`Locker`],
//! an exclusive guard's unlock goes with the next acquisition of the same lock, or
//! from a task as soon as it runs, whichever comes first); a pooled
//! connection is returned to its pool only after its lock is released, and closed
//! instead if that fails. Nothing pglock does changes a setting that could reach
//! the pool — though statements you run yourself through [`Guard::client`] can.
//!
//! The timeout bounds the wait for the *lock*. Waiting for a pooled connection is
//! bounded by the pool's own `wait_timeout` (without one, an exhausted pool waits);
//! a session's `statement_timeout` still applies to a lock wait and ends it with a
//! database error, SQLSTATE 57014.
//!
//! # Failure modes
//!
//! Each failure is a distinct [`ErrorKind`]: not acquired, deadlock, lost (released
//! but not held), lock table full, connection lost, pool, invalid argument, misuse,
//! standby, and other database errors with their SQLSTATE ([`Error::code`]). A
//! server failover or a terminated backend loses every advisory lock of its
//! sessions; [`Guard::release`] then says [`is_lost`](Error::is_lost).
//!
//! # Replicas and failover
//!
//! Advisory locks live on the server that grants them and are not replicated: a
//! hot standby would grant a lock the primary holds. So every lock statement
//! checks `pg_is_in_recovery()` in the same statement (no extra round trip) and,
//! on a standby, takes nothing and fails with [`is_standby`](Error::is_standby) —
//! session and transaction locks alike. To find the primary after a failover,
//! list every server in the URL with `target_session_attrs=read-write`
//! (`postgres://app@db1,db2/app?target_session_attrs=read-write`): `tokio-postgres`
//! then connects to whichever takes writes, for [`Session::connect`] and for pools
//! alike. Fencing tokens carry the server's timeline, so they keep increasing
//! across a promotion even when the last ones never reached the standby (see
//! [`fencing_token_parts`]).
//!
//! # Production safety
//!
//! What lock services (Chubby, etcd, ZooKeeper) give their users, on PostgreSQL:
//!
//! - **Loss notification.** [`Guard::is_held`] asks the server;
//!   [`Guard::lost`] completes when the lock is lost — within 20 ms of its
//!   connection closing (backend terminated, server restarted), at the next
//!   active check ([`Advisory::check_every`], 5 s by default), or at the guard's
//!   local deadline when the server stops answering (see "Partitions"). Race it
//!   against the critical section with `tokio::select!`.
//! - **Leases.** [`Advisory::lease`] gives the lock a time-to-live that the
//!   *server* enforces (`idle_session_timeout`, PostgreSQL 14+): a holder that
//!   stops renewing ([`Guard::renew`], or [`Advisory::auto_renew`] while the
//!   process runs) is cut off, and its lock freed, within the time-to-live.
//! - **Fencing tokens.** [`Advisory::fencing`] issues, with every acquisition, a
//!   token strictly greater than all earlier ones for that lock, across restarts
//!   (one table: [`install_fencing`]). Storage that remembers the highest token it
//!   accepted can then refuse a stale holder's writes (the `fencing` example).
//! - **Identity.** [`Guard::acquisition_id`] is unique per acquisition;
//!   [`Advisory::label`] shows a holder label as the session's `application_name`,
//!   in [`status`] and in other callers' not-acquired errors.
//! - **Dead clients.** [`configure_keepalives`] (applied by [`Session::connect`])
//!   makes the server notice a vanished client, and free its locks, within about
//!   25 s instead of the operating system's two hours.
//! - **Partitions.** A guard learns that its lock may be gone *before* the server
//!   can give it to anyone else: its local deadline, next section.
//!
//! # Partitions
//!
//! A holder cut off from the server — its process runs, its network does not —
//! is the hard case of every lock service: the server frees the lock when it
//! decides the client is gone and grants it to the next waiter, and a holder that
//! still believes it holds the lock then acts as a second holder. So every
//! session-lock [`Guard`] with a known *server bound* keeps a local deadline, as
//! Chubby's clients keep a local lease that ends before the master's:
//!
//! - **Server bound**: the least time the server needs to free the lock over a
//!   connection that went silent. With keepalives ([`Keepalive`];
//!   [`Session::connect`] applies the default, and [`Session::connect_with`] yours)
//!   it is `idle + interval × retries`, 25 s by default
//!   ([`Keepalive::server_bound`]); with a [lease](Advisory::lease) it is the
//!   time-to-live; with both, the shorter.
//! - **Last confirmed contact**: the moment a request was sent on the lock's
//!   connection whose answer came back — the grant itself (counted when its answer
//!   arrives), each active check of [`Guard::lost`] and [`Guard::is_held`], each
//!   lease renewal. The server cannot have last heard from the client earlier.
//!   It is kept per connection: on a shared [`Session`] one guard's answered check
//!   counts for every guard on it. pglock adds no traffic of its own for it.
//! - **Deadline** ([`Guard::deadline`]) = last confirmed contact + server bound ×
//!   (1 − [`ASSUMED_DRIFT_PERCENT`] %) − safety margin ([`Advisory::safety_margin`],
//!   by default a tenth of the bound: 2.5 s with the default keepalives). Past
//!   it, without a newer answer, [`Guard::lost`] completes, [`Guard::is_held`]
//!   says `false`, both without waiting for the server.
//!
//! **The guarantee.** A guard reports its lock lost at least the safety margin
//! before the server could free it for another holder, under these assumptions:
//! the client measures time on its monotonic clock only (never the wall clock);
//! the server's clock runs at most 1 % faster than the client's (real clocks
//! differ by far less; the 1 % is taken off the bound); the margin covers the time
//! an answer spends on its way back from the server (for the grant), the 20 ms
//! between two looks of [`Guard::lost`] at the clock, and the time the holder
//! needs to stop acting on the lock once told; and the server's settings are
//! those pglock knows — no `idle_session_timeout` set on the server
//! shorter than the bound, and for a pool, the keepalives you state with
//! [`Advisory::keepalive`] are the ones its connections have. Losing early is
//! safe; losing late is not, so every estimate errs early.
//!
//! **Keeping a healthy lock.** Confirmations must come before the deadline: a
//! plain lock is confirmed by the active checks of [`Guard::lost`] (every
//! [`Advisory::check_every`]; by default 5 s or half the deadline span, whichever
//! is shorter, each due a check interval after the last contact), a leased lock by
//! its renewals ([`Advisory::auto_renew`]: every third of the time-to-live;
//! [`Guard::renew`]). Settings that could not keep a healthy lock — a
//! `check_every` longer than half the deadline span, a margin that leaves no
//! deadline, an automatically renewed lease whose renewals (every third of it)
//! come less often than half the deadline span of the keepalives — are refused
//! when acquiring ([`Error::is_invalid_argument`]), before anything is sent. A plain lock that nobody watches has no checks: its
//! deadline lapses, and [`Guard::lost`] or [`Guard::is_held`] then asks the server
//! first (an answer in time means it is still held; the session never ended). A
//! connection kept busy by a long statement gets no answers either: its guards
//! report loss when their deadline passes.
//!
//! **When pglock cannot know the bound** — a lock taken through a pool, or a
//! [`Session::new`] around your own connection, without [`Advisory::keepalive`]
//! and without a lease; a [`BorrowedGuard`] — there is no local deadline: loss is reported
//! when the connection closes or an active check finds the lock gone, which over
//! a dead link can be after the server freed it. State the keepalives, or take a
//! lease.
//!
//! **Deadlines and fencing tokens.** The local deadline narrows the window in which
//! two processes believe they hold the lock to zero for a holder that checks —
//! that races its work against [`Guard::lost`] and stops when it completes. It
//! cannot stop a holder that does not check, or that is paused (a long garbage
//! collection, a stopped VM) between its check and its write: the storage it
//! writes to must then refuse stale writes itself, by [fencing
//! token](Advisory::fencing). Use both where a stale write must never land.
//!
//! # Observability
//!
//! [`status`] lists holders (pid, mode, application name, client address, session
//! start) and waiters of a lock. Acquire and release run in `tracing` spans
//! (`pglock.acquire` with the wait time in `wait_us`, `pglock.release`).
//!
//! # Features
//!
//! | feature | API |
//! |---|---|
//! | names → keys, stable contract | [`key_for`], [`LockId`], [`LockKey`] |
//! | exclusive / shared | [`Advisory::shared`] |
//! | session / transaction scope | [`Guard`], [`XactAdvisory::acquire_in`] |
//! | server-side timeouts, one round trip | [`Advisory::timeout`] |
//! | Raise / Return / Skip | [`Advisory::acquire`], [`Advisory::try_acquire`], [`Advisory::run`], the attribute |
//! | pools and sessions | [`deadpool_postgres::Pool`], [`Session`] |
//! | many locks on few connections | [`Locker`] |
//! | metrics (feature `metrics`) | `pglock_acquisitions_total`, `pglock_wait_seconds`, `pglock_hold_seconds`, `pglock_locks_held`, `pglock_losses_total` through the `metrics` facade (README, "Metrics") |
//! | a connection you hold | [`Advisory::acquire_on`], [`BorrowedGuard`], [`Guard::client_mut`] |
//! | introspection | [`status`], [`release_all`] |
//! | loss, leases, fencing, labels | [`Guard::lost`], [`Advisory::lease`], [`Advisory::fencing`], [`Advisory::label`] |
//! | partition safety (local deadline) | [`Guard::deadline`], [`Keepalive`], [`Advisory::keepalive`], [`Advisory::safety_margin`] |
//! | default pool for the attribute | [`set_default_pool`] |
//! | poolers | [`Advisory::pooler_safe`], [`Error::is_transaction_pooler`] |
//! | standbys, failover | [`Error::is_standby`], [`fencing_token_parts`] |
//! | names on the server, listing | [`install_registry`], [`locks`], [`LockFilter`] |
//! | other libraries' keys (feature `schemes`) | `LockKey::sqlx`, `LockKey::django_pglock`, `LockKey::distributed_lock`, `LockKey::with_advisory_lock` |
//! | pools with pglock's settings; TLS (feature `tls`) | [`pool()`], `pool_with_tls`, `Session::connect_tls` |

#![cfg_attr(docsrs, feature(doc_auto_cfg))]

// Layers, bottom up: keys and SQL; the connection layer (connections, sources,
// the hold ledger); guards; acquisition; the builders; attribute support.
mod error;
mod keepalive;
mod key;
#[cfg(feature = "schemes")]
mod schemes;
mod sql;

// Connecting: connection strings with libpq's TLS parameters, TLS (feature
// `tls`), the pool helper.
mod conninfo;
mod pool;
#[cfg(feature = "tls")]
pub mod tls;

mod conn;

mod fencing;
mod guard;

mod acquire;
mod borrowed;
mod metrics;

mod inspect;
mod listing;
mod lock;
mod registry;
mod xact;

mod attr;
mod defaults;
mod held;

pub use acquire::MIN_LEASE;
pub use borrowed::BorrowedGuard;
pub use conn::{Borrowable, Locker, LockerBuilder, Session, Source};
pub use defaults::{default_pool, set_default_locker, set_default_pool};
pub use error::{Error, ErrorKind, Holder};
pub use fencing::{fencing_token_parts, install_fencing, FENCING_SCHEMA};
pub use guard::{Guard, ASSUMED_DRIFT_PERCENT, DEFAULT_CHECK_EVERY};
pub use held::{held, HeldLock};
pub use inspect::{release_all, status, LockHolder, LockStatus};
pub use keepalive::{configure_keepalives, Keepalive};
pub use key::{key_for, LockId, LockKey, Mode};
pub use listing::{locks, ListedLock, LockFilter, DIRECTORY_SEPARATORS};
pub use lock::{advisory, Advisory};
pub use pool::pool;
#[cfg(feature = "tls")]
pub use pool::pool_with_tls;
pub use registry::{
    disable_registry, enable_registry, install_registry, prune_registry, register,
    registry_enabled, REGISTRY_MEMORY, REGISTRY_SCHEMA,
};
pub use xact::{InTransaction, XactAdvisory};

pub use deadpool_postgres;
pub use tokio_postgres;

/// Runs an `async fn` under an advisory lock: at most one call at a time across
/// every process on the database (or, with `shared`, any number of shared calls
/// and no exclusive one).
///
/// ```no_run
/// #[derive(Debug)]
/// enum AppError { Lock(pglock::Error) /* , … */ }
/// impl From<pglock::Error> for AppError {
///     fn from(e: pglock::Error) -> Self { AppError::Lock(e) }
/// }
///
/// // Raise (the default): waits until the lock is free, then runs. The id is
/// // "<crate>::<module path>::send_invoices". The pool is the one installed with
/// // `pglock::set_default_pool` at start-up.
/// #[pglock::advisory]
/// async fn send_invoices() -> Result<u32, AppError> {
///     Ok(42)
/// }
///
/// // Skip: one try; if another process holds "billing.nightly", return at once
/// // without running the body.
/// #[pglock::advisory("billing.nightly", side_effect = Skip, pool = pool)]
/// async fn nightly(pool: &deadpool_postgres::Pool) -> Option<u32> {
///     Some(7)
/// }
///
/// # async fn demo(pool: deadpool_postgres::Pool) -> Result<(), AppError> {
/// pglock::set_default_pool(pool.clone()).expect("installed once");
/// let sent = send_invoices().await?;
/// match nightly(&pool).await {
///     Some(n) => println!("ran: {n}"),
///     None => println!("skipped: another process is running it"),
/// }
/// # Ok(()) }
/// ```
///
/// # Arguments
///
/// All optional, in any order after the id:
///
/// | argument | meaning | default |
/// |---|---|---|
/// | `"name"` or an expression, first (or `id = …` anywhere) | the lock id: a name (`&str`, `String`), an `i64` key, an `(i32, i32)` pair or a [`LockKey`]; an expression may use the parameters — also bindings of destructured ones (`Job { name, .. }: Job`) — and `self` (`format!("account:{id}")`, `self.name.as_str()`), and is borrowed, not moved. Write `id = shared` to lock on a parameter whose name is also a flag | [the default id](#the-default-id): free functions only |
/// | `timeout = "250ms"` | how long to wait: a literal with a unit (`ns`, `us`, `ms`, `s`, `m`, `h`; `"1.5s"`, `"1m30s"`), checked at compile time, or any `Duration` or `Option<Duration>` expression, evaluated at each call (`timeout = Duration::from_secs(n)`, `timeout = config.lock_wait`); `None` means the default | Raise: wait until granted; Skip: try once |
/// | `shared` | take the lock in shared mode: shared calls run together, an exclusive call waits for all of them (and they for it). Not with `fencing` (below) | exclusive |
/// | `side_effect = Raise \| Skip` | what a busy lock does (below). `Return` has no meaning on a function and is a compile error | `Raise` |
/// | `pool = <expr>` | where the session lock's connection comes from, evaluated at each call: a [`deadpool_postgres::Pool`] or a [`Session`], or a reference, `Arc` or `Box` of one (`pool = &self.pool`, `pool = db`) | the pool installed with [`set_default_pool`] |
/// | `xact = <parameter>` | take a transaction-level lock in that parameter (or a binding of a destructured one, or a field of `self`: `xact = self.tx`), a [`tokio_postgres::Transaction`] or [`deadpool_postgres::Transaction`] (by value or by reference); it is held until the transaction commits or rolls back, not until the function returns. Not with `pool`, `fencing`, `lease`, `label`, `client` or `on_lost`: a transaction lock has no guard | a session lock |
/// | `fencing` | issue a fencing token with each acquisition ([`Advisory::fencing`]), strictly greater than every token issued before for the lock; the body reads it with [`held()`]`.unwrap().fencing_token()` (below). Needs [`install_fencing`] once per database. Refused with `shared` (a compile error): shared holders run at once and would each get a token, so storage that rejects lower tokens would reject a live holder | no token |
/// | `lease = "30s"` | take the lock with a lease ([`Advisory::lease`]) that renews itself ([`Advisory::auto_renew`]) every third of its time-to-live while the process runs; if the process hangs or its runtime freezes for the time-to-live, the *server* ends the lock's session and frees the lock, and the call then returns an error instead of `Ok`. A literal with a unit, checked at compile time, or any `Duration` expression, evaluated at each call. At least **1 s** ([below](#leases)); PostgreSQL 14 or later; not through a shared [`Session`] | no lease: held until the body returns or the connection dies |
/// | `label = <expr>` | a holder label ([`Advisory::label`]): a `&str`/`String` expression (`label = "worker-7"`, `label = self.worker_id.as_str()`, `label = format!("host-{n}")`), evaluated at each call and borrowed; while the body runs, the lock's session shows it as its `application_name` ([`status`], `pg_stat_activity`, the not-acquired errors of others) Not through a shared [`Session`] | no label |
/// | `client = db` | bind the lock's own connection ([`Guard::client`]) in the body as `db: &tokio_postgres::Client`, so that a body that queries needs no second connection (a pool of one suffices). Leave it as you found it (no `SET`, no open transaction) | not bound |
/// | `on_lost = cancel` | stop the body when the lock is lost: its future is dropped at once and the call returns the lost error ([below](#loss)) | the body runs on and can watch [`HeldLock::lost`] |
/// | `crate = <path>` | where pglock is, for a renamed dependency (`my_lock = { package = "pglock", … }` → `crate = my_lock`) or a re-export (`crate = my_infra::pglock`) | `::pglock` |
///
/// Unknown, duplicated or malformed arguments are compile errors that point at
/// the offending token and say what is accepted.
///
/// A `label` is reset by a statement pipelined with the unlock before the pooled
/// connection goes back. A `lease` renews itself, and its renewing task needs a
/// handle of its own on the connection, so it takes the lock's connection out of
/// its pool for good (it is closed after the release): each leased call uses up a
/// pooled connection, which the pool replaces by connecting anew.
///
/// # The held lock in the body
///
/// While the body of a session-lock function runs, [`held()`] returns a
/// [`HeldLock`] describing its lock: the fencing token, the acquisition id, the
/// id, mode, label and lease. Outside an attributed body it returns `None`;
/// nested attributed functions see their own (the innermost) lock. It is a tokio
/// task-local, so it costs no round trip and the function's future stays `Send`;
/// tasks spawned from the body do not inherit it (pass them the `HeldLock`).
///
/// ```no_run
/// # #[derive(Debug)] enum AppError { Lock(pglock::Error) }
/// # impl From<pglock::Error> for AppError {
/// #     fn from(e: pglock::Error) -> Self { AppError::Lock(e) }
/// # }
/// // Each run writes with a fencing token; storage rejects a write whose token is
/// // lower than the highest it has seen, so a holder that paused and lost its
/// // lock cannot overwrite the work of the next one.
/// #[pglock::advisory("ledger.compact", fencing, lease = "30s", label = "compactor", pool = pool)]
/// async fn compact(pool: &deadpool_postgres::Pool) -> Result<u64, AppError> {
///     let token = pglock::held()
///         .and_then(|lock| lock.fencing_token())
///         .expect("taken with `fencing`");
///     let client = pool.get().await.map_err(pglock::Error::from)?;
///     let written = client
///         .execute(
///             "UPDATE ledger_state SET compacted_at = now(), fence = $1 WHERE fence < $1",
///             &[&token],
///         )
///         .await
///         .map_err(pglock::Error::from)?;
///     Ok(written) // 0: a newer holder already wrote; this one was stale
/// }
///
/// # async fn demo(pool: deadpool_postgres::Pool) -> Result<(), AppError> {
/// let client = pool.get().await.map_err(pglock::Error::from)?;
/// pglock::install_fencing(&client).await?; // once per database; idempotent
/// compact(&pool).await?;
/// assert!(pglock::held().is_none()); // outside the body
/// # Ok(()) }
/// ```
///
/// # The default id
///
/// For a free function: `concat!(module_path!(), "::", <function name>)`, e.g.
/// `my_app::jobs::send_invoices` for `send_invoices` in module `jobs` of crate
/// `my_app` (key `5126864360601373363`, see [`key_for`]). It is part of the stable
/// contract: moving or renaming the function changes the lock, so a deployment that
/// mixes old and new versions would not exclude itself — give an explicit id to
/// functions that may move.
///
/// Where the attribute cannot make the default tell two functions apart, it refuses
/// to default, with a compile error that shows the attribute to write:
///
/// - **Methods** (taking `self` in any form), trait default methods included: the
///   attribute sees the method, not its type, so `Billing::run` and
///   `Shipping::run` — or one default method used by two impls — would share a
///   lock. Write `#[pglock::advisory("my_app::Billing::run")]`, or an id from
///   `self` (`#[pglock::advisory(self.job_name.as_str())]`).
/// - **Generic functions** (type or const parameters, `impl Trait` arguments):
///   every instance would share one lock. Write
///   `#[pglock::advisory(concat!(module_path!(), "::f"))]` to share it on purpose,
///   or an id per instance (`format!("f::{}", std::any::type_name::<T>())`).
///
/// Two cases it cannot see, so give them explicit ids yourself: an associated
/// function without `self` (`impl Billing { async fn run(pool: &Pool) }`), which
/// gets the free-function default `my_app::run`; and same-named functions nested
/// in different functions of one module (`fn a() { async fn job() }` and
/// `fn b() { async fn job() }`), which share `module_path!()::job`.
///
/// # Sources: exclusion, nesting and recursion
///
/// `pool = …` (or the default pool) is where the lock's connection comes from.
/// Through every source the promise is the same — at most one call at a time
/// holds an exclusive lock, across tasks of this process and across processes:
///
/// | source | how calls of this process exclude each other |
/// |---|---|
/// | a [`deadpool_postgres::Pool`] (also the default pool) | the pool's hold ledger admits one exclusive holder per key before a connection is checked out (so a waiting call does not hold a pooled connection); other processes through the server |
/// | a [`Session`] shared by many calls | the session's hold ledger: a second call waits in the process for the first (PostgreSQL alone would stack both holds on the one session) |
///
/// A call whose task **already holds the same lock through the same source** —
/// a nested call of another function with the same id, a recursive call, two calls
/// joined in one task (`join!`) — would wait for itself. Without a timeout it fails
/// at once with [`is_deadlock`](Error::is_deadlock) ("this task already holds the
/// lock through the same source") instead of hanging; with a timeout it waits that
/// long and fails with [`is_not_acquired`](Error::is_not_acquired). Run calls that
/// should take turns in tasks of their own (`tokio::spawn`).
///
/// A shared [`Session`] refuses `lease = …` and `label = …` (they are settings of
/// the server session that other calls share): the call fails with
/// [`is_misuse`](Error::is_misuse) and the body does not run. Take leased or
/// labelled locks through a pool.
///
/// # Loss
///
/// A lock is lost when its connection dies (backend terminated, server restarted,
/// network failure, lease expired): the server frees it and another process may
/// take it while the body still runs. The body can learn of it:
///
/// - [`held()`]`.unwrap().`[`lost()`](HeldLock::lost) completes with an
///   [`is_lost`](Error::is_lost) error within the bound of [`Guard::lost`] (20 ms
///   after the connection closes; otherwise at the next check, every
///   [`DEFAULT_CHECK_EVERY`]). Race it with `tokio::select!` around the work that
///   must not overlap another holder. The call starts watching only when a body
///   first asks, so bodies that never ask pay nothing. [`HeldLock::is_lost`] says,
///   without waiting, whether a loss has been seen.
/// - `on_lost = cancel` watches for the whole body: on loss the body's future is
///   dropped where it stands (at an `.await`) and the call returns the lost error
///   (`()`/`Option` Skip functions log it and return `()`/`None`). The trade-off:
///   the body must tolerate being stopped at any `.await` — as under any
///   cancellation — and a watch runs alongside it (a liveness query every check
///   interval on the lock's connection, none on a leased lock).
///
/// Either way a `Result` function whose body returns `Ok` returns the lost error
/// instead: the release found the lock gone.
///
/// # Leases
///
/// `lease = …` must be at least **1 s**: a literal below it is a compile error, a
/// `Duration` expression below it fails the call with
/// [`is_invalid_argument`](Error::is_invalid_argument) before anything is sent.
/// The lease renews itself every third of its time-to-live, so a 1 s lease leaves
/// a healthy process about 660 ms for a renewal's round trip and its scheduling
/// delays; shorter leases expire under ordinary load and leave the body running
/// without the lock.
///
/// # Busy locks and the return type
///
/// | `side_effect` | the function must return | when the lock is busy | when the lock cannot be tried (no default pool, connection failed …) |
/// |---|---|---|---|
/// | `Raise` (default) | `Result<T, E>` with `E: From<pglock::Error>` | `Err(E::from(e))` with [`e.is_not_acquired()`](Error::is_not_acquired), after the timeout | `Err(E::from(e))` |
/// | `Skip` | `()` | `()` | `()`, the error logged with `tracing`; a programming error [panics](#panics) |
/// | `Skip` | `Option<T>` | `None` | `None`, the error logged; a programming error [panics](#panics) |
/// | `Skip` | `Result<(), E>`, `E: From<pglock::Error>` | `Ok(())` | `Err(E::from(e))` |
/// | `Skip` | `Result<Option<T>, E>`, `E: From<pglock::Error>` | `Ok(None)` | `Err(E::from(e))` |
///
/// Either way the body does not run. Any other return type is a compile error
/// that names these. Use `Result` with Skip when connection errors must not pass
/// silently. `E` may be [`Error`] itself, your own error type with
/// `impl From<pglock::Error>`, or `Box<dyn std::error::Error + Send + Sync>`.
///
/// # Release
///
/// The lock is released when the body returns (also by `return` or `?`), and the
/// call returns only after the release has been confirmed, so a call that follows
/// finds the lock free. If the release shows that the lock was
/// [lost](Error::is_lost) while the body ran (its connection died), a function
/// returning `Result` returns that error instead of `Ok` — the body may have
/// overlapped with another holder; `()`/`Option` functions log it. When the body
/// panics, or the caller drops the future (a `select!`, a timeout, an aborted task),
/// the held [`Guard`] is dropped, which queues the unlock at once (see [`Guard`]).
/// The attribute costs what the guard API costs: one round trip to acquire, one to
/// release; the fencing token and the settings of `lease` and `label` are pipelined
/// in those round trips (but a `lease` takes a connection out of the pool for
/// good, so the pool opens a new one later).
///
/// # Equivalent code
///
/// `#[pglock::advisory("jobs.report", timeout = "2s", pool = pool)]` on
/// `async fn report(pool: &Pool) -> Result<T, E> { body }` behaves like:
///
/// ```no_run
/// # use std::time::Duration;
/// # async fn report(pool: &deadpool_postgres::Pool) -> Result<u32, pglock::Error> {
/// let guard = match pglock::advisory("jobs.report")
///     .timeout(Duration::from_secs(2))
///     .acquire(pool)
///     .await
/// {
///     Ok(guard) => guard,
///     Err(e) => return Err(e.into()), // busy, or no connection: the body is not run
/// };
/// let output: Result<u32, pglock::Error> = async move {
///     /* body */
///     Ok(1)
/// }
/// .await; // a panic or a dropped future drops `guard`, which releases the lock
/// match guard.release().await {
///     Err(e) if output.is_ok() => Err(e.into()), // the lock was lost meanwhile
///     _ => output,
/// }
/// # }
/// ```
///
/// With `side_effect = Skip` the acquisition is
/// [`try_acquire`](Advisory::try_acquire) (`Ok(None)` → return `()`/`None`/`Ok(None)`);
/// with `xact = tx` it is `advisory(id).xact().acquire_in(&tx)` (or
/// [`try_acquire_in`](XactAdvisory::try_acquire_in)) and there is no release: the
/// body follows and the lock ends with the transaction. A finite timeout there
/// leaves the transaction usable. `fencing`, `lease = ttl` and `label = l` add
/// `.fencing()`, `.lease(ttl).auto_renew()` and `.label(l)` to the builder; the
/// body runs with [`held()`] describing `guard` (a tokio task-local scoped around
/// the body's future), and `client = db` binds `let db = guard.client();` at its
/// start. An `xact` body sets nothing: there `held()` answers as it
/// does around the call.
///
/// # Where it applies
///
/// `async fn` only (a plain `fn`, a `fn` returning `impl Future` and a `const fn`
/// are compile errors that say what to write): free functions, methods taking
/// `&self`, `&mut self` or `self`, trait impl methods, generic functions and
/// `impl Trait` arguments.
///
/// **Send.** The function's future is `Send` when the body's future is `Send`
/// *and* its return type is: the body's value is kept across the release's
/// `.await` (the call returns only after the release is confirmed). So return
/// `Box<dyn Error + Send + Sync>`, not `Box<dyn Error>`, from a function you spawn.
///
/// **Attribute order.** Attributes expand from the top down, and each sees the
/// function as the ones above it left it. Put `#[pglock::advisory]` **first**:
///
/// ```text
/// #[pglock::advisory("jobs.report")] // first: sees the `async fn`
/// #[tracing::instrument(err)]        // its span covers the acquisition too, so a
///                                    // busy-lock error is recorded in it
/// async fn report() -> Result<(), AppError> { … }
///
/// #[pglock::advisory("jobs.test", pool = pool)]
/// #[tokio::test]                     // below: it still gets an `async fn`
/// async fn a_test() { … }
/// ```
///
/// Below `#[tracing::instrument]`, the span covers only the body, and a busy-lock
/// or connection error is returned outside it. Below `#[tokio::test]` or
/// `#[tokio::main]`, which turn the function into a plain `fn`, it is a compile
/// error that says to move it up.
///
/// # Panics
///
/// A `side_effect = Skip` function returning `()` or `Option<T>` has no way to
/// return an error, and a programming error must not pass for a busy lock: it
/// panics, with a message that says what to fix, when the call cannot run as
/// written — no default pool installed (and no `pool = …`), a `lease`/`label`
/// through a shared [`Session`], a lease under the floor, an invalid lock name.
/// Return `Result<(), E>` or `Result<Option<T>, E>` to receive these as errors
/// instead. Connection errors are still logged and counted as not run.
#[cfg(feature = "macros")]
#[doc(inline)]
pub use pglock_macros::advisory;

/// Support for code generated by `#[pglock::advisory]`. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::attr::*;
    pub use crate::defaults::require_default_pool;
}
