//! Session-level acquisition: the one algorithm every session-lock guard is made
//! by, whatever the connection (pooled, a shared [`Session`], or lent).
//!
//! 1. The source's ledger admits the attempt (in-process exclusion; see
//!    `conn::ledger`), within the timeout.
//! 2. The lock statement goes out with its [`Extra`] statements pipelined behind
//!    it: one round trip. A finite timeout is a statement-local `lock_timeout`.
//! 3. A failed wait may still have been granted (PostgreSQL can raise the
//!    `lock_timeout` error although the lock was granted; a session lock then
//!    stays held), so every failed attempt is followed by an unlock-if-held — the
//!    next statement about the key on that connection, since the admission is
//!    held until it has run.

use std::time::{Duration, Instant};

use futures_util::future::{join, join_all};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tracing::Instrument;

use crate::conn::ledger::{Admitted, LocalWait, Pooling, Refusal, Task};
use crate::conn::{Conn, Exec, Param, Prepared, Settings, Source};
use crate::error::{Error, Holder};
use crate::fencing;
use crate::guard::park::Carried;
use crate::guard::pending::{unlock_if_held, Pending, Target};
use crate::guard::relay::{Ask, Relayed};
use crate::guard::{ttl_value, Guard, Held, Lease, DEFAULT_CHECK_EVERY};
use crate::key::{LockKey, Mode};
use crate::lock::Advisory;
use crate::metrics;
use crate::registry::{self, Claim};
use crate::sql::{self, Attempt};

/// How long an attempt may wait.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// One try (`pg_try_advisory_*`).
    Zero,
    /// The server waits at most this long (`lock_timeout`), then gives up.
    For(Duration),
    /// The server waits until the lock is granted, whatever the session's
    /// `lock_timeout`.
    Forever,
}

impl Wait {
    pub(crate) fn of(timeout: Option<Duration>) -> Wait {
        match timeout {
            None => Wait::Forever,
            Some(d) if d.is_zero() => Wait::Zero,
            Some(d) => Wait::For(d),
        }
    }

    pub(crate) fn attempt(self) -> Attempt {
        match self {
            Wait::Zero => Attempt::Try,
            _ => Attempt::Wait,
        }
    }

    /// The `lock_timeout` value for a waiting attempt: whole milliseconds, rounded
    /// up; `0` (no limit) to wait forever.
    pub(crate) fn lock_timeout(self) -> Result<String, Error> {
        match self {
            Wait::Zero | Wait::Forever => Ok("0".to_string()),
            Wait::For(d) => sql::millis(d).ok_or_else(|| {
                Error::invalid_argument(format!(
                    "timeout {d:?} is longer than PostgreSQL's lock_timeout allows \
                     (2147483647 ms, about 24.8 days); leave the timeout unset to wait \
                     without limit"
                ))
            }),
        }
    }

    /// The timeout to report when the lock was not acquired.
    pub(crate) fn reported(self) -> Duration {
        match self {
            Wait::For(d) => d,
            _ => Duration::ZERO,
        }
    }

    fn local(self, started: Instant) -> LocalWait {
        match self {
            Wait::Zero => LocalWait::Try,
            Wait::For(d) => LocalWait::Until(started + d),
            Wait::Forever => LocalWait::Forever,
        }
    }

    /// What is left of the wait once `started` has passed; `None` when nothing is.
    fn remaining(self, started: Instant) -> Option<Wait> {
        match self {
            Wait::For(d) => {
                let left = d.checked_sub(started.elapsed())?;
                // Below a millisecond the server could not wait anyway.
                (left >= Duration::from_millis(1)).then_some(Wait::For(left))
            }
            other => Some(other),
        }
    }
}

/// What one attempt came to.
pub(crate) enum Outcome<T> {
    Acquired(T),
    /// Busy on the server; the holder, when asked for and known.
    Busy(Option<Holder>),
    /// Busy in the process: another guard of the same source holds it.
    BusyHere,
}

