//! Is the lock still held? Loss detection for guards.

use std::time::{Duration, Instant};

use tokio_postgres::types::Type;

use crate::conn::Param;
use crate::error::Error;
use crate::guard::Guard;
use crate::sql;

/// How often [`Guard::lost`] asks the server, unless the lock says otherwise
/// ([`Advisory::check_every`](crate::Advisory::check_every)).
pub const DEFAULT_CHECK_EVERY: Duration = Duration::from_secs(5);

/// How often [`Guard::lost`] looks at the connection itself (no round trip).
const CLOSED_POLL: Duration = Duration::from_millis(20);

impl Guard {
    /// Asks the server whether this guard's session still holds its lock. One round
    /// trip on the lock's connection; `Ok(false)` once the connection is gone.
    ///
    /// On a [leased](crate::Advisory::lease) lock this query is activity on the
    /// lock's session, so it renews the lease like any other statement would.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads.
    pub async fn is_held(&self) -> Result<bool, Error> {
        let conn = self.conn();
        if conn.client().is_closed() {
            return Ok(false);
        }
        let key = self.key();
        let (classid, objid, objsubid) = key.pg_locks_triple();
        let mode = self.mode().pg_mode();
        let params: [Param<'_>; 4] = [
            (&classid, Type::OID),
            (&objid, Type::OID),
            (&objsubid, Type::INT2),
            (&mode, Type::TEXT),
        ];
        match conn.exec().run(sql::IS_HELD, &params).await {
            Ok(rows) => Ok(rows.first().is_some_and(|r| r.get(0))),
            Err(e) => {
                let err = Error::db(e).with_lock(self.id());
                if err.is_connection_lost() {
                    Ok(false)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Completes, with an [`is_lost`](Error::is_lost) error, when the lock is lost:
    /// at once (within 20 ms) when its connection closes — backend terminated,
    /// server restarted, network error — and otherwise at the next active check
    /// (every [`check_every`](crate::Advisory::check_every), 5 s by default) that
    /// finds it no longer held (for example after `pg_advisory_unlock_all()`).
    /// Never completes while the lock is held. A [leased](crate::Advisory::lease)
    /// lock gets no active checks — they would renew its lease — and is watched
    /// through its connection, which the server closes when the lease expires.
    ///
    /// Race it against the critical section so that the work stops when the lock
    /// goes:
    ///
    /// ```no_run
    /// # async fn demo(pool: deadpool_postgres::Pool) -> Result<(), pglock::Error> {
    /// # async fn critical_work() {}
    /// let guard = pglock::advisory("migrate").acquire(&pool).await?;
    /// tokio::select! {
    ///     _ = critical_work() => guard.release().await?,
    ///     lost = guard.lost() => return Err(lost),
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel-safe: it only watches and reads.
    pub async fn lost(&self) -> Error {
        let mut next_check = Instant::now() + self.check_every();
        loop {
            if self.conn().client().is_closed() {
                return Error::lost_while_held(
                    self.id(),
                    "its connection closed (backend terminated, server restarted, network \
                     error or lease expired)",
                );
            }
            // A query on a leased lock's connection would count as activity and
            // renew the lease: leased locks are watched through their connection
            // alone, which the server closes when the lease expires.
            if self.lease().is_none() && Instant::now() >= next_check {
                match self.is_held().await {
                    Ok(false) => {
                        return Error::lost_while_held(
                            self.id(),
                            "the server no longer lists it for this session",
                        )
                    }
                    Ok(true) => {}
                    Err(e) => tracing::debug!(error = %e, "pglock: liveness check failed"),
                }
                next_check = Instant::now() + self.check_every();
            }
            let until_check = next_check.saturating_duration_since(Instant::now());
            tokio::time::sleep(until_check.min(CLOSED_POLL)).await;
        }
    }
}
