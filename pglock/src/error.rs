//! The one error type of pglock.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use tokio_postgres::error::SqlState;

use crate::key::LockId;

/// What went wrong, for matching. Use the predicates on [`Error`] for the common
/// cases; this enum may grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The lock is held by someone else and was not granted within the timeout
    /// (or at once, for a zero timeout). SQLSTATE 55P03 when the server timed out.
    NotAcquired,
    /// The server's deadlock detector chose this wait to break a cycle (40P01).
    Deadlock,
    /// The lock was not held when it was released: the session ended, or someone
    /// called `pg_advisory_unlock_all()` on it.
    Lost,
    /// The server's shared lock table is full (53200): raise
    /// `max_locks_per_transaction` or hold fewer locks at once.
    LockTableFull,
    /// The connection to the server is closed or was terminated.
    ConnectionLost,
    /// The pool could not hand out a connection (timeout, closed, or connecting
    /// failed).
    Pool,
    /// A lock name or argument is invalid (empty name, timeout too large …).
    InvalidArgument,
    /// The library was used in a way it does not support (for example no default
    /// pool was installed for `#[advisory]`).
    Misuse,
    /// The connection goes through a transaction-pooling proxy (PgBouncer's
    /// `pool_mode = transaction`, RDS Proxy …), where consecutive statements may
    /// run in different server sessions: session locks cannot work there. Use
    /// [`Advisory::pooler_safe`](crate::Advisory::pooler_safe), session pooling,
    /// or a direct connection.
    TransactionPooler,
    /// The server is a standby (in recovery): advisory locks are not replicated, so
    /// a lock taken there would exclude nobody on the primary, and none was taken.
    /// Connect to the primary (a multi-host URL with
    /// `target_session_attrs=read-write`, or the primary's own address).
    Standby,
    /// Any other error from the server or the driver; see [`Error::code`].
    Db,
}

/// The error type of every fallible pglock operation.
///
/// Match on it with the predicates ([`is_not_acquired`](Error::is_not_acquired),
/// [`is_deadlock`](Error::is_deadlock) …) or [`kind`](Error::kind). The driver error,
/// if any, is the [`source`](std::error::Error::source), and its SQLSTATE is
/// [`code`](Error::code).
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: String,
    lock: Option<LockId>,
    timeout: Option<Duration>,
    holder: Option<Holder>,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

/// The session that held a lock when an attempt to take it failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// Backend process id of the holding session (`pg_backend_pid()` there).
    pub pid: i32,
    /// The holder's `application_name` (empty when it set none).
    pub application_name: String,
}