impl<T> Outcome<T> {
    /// The error for a busy outcome of an acquisition that had to succeed.
    pub(crate) fn into_result(self, lock: &crate::key::LockId, wait: Wait) -> Result<T, Error> {
        match self {
            Outcome::Acquired(t) => Ok(t),
            Outcome::Busy(holder) => {
                Err(Error::not_acquired(lock, wait.reported()).with_holder(holder))
            }
            Outcome::BusyHere => Err(Error::not_acquired_here(lock, wait.reported())),
        }
    }

    /// `None` for a busy outcome.
    pub(crate) fn acquired(self) -> Option<T> {
        match self {
            Outcome::Acquired(t) => Some(t),
            _ => None,
        }
    }
}

/// A statement pipelined behind the lock statement, in the same round trip.
enum Extra {
    /// A lease: the session's `idle_session_timeout`.
    Ttl(String),
    /// A holder label: the session's `application_name`.
    Label(String),
    /// The next fencing token, written only if the lock was granted.
    Fencing {
        space: i16,
        key: i64,
        triple: (u32, u32, i16),
    },
    /// The lock's name for the registry: never undoes the acquisition.
    Register(Claim),
}

impl Extra {
    fn of(lock: &Advisory, key: LockKey) -> Result<Vec<Extra>, Error> {
        let mut extras = Vec::new();
        if let Some(ttl) = lock.options.lease {
            extras.push(Extra::Ttl(ttl_value(ttl)?));
        }
        if let Some(label) = &lock.options.label {
            extras.push(Extra::Label(label.to_string()));
        }
        if lock.options.fencing {
            let (space, key_in_space) = fencing::token_key(key);
            extras.push(Extra::Fencing {
                space,
                key: key_in_space,
                triple: key.pg_locks_triple(),
            });
        }
        Ok(extras)
    }

    fn params(&self) -> Vec<Param<'_>> {
        match self {
            Extra::Register(claim) => claim.params(),
            Extra::Ttl(ttl) => vec![(ttl, Type::TEXT)],
            Extra::Label(label) => vec![(label, Type::TEXT)],
            Extra::Fencing { space, key, triple } => {
                let mut params: Vec<Param<'_>> = vec![(space, Type::INT2), (key, Type::INT8)];
                params.extend(sql::triple_params(&triple.0, &triple.1, &triple.2));
                params
            }
        }
    }

    async fn prepare(&self, exec: Exec<'_>) -> Result<Prepared, tokio_postgres::Error> {
        match self {
            // Settings are sent once per lock: unnamed, never a Parse round trip.
            Extra::Ttl(_) => Ok(Prepared::Typed(sql::SET_TTL)),
            Extra::Label(_) => Ok(Prepared::Typed(sql::SET_LABEL)),
            Extra::Register(_) => Ok(Prepared::Typed(registry::REGISTER)),
            Extra::Fencing { .. } => exec.prepare(fencing::NEXT_TOKEN).await,
        }
    }

    /// The error for this statement's failure, which undoes the acquisition.
    fn error(&self, err: Error) -> Error {
        match (self, err.code()) {
            (Extra::Fencing { .. }, Some(c)) if *c == SqlState::UNDEFINED_TABLE => Error::misuse(
                "fencing tokens need the public.pglock_fencing table: call \
                 pglock::install_fencing(&client) once (or run pglock::FENCING_SCHEMA)",
            )
            .with_source(err),
            (Extra::Ttl(_), Some(c)) if *c == SqlState::UNDEFINED_OBJECT => Error::misuse(
                "leases need PostgreSQL 14 or later (idle_session_timeout); this server cannot \
                 expire a lease, so none was taken",
            )
            .with_source(err),
            _ => err,
        }
    }
}

/// What a granted attempt brings besides the lock.
pub(crate) struct Granted {
    pub(crate) fencing_token: Option<i64>,
    /// The backend (server process) that granted the lock.
    pub(crate) backend_pid: Option<i32>,
    /// The matching unlock, prepared on the lock's connection.
    pub(crate) unlock: Option<tokio_postgres::Statement>,
}

/// An attempt that failed with an error, and whether its connection must be
/// given up (its state is unknown).
struct Failed {
    error: Error,
    discard: bool,
}

