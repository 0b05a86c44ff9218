//! Leases: a time-to-live enforced by the server, renewable by the holder.
//!
//! A leased lock's session gets `idle_session_timeout` set to the time-to-live
//! (PostgreSQL 14 and later). If the holder stops renewing — a hung process, a
//! long pause, a frozen runtime — the server ends that session once it has been
//! idle for the time-to-live, and with it the lock, so others can take it. The
//! setting is reset with the unlock (a connection whose reset fails is closed), so
//! it never reaches another user of a pool; an automatically renewed lease takes
//! its pooled connection out of the pool for good instead, since the renewing task
//! needs a handle of its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::AbortHandle;
use tokio_postgres::types::Type;

use crate::conn::Session;
use crate::conn::{Exec, Param};
use crate::error::Error;
use crate::guard::Guard;
use crate::sql;

/// A guard's lease: its time-to-live and the task renewing it, if any.
pub(crate) struct Lease {
    ttl_ms: Arc<AtomicU64>,
    renewer: Option<AbortHandle>,
}

impl Lease {
    /// Starts tracking a lease of `ttl`; with `auto_renew`, a task on `session`
    /// renews it every third of the time-to-live until the guard is done. Each
    /// answered renewal confirms contact on the session's connection, which moves
    /// the guard's local deadline.
    pub(crate) fn start(session: Option<Session>, ttl: Duration, auto_renew: bool) -> Lease {
        let ttl_ms = Arc::new(AtomicU64::new(ttl.as_millis() as u64));
        let renewer = match (auto_renew, session) {
            (true, Some(session)) => Some(spawn_renewer(session, ttl_ms.clone())),
            _ => None,
        };
        Lease { ttl_ms, renewer }
    }

    pub(crate) fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms.load(Ordering::Relaxed))
    }

    /// Stops renewing (on release or drop).
    pub(crate) fn stop(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn_renewer(session: Session, ttl_ms: Arc<AtomicU64>) -> AbortHandle {
    tokio::spawn(async move {
        loop {
            let ttl = Duration::from_millis(ttl_ms.load(Ordering::Relaxed));
            tokio::time::sleep(ttl / 3).await;
            let value = format!("{}ms", ttl_ms.load(Ordering::Relaxed));
            let params: [Param<'_>; 1] = [(&value, Type::TEXT)];
            let sent = Instant::now();
            if let Err(e) = Exec::Session(&session).run(sql::SET_TTL, &params).await {
                tracing::warn!(error = %e, "pglock: lease renewal failed; the lease will expire");
                return;
            }
            // The server restarted the lease no earlier than it got the request.
            session.contact().confirm(sent);
        }
    })
    .abort_handle()
}

/// The `idle_session_timeout` value for a time-to-live: whole milliseconds,
/// rounded up, at least 1 ms and at most `i32::MAX` ms.
pub(crate) fn ttl_value(ttl: Duration) -> Result<String, Error> {
    match sql::millis(ttl) {
        Some(value) if !ttl.is_zero() => Ok(value),
        _ => Err(Error::invalid_argument(format!(
            "lease time-to-live {ttl:?} must be between 1 ms and 2147483647 ms"
        ))),
    }
}

impl Guard {
    /// Extends the lease: the server now ends the lock's session only after `ttl`
    /// of silence from now. One round trip. The answer confirms contact, which
    /// moves the guard's local [`deadline`](Guard::deadline).
    ///
    /// # Errors
    /// [`is_misuse`](Error::is_misuse) if the lock was not taken with a lease;
    /// [`is_lost`](Error::is_lost) if the session is already gone (the lease
    /// expired, or the connection broke).
    ///
    /// # Cancel safety
    /// Cancel-safe: dropped before it is sent, nothing changes; after, the renewal
    /// still happens.
    pub async fn renew(&self, ttl: Duration) -> Result<(), Error> {
        let Some(lease) = self.lease() else {
            return Err(
                Error::misuse("renew() on a lock taken without a lease").with_lock(self.id())
            );
        };
        let value = ttl_value(ttl)?;
        let params: [Param<'_>; 1] = [(&value, Type::TEXT)];
        // A shorter time-to-live counts at once (the server may apply it without
        // this client hearing back); a longer one once the server confirmed it.
        lease
            .ttl_ms
            .fetch_min(ttl.as_millis() as u64, Ordering::Relaxed);
        let sent = Instant::now();
        match self.conn().exec().run(sql::SET_TTL, &params).await {
            Ok(_) => {
                lease
                    .ttl_ms
                    .store(ttl.as_millis() as u64, Ordering::Relaxed);
                self.confirm_contact(sent);
                Ok(())
            }
            Err(e) => {
                let err = Error::db(e).with_lock(self.id());
                Err(if err.is_connection_lost() {
                    err.into_lost()
                } else {
                    err
                })
            }
        }
    }

    /// The lease's current time-to-live, for a lock taken with
    /// [`lease`](crate::Advisory::lease).
    pub fn lease_ttl(&self) -> Option<Duration> {
        self.lease().map(Lease::ttl)
    }
}
