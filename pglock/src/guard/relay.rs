//! Relays: an exclusive lock handed from a releasing guard of a [`Locker`] to the
//! next guard waiting for it in the process, in one statement.
//!
//! Without a relay a handoff between two local guards costs the waiter a wake-up
//! before its try goes out: the releasing guard queues its unlock and gives up its
//! ledger permit, the waiting task wakes, and only then sends its try. With a
//! relay the releasing guard sends both as one statement ([`sql::relay`]): one
//! round trip, one flush by the server, and no task hop in between.
//!
//! The first law holds throughout:
//! - The ledger permits (the key's hold and attempt permits) stay with the
//!   releasing side until the answer is in, and then pass to the waiter: nobody
//!   else in the process sends anything about the key meanwhile.
//! - The try runs after the unlock, in the same statement: the unlock grants the
//!   lock to a session waiting for it on the server first, so the try fails and
//!   the server's queue order is kept. The waiter then goes on as after any
//!   failed try: it waits on a pooled connection of its own, within what is left
//!   of its timeout.
//! - A granted try becomes the waiter's guard before it is handed over. If the
//!   waiter is gone by then (its acquisition was cancelled or timed out), that
//!   guard is dropped, which releases the lock like any dropped guard.
//! - A relay statement that fails is treated as a failed attempt: the session
//!   releases the key if it holds it, keeping the permits until that has run,
//!   and the waiter goes back to waiting for its permit.
//!
//! [`Locker`]: crate::Locker

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use tokio_postgres::Statement;

use super::pending::unlock_if_held;
use super::{Guard, Held, Safety};
use crate::conn::ledger::{Admission, Handoff, Hold, Passed, Pooling};
use crate::conn::{Conn, Exec, Prepared, Session, Settings};
use crate::error::Error;
use crate::key::{LockId, Mode};
use crate::sql;

/// What a waiting acquisition tells a releasing guard, so that it can make the
/// waiter's guard.
pub(crate) struct Ask {
    pub(crate) id: LockId,
    pub(crate) started: Instant,
    pub(crate) check_every: Duration,
    pub(crate) safety: Safety,
}

/// What a relay came to, for its waiter.
pub(crate) enum Relayed {
    /// The try was granted: the waiter's guard.
    Granted(Box<Guard>),
    /// The try was not granted (a session elsewhere was given the lock): the
    /// waiter's admission, for its acquisition to go on.
    Busy(Admission),
}

/// A relay ready to go: the prepared statement and the waiter it serves.
pub(crate) struct Relay {
    statement: Statement,
    handoff: Handoff,
}

impl Relay {
    /// A relay for an exclusive guard about to release its hold on a shared
    /// session, when a waiter asked for one (see the ledger's rule 3) and the
    /// session has the relay statement prepared.
    pub(crate) fn start(conn: &Conn, hold: Option<&Hold>, mode: Mode, pair: bool) -> Option<Relay> {
        let (Conn::Session(session), Some(hold), Mode::Exclusive) = (conn, hold, mode) else {
            return None;
        };
        // The answer must be seen to whatever becomes of the releasing task: a
        // relay needs a runtime to finish on.
        tokio::runtime::Handle::try_current().ok()?;
        let statement = session.cached(sql::relay(pair))?;
        let handoff = hold.relay()?;
        Some(Relay { statement, handoff })
    }

    /// Sends the relay — queued before this returns — and sees it through on a
    /// task of the current runtime, whatever becomes of the caller: the answer
    /// decides who holds the key, so it is never left unread. `report` gets the
    /// releasing guard's own result (see [`run`](Relay::run)).
    pub(crate) fn detach(
        self,
        session: Session,
        hold: Hold,
        id: LockId,
        unlock: Option<Statement>,
        holder: Option<i32>,
        report: impl FnOnce(Result<(), Error>) + Send + 'static,
    ) {
        super::finish_detached(async move {
            report(self.run(&session, hold, &id, unlock, holder).await);
        });
    }