/// The shortest lease accepted: an automatically renewed lease is renewed every
/// third of its time-to-live, and a healthy process must always manage that — a
/// round trip plus scheduling delays — with room to spare.
pub const MIN_LEASE: Duration = Duration::from_millis(100);

/// The longest interval between active loss checks.
const MAX_CHECK_EVERY: Duration = Duration::from_secs(24 * 3600);

/// PostgreSQL keeps `application_name` to 63 bytes (`NAMEDATALEN - 1`).
const MAX_LABEL: usize = 63;

impl Advisory {
    /// Every option checked before anything is sent: a bad one is an
    /// invalid-argument error, never a silently changed value.
    fn validate(&self) -> Result<(), Error> {
        self.id.validate()?;
        let invalid = |msg: String| Err(Error::invalid_argument(msg).with_lock(&self.id));
        if self.options.fencing && self.mode == Mode::Shared {
            return Err(Error::misuse(
                "fencing tokens need one holder at a time: shared holders would hold tokens \
                 1 and 2 at once, and storage that rejects the lower one would reject a live \
                 holder; take fenced locks exclusively",
            )
            .with_lock(&self.id));
        }
        if let Some(ttl) = self.options.lease {
            if ttl < MIN_LEASE {
                return invalid(format!(
                    "lease time-to-live {ttl:?} is below the {MIN_LEASE:?} minimum: a lease \
                     must be long enough for a healthy process to renew it in time"
                ));
            }
        }
        if let Some(every) = self.options.check_every {
            if every > MAX_CHECK_EVERY {
                return invalid(format!(
                    "check_every {every:?} is longer than the 24 h maximum"
                ));
            }
        }
        if let Some(label) = &self.options.label {
            if label.len() > MAX_LABEL {
                return invalid(format!(
                    "label is {} bytes; PostgreSQL keeps at most {MAX_LABEL} bytes of an \
                     application_name, so it would be cut",
                    label.len()
                ));
            }
            if let Some(c) = label.chars().find(|c| !(' '..='~').contains(c)) {
                return invalid(format!(
                    "label {label:?} contains {c:?}: PostgreSQL shows only printable ASCII in \
                     application_name and would replace it with '?'"
                ));
            }
        }
        Ok(())
    }

    fn error(&self, e: tokio_postgres::Error) -> Error {
        Error::db(e).with_lock(&self.id)
    }

    fn check_settings(&self, shared: bool, borrowed: bool) -> Result<(), Error> {
        let o = &self.options;
        if o.pooler_safe
            && (shared || borrowed || o.lease.is_some() || o.label.is_some() || o.fencing)
        {
            return Err(Error::misuse(
                "a pooler-safe lock keeps a transaction open on a connection of its own: take \
                 it through a pool, without lease, label or fencing",
            )
            .with_lock(&self.id));
        }
        let per_session = self.options.lease.is_some() || self.options.label.is_some();
        if per_session && shared {
            return Err(Error::misuse(
                "a lease or label is a setting of the server session, and this session is \
                 shared by other guards whose release would change it: take leased or labelled \
                 locks through a pool, or through a session of their own",
            )
            .with_lock(&self.id));
        }
        if per_session && borrowed {
            return Err(Error::misuse(
                "leases and labels are not available on a borrowed connection: take the lock \
                 through a pool or a session",
            )
            .with_lock(&self.id));
        }
        Ok(())
    }

    /// Takes a session lock through `source`.
    pub(crate) async fn lock_session<S: Source + ?Sized>(
        &self,
        source: &S,
        wait: Wait,
        want_holder: bool,
    ) -> Result<Outcome<Guard>, Error> {
        let begun = Instant::now();
        let result = self.lock_session_counted(source, wait, want_holder).await;
        metrics::acquisition(
            self.mode,
            match &result {
                Ok(Outcome::Acquired(_)) => metrics::Outcome::Acquired,
                Ok(_) => metrics::Outcome::Busy,
                Err(_) => metrics::Outcome::Error,
            },
            begun.elapsed(),
        );
        result
    }