impl Error {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                lock: None,
                timeout: None,
                holder: None,
                source: None,
            }),
        }
    }

    pub(crate) fn invalid_argument(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    pub(crate) fn misuse(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Misuse, message)
    }

    /// A lock statement found the server in recovery (see [`ErrorKind::Standby`]).
    pub(crate) fn standby(lock: &LockId) -> Error {
        Error::new(
            ErrorKind::Standby,
            "the server is a standby (pg_is_in_recovery()): advisory locks are not \
             replicated, so a lock taken there would exclude nobody on the primary, and none \
             was taken; connect to the primary: list the hosts with \
             target_session_attrs=read-write (postgres://user@primary,standby/db?\
             target_session_attrs=read-write), or use the primary's address",
        )
        .with_lock(lock)
    }

    pub(crate) fn not_acquired(lock: &LockId, timeout: Duration) -> Error {
        let message = if timeout.is_zero() {
            "lock is held by another session".to_string()
        } else {
            format!("lock was not granted within {timeout:?}")
        };
        Error::new(ErrorKind::NotAcquired, message)
            .with_lock(lock)
            .with_timeout(timeout)
    }

    /// Not acquired because another guard of this process, through the same
    /// source, holds the lock (the ledger refused; the server was not asked).
    pub(crate) fn not_acquired_here(lock: &LockId, timeout: Duration) -> Error {
        let message = if timeout.is_zero() {
            "lock is held by another guard of this process (through the same source)".to_string()
        } else {
            format!(
                "lock was not granted within {timeout:?}: another guard of this process holds \
                 it (through the same source)"
            )
        };
        Error::new(ErrorKind::NotAcquired, message)
            .with_lock(lock)
            .with_timeout(timeout)
    }

    pub(crate) fn lost(lock: &LockId) -> Error {
        crate::metrics::lost();
        Error::new(
            ErrorKind::Lost,
            "lock was no longer held when it was released (its session ended or \
             pg_advisory_unlock_all() ran on it)",
        )
        .with_lock(lock)
    }

    pub(crate) fn lost_while_held(lock: &LockId, why: &str) -> Error {
        crate::metrics::lost();
        Error::new(ErrorKind::Lost, format!("lock lost while held: {why}")).with_lock(lock)
    }

    pub(crate) fn pool(err: deadpool_postgres::PoolError) -> Error {
        let why = match &err {
            // Connecting failed: say what the server (or the network) said.
            deadpool_postgres::PoolError::Backend(e) => describe(e),
            deadpool_postgres::PoolError::PostCreateHook(h) => h.to_string(),
            other => other.to_string(),
        };
        let mut e = Error::new(
            ErrorKind::Pool,
            format!("could not get a pooled connection: {why}"),
        );
        e.inner.source = Some(Box::new(err));
        e
    }

    /// Classify a driver error. The lock-specific SQLSTATEs become their own kinds.
    pub(crate) fn db(err: tokio_postgres::Error) -> Error {
        let (kind, message) = match err.code() {
            Some(c) if *c == SqlState::LOCK_NOT_AVAILABLE => (
                ErrorKind::NotAcquired,
                "lock was not granted in time (lock_timeout)".to_string(),
            ),
            Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED => (
                ErrorKind::Deadlock,
                "the server detected a deadlock and aborted this lock wait".to_string(),
            ),
            Some(c) if *c == SqlState::OUT_OF_MEMORY => (
                ErrorKind::LockTableFull,
                "the server's lock table is full (out of shared memory): raise \
                 max_locks_per_transaction (the table holds about \
                 max_locks_per_transaction × max_connections locks) or hold fewer locks"
                    .to_string(),
            ),
            Some(c)
                if *c == SqlState::ADMIN_SHUTDOWN
                    || *c == SqlState::CRASH_SHUTDOWN
                    || *c == SqlState::CANNOT_CONNECT_NOW
                    || *c == SqlState::IDLE_SESSION_TIMEOUT
                    || *c == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT =>
            {
                let why = match c {
                    c if *c == SqlState::ADMIN_SHUTDOWN => {
                        "the backend was terminated (pg_terminate_backend) or the server is \
                         shutting down"
                    }
                    c if *c == SqlState::CRASH_SHUTDOWN => {
                        "another server process crashed and the server is restarting"
                    }
                    c if *c == SqlState::CANNOT_CONNECT_NOW => "the server is starting or stopping",
                    c if *c == SqlState::IDLE_SESSION_TIMEOUT => {
                        "the session was idle for idle_session_timeout (a lease expired)"
                    }
                    _ => {
                        "the session was idle in a transaction for \
                          idle_in_transaction_session_timeout"
                    }
                };
                (
                    ErrorKind::ConnectionLost,
                    format!("the server ended the session: {why} ({})", describe(&err)),
                )
            }
            _ if err.is_closed() => (
                ErrorKind::ConnectionLost,
                "the connection to the server is closed".to_string(),
            ),
            Some(_) => (ErrorKind::Db, format!("database error: {}", describe(&err))),
            None => match err.source() {
                // A driver error with an I/O cause means the connection broke.
                Some(s) if s.is::<std::io::Error>() => (
                    ErrorKind::ConnectionLost,
                    format!("the connection failed (network or server gone): {err}: {s}"),
                ),
                _ => (ErrorKind::Db, format!("database error: {}", describe(&err))),
            },
        };
        let mut e = Error::new(kind, message);
        e.inner.source = Some(Box::new(err));
        e
    }

    /// The same error, reported as the loss of its lock (the connection that held
    /// it is gone).
    pub(crate) fn into_lost(mut self) -> Error {
        crate::metrics::lost();
        self.inner.kind = ErrorKind::Lost;
        self.inner.message = format!(
            "lock lost: its connection is gone, so the server released it ({})",
            self.inner.message
        );
        self
    }

    /// The same error, with what happened next said after it.
    pub(crate) fn context(mut self, what_next: &str) -> Error {
        self.inner.message = format!("{}; {what_next}", self.inner.message);
        self
    }

    /// A wait that could only end when the waiting task itself releases a lock.
    pub(crate) fn self_wait(lock: &LockId) -> Error {
        Error::new(
            ErrorKind::Deadlock,
            "this task already holds the lock through the same source; waiting for it \
             would never end (release the first guard, or take the lock once)",
        )
        .with_lock(lock)
    }

    /// Keeps `cause`'s driver error (and so its SQLSTATE) as this error's source.
    pub(crate) fn with_source(mut self, cause: Error) -> Error {
        self.inner.source = cause.inner.source;
        if self.inner.lock.is_none() {
            self.inner.lock = cause.inner.lock;
        }
        self
    }

    pub(crate) fn with_lock(mut self, lock: &LockId) -> Error {
        self.inner.lock = Some(lock.clone());
        self
    }

    pub(crate) fn with_timeout(mut self, timeout: Duration) -> Error {
        self.inner.timeout = Some(timeout);
        self
    }

    pub(crate) fn with_holder(mut self, holder: Option<Holder>) -> Error {
        self.inner.holder = holder;
        self
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The lock was busy: not granted at once (zero timeout) or within the timeout.
    pub fn is_not_acquired(&self) -> bool {
        self.kind() == ErrorKind::NotAcquired
    }

    /// The server broke a deadlock by failing this wait (SQLSTATE 40P01).
    pub fn is_deadlock(&self) -> bool {
        self.kind() == ErrorKind::Deadlock
    }

    /// The lock was found not held on release.
    pub fn is_lost(&self) -> bool {
        self.kind() == ErrorKind::Lost
    }

    /// The server's lock table is full (SQLSTATE 53200).
    pub fn is_lock_table_full(&self) -> bool {
        self.kind() == ErrorKind::LockTableFull
    }

    /// The connection is closed or the server ended the session.
    pub fn is_connection_lost(&self) -> bool {
        self.kind() == ErrorKind::ConnectionLost
    }

    /// The pool could not provide a connection.
    pub fn is_pool(&self) -> bool {
        self.kind() == ErrorKind::Pool
    }

    /// A name or argument was invalid.
    pub fn is_invalid_argument(&self) -> bool {
        self.kind() == ErrorKind::InvalidArgument
    }

    /// The server is a standby, where a lock would exclude nobody on the primary
    /// (see [`ErrorKind::Standby`]).
    pub fn is_standby(&self) -> bool {
        self.kind() == ErrorKind::Standby
    }

    /// The library was misused (see [`ErrorKind::Misuse`]).
    pub fn is_misuse(&self) -> bool {
        self.kind() == ErrorKind::Misuse
    }

    /// The connection goes through a transaction-pooling proxy (see
    /// [`ErrorKind::TransactionPooler`]).
    pub fn is_transaction_pooler(&self) -> bool {
        self.kind() == ErrorKind::TransactionPooler
    }

    pub(crate) fn transaction_pooler(evidence: &str) -> Error {
        Error::new(
            ErrorKind::TransactionPooler,
            format!(
                "this connection goes through a transaction-pooling proxy (PgBouncer with \
                 pool_mode = transaction, RDS Proxy, …): {evidence}. Consecutive statements may \
                 run in different server sessions there, so a session lock could be taken in \
                 one and outlive its guard in another. Use .pooler_safe() (the lock lives in \
                 a transaction the guard keeps open), a session-pooling proxy, or a direct \
                 connection"
            ),
        )
    }

    /// The lock this error is about, when it is about one.
    pub fn lock(&self) -> Option<&LockId> {
        self.inner.lock.as_ref()
    }

    /// The timeout that ran out, for [`ErrorKind::NotAcquired`].
    pub fn timeout(&self) -> Option<Duration> {
        self.inner.timeout
    }

    /// Who held the lock when it was not acquired, when that was known.
    pub fn holder(&self) -> Option<&Holder> {
        self.inner.holder.as_ref()
    }

    /// The SQLSTATE of the server error behind this one, if any — also when it
    /// came through a pool (connecting failed: wrong database, authentication …).
    pub fn code(&self) -> Option<&SqlState> {
        self.as_db_error().map(|e| e.code())
    }

    /// The server's error behind this one, if any: its SQLSTATE, message, detail
    /// and hint (as the driver's method of the same name).
    pub fn as_db_error(&self) -> Option<&tokio_postgres::error::DbError> {
        self.as_driver_error()?.as_db_error()
    }

    /// The driver error behind this one, if any — also when it came through a
    /// pool.
    pub fn as_driver_error(&self) -> Option<&tokio_postgres::Error> {
        let source = self.inner.source.as_ref()?;
        if let Some(e) = source.downcast_ref::<tokio_postgres::Error>() {
            return Some(e);
        }
        match source.downcast_ref::<deadpool_postgres::PoolError>()? {
            deadpool_postgres::PoolError::Backend(e) => Some(e),
            _ => None,
        }
    }
}