    /// Sends the relay (queued on the first poll), hands the waiter what its try
    /// came to, and answers the releasing guard's own result: `Ok` when its lock
    /// was held, a lost error when it was not.
    ///
    /// `unlock` is the releasing guard's prepared unlock (the waiter's guard
    /// needs the same one) and `holder` the backend that granted its lock.
    async fn run(
        self,
        session: &Session,
        hold: Hold,
        id: &LockId,
        unlock: Option<Statement>,
        holder: Option<i32>,
    ) -> Result<(), Error> {
        let key = id.lock_key();
        let params = key.params();
        let mut in_flight = InFlight {
            session,
            id,
            parts: Some((hold, self.handoff)),
        };
        let result = Exec::Session(session)
            .query(&Prepared::Statement(self.statement), &params)
            .await;
        let (hold, handoff) = in_flight.parts.take().expect("taken only here");
        let row = match result {
            Ok(rows) => rows.into_iter().next(),
            Err(e) => return Err(fail(session, hold, handoff, id, Error::db(e))),
        };
        let answer = row.and_then(|row| {
            let (held, backend, granted): (bool, i32, bool) = (row.get(0), row.get(1), row.get(2));
            holder
                .is_none_or(|h| h == backend)
                .then_some((held, backend, granted))
        });
        let Some((held, backend, granted)) = answer else {
            // Not the holder's server session: the ledger relays only where each
            // client connection keeps its server session, so this is a proxy
            // that changed its ways. The key's state here is unknown, and the
            // source takes no more session locks.
            hold.ledger().set_pooling(Pooling::Transaction);
            return Err(fail(
                session,
                hold,
                handoff,
                id,
                Error::transaction_pooler("a relayed unlock ran in another server session"),
            ));
        };
        let (passed, request) = hold.pass(handoff, !granted);
        let relayed = match passed {
            Passed::Held(hold) => {
                let ask = &request.ask;
                let held = Held {
                    check_every: ask.check_every,
                    lease: None,
                    fencing_token: None,
                    label: None,
                    settings: Settings::default(),
                    in_transaction: false,
                    backend_pid: Some(backend),
                    unlock,
                    safety: ask.safety,
                };
                Relayed::Granted(Box::new(Guard::new(
                    Conn::Session(session.clone()),
                    hold,
                    ask.id.clone(),
                    Mode::Exclusive,
                    ask.started,
                    held,
                )))
            }
            Passed::Attempt(admission) => Relayed::Busy(admission),
        };
        // A waiter that is gone gets nothing: its guard, dropped here, releases
        // the lock (or relays it on); its admission, dropped, frees the key.
        drop(request.reply(relayed));
        match held {
            true => Ok(()),
            false => Err(Error::lost(id)),
        }
    }
}

/// A relay on the wire. Dropped before its answer is read (its task was dropped
/// with a runtime that shut down while the connection lives on), it queues an
/// unlock-if-held behind the relay before the permits go: whatever the relay
/// left (its try's grant, or the old hold) is released, and the next statement
/// about the key comes after.
struct InFlight<'a> {
    session: &'a Session,
    id: &'a LockId,
    parts: Option<(Hold, Handoff)>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(parts) = self.parts.take() {
            let mut cleanup = pin!(unlock_if_held(
                Exec::Session(self.session),
                self.id,
                Mode::Exclusive
            ));
            let _ = cleanup
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()));
            drop(parts);
        }
    }
}

/// A relay statement failed: whether the unlock, the try or neither ran is
/// unknown, but the session holds the key at most once (the try runs only after
/// the unlock). The session releases it if held, keeping the permits until then;
/// the waiter's request is dropped unanswered, and it goes back to waiting.
fn fail(session: &Session, hold: Hold, handoff: Handoff, id: &LockId, err: Error) -> Error {
    let err = err.with_lock(id);
    if err.is_connection_lost() {
        return err.into_lost();
    }
    session.owe_unlock(id.clone(), Mode::Exclusive, true, (hold, handoff.abandon()));
    err.context(
        "the unlock could not run; the session retries it until it goes through (after the \
         open transaction ends), and a session that drives its own connection closes it after \
         5 s",
    )
}