    async fn lock_session_counted<S: Source + ?Sized>(
        &self,
        source: &S,
        wait: Wait,
        want_holder: bool,
    ) -> Result<Outcome<Guard>, Error> {
        self.validate()?;
        wait.lock_timeout()?;
        let span = acquire_span(self);
        let span_handle = span.clone();
        async move {
            let started = Instant::now();
            let key = self.id.lock_key();
            // Bad options are refused before anything else happens.
            Extra::of(self, key)?;
            // A multiplexing source tries on a shared connection (a try never
            // holds it up) and waits, when it must, on a connection of its own.
            let waiters = source.waiters();
            // Declared in this order so that a carried unlock is dropped (and
            // so sent) before the admission is given up.
            let (mut admission, relayed_busy, carried) = match source
                .ledger()
                .admit(
                    key,
                    self.mode,
                    Task::current(),
                    wait.local(started),
                    self.ask(waiters.is_some(), started),
                )
                .await
            {
                Ok(Admitted::Fresh(admission)) => (admission, false, None),
                Ok(Admitted::Carrying(admission, carried)) => (admission, false, Some(carried)),
                Ok(Admitted::Relayed(Relayed::Granted(guard))) => {
                    span.record("wait_us", started.elapsed().as_micros() as u64);
                    span.record("acquired", true);
                    tracing::debug!("pglock: acquired, relayed by the guard before");
                    return Ok(Outcome::Acquired(*guard));
                }
                // The try a releasing guard sent for this acquisition failed:
                // the lock went to a session waiting on the server.
                Ok(Admitted::Relayed(Relayed::Busy(admission))) => (admission, true, None),
                Err(Refusal::Busy) => {
                    record_busy(&span, started);
                    return Ok(Outcome::BusyHere);
                }
                Err(Refusal::SelfWait) => return Err(Error::self_wait(&self.id)),
            };
            let Some(left) = wait.remaining(started) else {
                record_busy(&span, started);
                return Ok(Outcome::BusyHere);
            };
            let mut phase = match waiters {
                Some(_) => Wait::Zero,
                None => left,
            };
            // A carried unlock on a connection that is gone is sent on its own
            // (and reports the loss).
            let mut carried = carried.filter(|c| !c.session().is_closed());
            let mut conn = match (relayed_busy, waiters, &carried) {
                (false, _, Some(carried)) => Conn::Session(carried.session().clone()),
                (true, Some(pool), _) if !matches!(left, Wait::Zero) => {
                    phase = left;
                    Conn::Pooled(Box::new(pool.get().await.map_err(Error::pool)?))
                }
                (true, _, _) => {
                    drop(admission);
                    record_busy(&span, started);
                    let conn = self.checkout(source, key).await?;
                    let holder = holder(want_holder, conn.exec(), key, self.mode).await;
                    return Ok(Outcome::Busy(holder));
                }
                (false, _, None) => self.checkout(source, key).await?,
            };
            let (result, conn, admission, settings) = loop {
                self.check_settings(conn.is_shared(), false)?;
                if !self.options.pooler_safe {
                    source.probe(&conn).await;
                    if source.ledger().pooling() == Pooling::Transaction {
                        return Err(Error::transaction_pooler(
                            "two of its client connections were served by one server session",
                        )
                        .with_lock(&self.id));
                    }
                }
                let mut extras = Extra::of(self, key)?;
                // Only where no caller's transaction can be open (see `registry`).
                if !conn.is_shared() && !self.options.pooler_safe {
                    extras.extend(Claim::of(&self.id).map(Extra::Register));
                }
                let settings = Settings {
                    reset_ttl: matches!(conn, Conn::Pooled(_)) && self.options.lease.is_some(),
                    reset_label: matches!(conn, Conn::Pooled(_)) && self.options.label.is_some(),
                };
                let pending = Pending::new(
                    Target::Owned(conn),
                    Some(admission),
                    self.id.clone(),
                    self.mode,
                )
                .carrying(carried.take());
                let result = self.attempt(&pending, phase, settings, &extras).await;
                let (owned, kept) = pending.disarm();
                conn = owned.expect("an owned target");
                admission = kept.expect("an admitted attempt");
                if let (Ok(Outcome::Busy(_)), Some(pool), Wait::Zero) = (&result, waiters, phase) {
                    if let Some(rest) = wait.remaining(started).filter(|w| !matches!(w, Wait::Zero))
                    {
                        conn = Conn::Pooled(Box::new(pool.get().await.map_err(Error::pool)?));
                        phase = rest;
                        continue;
                    }
                }
                break (result, conn, Some(admission), settings);
            };
            span.record("wait_us", started.elapsed().as_micros() as u64);
            match result {
                Err(Failed { error, discard }) => {
                    match conn {
                        // The attempt's cleanup could not run on a shared session:
                        // the session retries it, keeping the admission meanwhile.
                        Conn::Session(session) if discard && !error.is_connection_lost() => {
                            session.owe_unlock(self.id.clone(), self.mode, true, admission)
                        }
                        conn if discard => conn.discard(),
                        _ => {}
                    }
                    Err(error)
                }
                Ok(Outcome::Busy(_) | Outcome::BusyHere) => {
                    drop(admission);
                    span.record("acquired", false);
                    let holder = holder(want_holder, conn.exec(), key, self.mode).await;
                    Ok(Outcome::Busy(holder))
                }
                Ok(Outcome::Acquired(granted)) => {
                    span.record("acquired", true);
                    tracing::debug!("pglock: acquired");
                    let hold = admission.expect("an admitted attempt").granted();
                    let lease = self.options.lease.map(|ttl| {
                        let session = match &conn {
                            Conn::Dedicated(s) => Some(s.clone()),
                            _ => None,
                        };
                        Lease::start(session, ttl, self.options.auto_renew)
                    });
                    let held = Held {
                        check_every: self.options.check_every.unwrap_or(DEFAULT_CHECK_EVERY),
                        lease,
                        fencing_token: granted.fencing_token,
                        label: self.options.label.clone(),
                        settings,
                        in_transaction: self.options.pooler_safe,
                        backend_pid: granted.backend_pid,
                        unlock: granted.unlock,
                        safety: self.options.safety,
                    };
                    Ok(Outcome::Acquired(Guard::new(
                        conn,
                        hold,
                        self.id.clone(),
                        self.mode,
                        started,
                        held,
                    )))
                }
            }
        }
        .instrument(span_handle)
        .await
    }

