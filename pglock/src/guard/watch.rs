//! Is the lock still held? Loss detection for guards: the connection, active
//! checks, and the local deadline (`deadline.rs`).

use std::time::{Duration, Instant};

use tokio_postgres::types::Type;

use crate::conn::Param;
use crate::conn::Prepared;
use crate::error::Error;
use crate::guard::Guard;
use crate::sql;

/// How often [`Guard::lost`] asks the server, unless the lock says otherwise
/// ([`Advisory::check_every`](crate::Advisory::check_every)).
pub const DEFAULT_CHECK_EVERY: Duration = Duration::from_secs(5);

/// How often [`Guard::lost`] looks at the connection and the clock (no round
/// trip).
const CLOSED_POLL: Duration = Duration::from_millis(20);

/// What one question to the server found.
enum Probe {
    Held,
    NotHeld,
    /// The connection is gone.
    Closed,
    /// No answer before the local deadline.
    Expired,
    Failed(Error),
}

impl Guard {
    /// When this guard stops counting its lock as held unless the server answers
    /// on the lock's connection before then: the last confirmed contact plus the
    /// server bound (keepalives or lease), less clock drift and the safety margin.
    /// `None` when pglock knows no server bound for the connection (a pooled one
    /// without [`Advisory::keepalive`](crate::Advisory::keepalive), and no lease).
    /// See the crate docs, "Partitions".
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.at(self.lease_ttl())
    }

    /// The safety margin this guard keeps before the server could free its lock,
    /// when it has a [`deadline`](Guard::deadline).
    pub fn safety_margin(&self) -> Option<Duration> {
        self.deadline.margin(self.lease_ttl())
    }

    /// Records that the server answered a request sent at `sent` on the lock's
    /// connection (for the lock's session, the server heard from this client).
    pub(crate) fn confirm_contact(&self, sent: Instant) {
        self.deadline.confirm(sent);
    }

    /// Asks the server whether this guard's session still holds its lock. One round
    /// trip on the lock's connection; `Ok(false)` once the connection is gone, and
    /// `Ok(false)` when no answer came in time to vouch for the lock — a request
    /// sent now keeps the lock counted as held only until the deadline it would
    /// give (see [`deadline`](Guard::deadline)), so a call over a dead link ends
    /// then, without the server's answer. An answer confirms contact with the
    /// server and so moves the deadline of every guard on the connection.
    ///
    /// On a [leased](crate::Advisory::lease) lock this query is activity on the
    /// lock's session, so it renews the lease like any other statement would.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads.
    pub async fn is_held(&self) -> Result<bool, Error> {
        match self.probe().await {
            Probe::Held => Ok(true),
            Probe::NotHeld | Probe::Closed | Probe::Expired => Ok(false),
            Probe::Failed(e) => Err(e),
        }
    }

    async fn probe(&self) -> Probe {
        let conn = self.conn();
        if conn.client().is_closed() {
            return Probe::Closed;
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
        let sent = Instant::now();
        // Unnamed for a pooler-safe lock: behind a transaction pooler a statement
        // prepared in this transaction's server session is unknown in the next.
        let exec = conn.exec();
        let in_transaction = self.held.in_transaction;
        let ask = async move {
            match in_transaction {
                true => exec.query(&Prepared::Typed(sql::IS_HELD), &params).await,
                false => exec.run(sql::IS_HELD, &params).await,
            }
        };
        let answer = match self.deadline.span(self.lease_ttl()) {
            Some(span) => match tokio::time::timeout_at((sent + span).into(), ask).await {
                Ok(answer) => answer,
                Err(_) => return Probe::Expired,
            },
            None => ask.await,
        };
        match answer {
            Ok(rows) => {
                self.confirm_contact(sent);
                match rows.first().is_some_and(|r| r.get(0)) {
                    true => Probe::Held,
                    false => Probe::NotHeld,
                }
            }
            Err(e) => {
                let err = Error::db(e).with_lock(self.id());
                if err.is_connection_lost() {
                    Probe::Closed
                } else {
                    // The server answered, with an error.
                    self.confirm_contact(sent);
                    Probe::Failed(err)
                }
            }
        }
    }

    /// The loss reported when the local deadline passed without an answer.
    fn expired(&self) -> Error {
        let margin = self.safety_margin().unwrap_or_default();
        Error::lost_while_held(
            self.id(),
            &format!(
                "no answer from the server on the lock's connection in time: past this \
                 guard's local deadline, the server may free the lock (keepalives or lease \
                 expiry) {margin:?} from now; a network partition, a stalled connection or a \
                 paused process"
            ),
        )
    }

    /// Completes, with an [`is_lost`](Error::is_lost) error, when the lock is lost
    /// or can no longer be vouched for:
    ///
    /// - at once (within 20 ms) when its connection closes — backend terminated,
    ///   server restarted, network error;
    /// - at the next active check (every [`check_every`](crate::Advisory::check_every),
    ///   5 s by default) that finds it no longer held (for example after
    ///   `pg_advisory_unlock_all()`);
    /// - at the guard's local [`deadline`](Guard::deadline), a safety margin before
    ///   the server could free the lock, when the server has not answered on the
    ///   lock's connection since (a partition): without waiting for the server.
    ///
    /// Never completes while the lock is held and the server answers in time. The
    /// active checks are what confirms contact for a plain lock: each is due a
    /// check interval after the last confirmed contact on the lock's connection
    /// (any guard's), so a lock with a deadline stays counted as held while
    /// `lost()` runs and the server answers within the rest of the deadline span
    /// (half of it at least). A plain lock whose deadline passed while nobody
    /// watched is asked about at once, and counts as lost only if no answer comes
    /// in time. A [leased](crate::Advisory::lease) lock gets no active checks —
    /// they would renew its lease — and its renewals confirm contact instead.
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
        // Checks are due a check interval after the last confirmed contact (the
        // connection's: another guard's answer counts), so each has the rest of
        // the deadline span for its round trip. A plain lock whose deadline passed
        // before anyone watched is asked about at once.
        let mut next_check = self.deadline.last_contact() + self.check_every();
        loop {
            if self.conn().client().is_closed() {
                return Error::lost_while_held(
                    self.id(),
                    "its connection closed (backend terminated, server restarted, network \
                     error or lease expired)",
                );
            }
            let now = Instant::now();
            let deadline = self.deadline();
            // A query on a leased lock's connection would count as activity and
            // renew the lease: leased locks are watched through their connection
            // and their deadline alone.
            let check_due = self.lease().is_none() && now >= next_check;
            if !check_due && deadline.is_some_and(|at| now >= at) {
                return self.expired();
            }
            if check_due {
                // Before the deadline, an answer must come by then; past it (only
                // on entry), by the deadline the question itself gives.
                let probe = match deadline.filter(|at| *at > now) {
                    Some(at) => tokio::time::timeout_at(at.into(), self.probe())
                        .await
                        .unwrap_or(Probe::Expired),
                    None => self.probe().await,
                };
                match probe {
                    Probe::Held | Probe::Closed => {}
                    Probe::NotHeld => {
                        return Error::lost_while_held(
                            self.id(),
                            "the server no longer lists it for this session",
                        )
                    }
                    Probe::Expired => return self.expired(),
                    Probe::Failed(e) => {
                        tracing::debug!(error = %e, "pglock: liveness check failed")
                    }
                }
                next_check = now + self.check_every();
                continue;
            }
            let mut wake = now + CLOSED_POLL;
            if self.lease().is_none() {
                wake = wake.min(next_check);
            }
            if let Some(at) = deadline {
                wake = wake.min(at);
            }
            tokio::time::sleep_until(wake.into()).await;
        }
    }
}