/// A driver error in words: for a server error its severity, SQLSTATE, message,
/// detail and hint (the driver's own `Display` says only "db error").
pub(crate) fn describe(err: &tokio_postgres::Error) -> String {
    let Some(db) = err.as_db_error() else {
        return match err.source() {
            Some(cause) => format!("{err}: {cause}"),
            None => err.to_string(),
        };
    };
    let mut text = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    if let Some(detail) = db.detail() {
        text.push_str(&format!(" (detail: {detail})"));
    }
    if let Some(hint) = db.hint() {
        text.push_str(&format!(" (hint: {hint})"));
    }
    text
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(lock) = &self.inner.lock {
            write!(f, "advisory lock {lock}: ")?;
        }
        f.write_str(&self.inner.message)?;
        if let Some(h) = &self.inner.holder {
            write!(f, " (held by pid {}", h.pid)?;
            if !h.application_name.is_empty() {
                write!(f, ", application_name {:?}", h.application_name)?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind)
            .field("message", &self.inner.message);
        if let Some(lock) = &self.inner.lock {
            d.field("lock", lock);
        }
        if let Some(t) = &self.inner.timeout {
            d.field("timeout", t);
        }
        if let Some(h) = &self.inner.holder {
            d.field("holder", h);
        }
        if let Some(s) = &self.inner.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .source
            .as_ref()
            .map(|s| &**s as &(dyn StdError + 'static))
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(err: tokio_postgres::Error) -> Self {
        Error::db(err)
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        Error::pool(err)
    }
}