    /// What a waiting acquisition through a multiplexing source (`multiplexed`)
    /// offers a releasing guard, so that it can relay the lock: only for an
    /// exclusive lock with nothing but the lock statement to send.
    fn ask(&self, multiplexed: bool, started: Instant) -> Option<Ask> {
        let o = &self.options;
        let plain = !o.fencing && !o.pooler_safe && o.lease.is_none() && o.label.is_none();
        (multiplexed && plain && self.mode == Mode::Exclusive).then(|| Ask {
            id: self.id.clone(),
            started,
            check_every: o.check_every.unwrap_or(DEFAULT_CHECK_EVERY),
            safety: o.safety,
        })
    }

    /// Takes a session lock on a connection the caller lends; answers the fencing
    /// token when granted.
    pub(crate) async fn lock_borrowed(
        &self,
        exec: Exec<'_>,
        wait: Wait,
        want_holder: bool,
    ) -> Result<Outcome<Granted>, Error> {
        self.validate()?;
        wait.lock_timeout()?;
        self.check_settings(false, true)?;
        let span = acquire_span(self);
        let span_handle = span.clone();
        async move {
            let started = Instant::now();
            let key = self.id.lock_key();
            let extras = Extra::of(self, key)?;
            let pending = Pending::new(Target::Borrowed(exec), None, self.id.clone(), self.mode);
            let result = self
                .attempt(&pending, wait, Settings::default(), &extras)
                .await;
            drop(pending.disarm());
            span.record("wait_us", started.elapsed().as_micros() as u64);
            match result {
                Err(Failed { error, .. }) => Err(error),
                Ok(Outcome::Busy(_) | Outcome::BusyHere) => Ok(Outcome::Busy(
                    holder(want_holder, exec, key, self.mode).await,
                )),
                Ok(granted) => Ok(granted),
            }
        }
        .instrument(span_handle)
        .await
    }

    /// Checks a connection out of `source`; an automatically renewed lease takes
    /// it out of its pool for good (its renewing task needs a handle of its own).
    async fn checkout<S: Source + ?Sized>(&self, source: &S, key: LockKey) -> Result<Conn, Error> {
        let dedicate = self.options.lease.is_some() && self.options.auto_renew;
        Ok(match source.checkout_for(key).await? {
            Conn::Pooled(object) if dedicate => {
                Conn::Dedicated(crate::conn::Session::from_pooled(*object))
            }
            conn => conn,
        })
    }

    /// One attempt on the pending connection: the lock statement and its extras,
    /// then, if it did not end with a held lock, the undo.
    async fn attempt(
        &self,
        pending: &Pending<'_>,
        wait: Wait,
        settings: Settings,
        extras: &[Extra],
    ) -> Result<Outcome<Granted>, Failed> {
        let exec = pending.exec();
        let key = self.id.lock_key();
        let attempt = wait.attempt();
        let fail = |error: Error, discard: bool| Failed { error, discard };
        let lock_timeout = wait.lock_timeout().map_err(|e| fail(e, false))?;
        let scope = match self.options.pooler_safe {
            true => sql::Scope::Xact,
            false => sql::Scope::Session,
        };
        // An attempt that carries a parked unlock sends it first, in the same
        // statement (see `guard::park`).
        let statement = match pending.carries() {
            true => sql::relay(key.is_pair()),
            false => sql::lock(scope, self.mode, attempt, key.is_pair()),
        };
        // Behind a transaction pooler a named statement prepared in one server
        // session is unknown in the next: pooler-safe locks send theirs unnamed.
        // The unlock is prepared with the lock statement (in the same round trip
        // when neither is cached yet): the guard carries it, so that a drop can
        // queue it at once as a prepared statement.
        let (prepared, unlock) = match self.options.pooler_safe {
            true => (Prepared::Typed(statement), None),
            false => {
                let (prepared, unlock) = join(
                    exec.prepare(statement),
                    exec.prepare(sql::unlock(self.mode, key.is_pair())),
                )
                .await;
                let unlock = match unlock.map_err(|e| fail(self.error(e), false))? {
                    Prepared::Statement(unlock) => Some(unlock),
                    Prepared::Typed(_) => None,
                };
                (prepared.map_err(|e| fail(self.error(e), false))?, unlock)
            }
        };
        let mut params = key.params();
        if attempt == Attempt::Wait {
            params.push((&lock_timeout, Type::TEXT));
        }
        let extra_params: Vec<Vec<Param<'_>>> = extras.iter().map(Extra::params).collect();
        let mut prepared_extras = Vec::with_capacity(extras.len());
        for extra in extras {
            let p = extra
                .prepare(exec)
                .await
                .map_err(|e| fail(extra.error(self.error(e)), false))?;
            prepared_extras.push(p);
        }
        // The statements are queued on the first poll of the query futures, in the
        // same poll as this flag is set: a drop after this line has sent them.
        let carried = pending.mark_sent();
        let in_transaction = self.options.pooler_safe;
        let begin = async {
            match in_transaction {
                true => exec.batch(sql::BEGIN).await,
                false => Ok(()),
            }
        };
        // BEGIN (pooler-safe mode), the lock and its extras: polled in this order,
        // so queued in this order, in one round trip.
        let (begun, (result, extra_results)) = join(
            begin,
            join(
                exec.query(&prepared, &params),
                join_all(
                    prepared_extras
                        .iter()
                        .zip(&extra_params)
                        .map(|(p, ps)| exec.query(p, ps)),
                ),
            ),
        )
        .await;
        let result = begun.and(result);
        for (extra, result) in extras.iter().zip(&extra_results) {
            if let Extra::Register(claim) = extra {
                claim.answered(result);
            }
        }
        let mut backend_pid = None;
        let (granted, failure) = match result {
            // No row: the server is a standby, and the lock function did not run.
            Ok(rows) if rows.is_empty() => (false, Some(Error::standby(&self.id))),
            Ok(rows) => {
                let row = rows.first();
                backend_pid = row.map(|r| r.get(1));
                let granted = match carried {
                    // The carried unlock's answer, then the try's.
                    Some(parked) => {
                        Carried::settled(parked, row.is_some_and(|r| r.get(0)));
                        row.is_some_and(|r| r.get(2))
                    }
                    None => attempt == Attempt::Wait || row.is_some_and(|r| r.get(0)),
                };
                (granted, None)
            }
            Err(e) => match self.error(e) {
                err if err.is_connection_lost() => return Err(fail(err, true)),
                err => (false, Some(err)),
            },
        };
        if !granted && in_transaction {
            // The transaction's end releases whatever it may have been granted.
            if let Err(e) = exec.batch(sql::ROLLBACK).await {
                return Err(fail(failure.unwrap_or_else(|| self.error(e)), true));
            }
            return match failure.filter(|err| !err.is_not_acquired()) {
                Some(err) => Err(fail(err, false)),
                None => Ok(Outcome::Busy(None)),
            };
        }
        if !granted {
            // A failed wait may have been granted just as it failed, and changed
            // settings go back.
            if failure.is_some() || settings.changed() {
                if let Err(e) = self.undo(exec, settings, false).await {
                    tracing::warn!(error = %crate::error::describe(&e), "pglock: cleanup after a failed attempt failed");
                    return Err(fail(failure.unwrap_or_else(|| self.error(e)), true));
                }
            }
            return match failure.filter(|err| !err.is_not_acquired()) {
                Some(err) => Err(fail(err, false)),
                None => Ok(Outcome::Busy(None)),
            };
        }
        let mut fencing_token = None;
        for (extra, result) in extras.iter().zip(extra_results) {
            if let Extra::Register(_) = extra {
                continue; // answered above, whatever it was
            }
            let result = result.map_err(|e| extra.error(self.error(e)));
            match result.and_then(|rows| match extra {
                Extra::Fencing { .. } => fencing::issued(&rows, &self.id),
                _ => Ok(None),
            }) {
                Ok(token) => fencing_token = fencing_token.or(token),
                Err(err) => {
                    // The lock is held but a promise that came with it is not:
                    // give the lock back and say why.
                    let discard = self.undo(exec, settings, true).await.is_err();
                    return Err(fail(err, discard));
                }
            }
        }
        Ok(Outcome::Acquired(Granted {
            fencing_token,
            backend_pid,
            unlock,
        }))
    }

    /// After an attempt that did not end with a held lock: release what the server
    /// may have granted (`held`: it did) and put back changed settings.
    async fn undo(
        &self,
        exec: Exec<'_>,
        settings: Settings,
        held: bool,
    ) -> Result<(), tokio_postgres::Error> {
        let key = self.id.lock_key();
        if held {
            exec.run(sql::unlock(self.mode, key.is_pair()), &key.params())
                .await?;
        } else {
            unlock_if_held(exec, &self.id, self.mode).await?;
        }
        settings.reset(exec).await
    }
}

fn record_busy(span: &tracing::Span, started: Instant) {
    span.record("acquired", false);
    span.record("wait_us", started.elapsed().as_micros() as u64);
}

fn acquire_span(lock: &Advisory) -> tracing::Span {
    tracing::debug_span!(
        "pglock.acquire",
        lock = %lock.id,
        mode = %lock.mode,
        timeout = ?lock.timeout,
        acquired = tracing::field::Empty,
        wait_us = tracing::field::Empty,
    )
}

/// A session holding the key in a mode that conflicts with `mode`, if any.
/// Only asked on the failure path, and only where the answer is reported
/// (`wanted`).
pub(crate) async fn holder(
    wanted: bool,
    exec: Exec<'_>,
    key: LockKey,
    mode: Mode,
) -> Option<Holder> {
    if !wanted {
        return None;
    }
    let (classid, objid, objsubid) = key.pg_locks_triple();
    let exclusive = mode == Mode::Exclusive;
    let mut params: Vec<Param<'_>> = sql::triple_params(&classid, &objid, &objsubid).into();
    params.push((&exclusive, Type::BOOL));
    let rows = exec.run(sql::HOLDER.as_str(), &params).await.ok()?;
    let row = rows.first()?;
    Some(Holder {
        pid: row.get(0),
        application_name: row.get(1),
    })
}
