//! [`Pending`]: an acquisition whose lock statement is on the wire, and what
//! happens to it when the acquire future is dropped there.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use super::finish_detached;
use super::park::Carried;
use crate::conn::ledger::Admission;
use crate::conn::{self, Conn, Exec, Prepared};
use crate::key::{LockId, Mode};
use crate::sql;

/// The connection an attempt runs on.
pub(crate) enum Target<'a> {
    /// A connection the guard will own (pooled, dedicated or a shared session).
    Owned(Conn),
    /// A connection the caller lent.
    Borrowed(Exec<'a>),
}

/// An attempt in flight. If it is dropped after its statements were sent (the
/// acquire future was cancelled), it makes sure that whatever the server grants
/// the attempt is given back before anyone in the process can use the key on
/// that connection again, and gives up the attempt's ledger admission only then.
pub(crate) struct Pending<'a> {
    target: Option<Target<'a>>,
    /// A parked unlock this attempt carries: sent with its lock statement, or on
    /// its own, ahead of anything else about the key, if the attempt ends first.
    carried: Option<Carried>,
    admission: Option<Admission>,
    id: LockId,
    mode: Mode,
    sent: AtomicBool,
}

impl<'a> Pending<'a> {
    pub(crate) fn new(
        target: Target<'a>,
        admission: Option<Admission>,
        id: LockId,
        mode: Mode,
    ) -> Pending<'a> {
        Pending {
            target: Some(target),
            carried: None,
            admission,
            id,
            mode,
            sent: AtomicBool::new(false),
        }
    }

    pub(crate) fn exec(&self) -> Exec<'_> {
        match self.target.as_ref().expect("pending owns its target") {
            Target::Owned(conn) => conn.exec(),
            Target::Borrowed(exec) => *exec,
        }
    }

    /// The attempt carries `carried`: its lock statement is the relay statement.
    pub(crate) fn carrying(mut self, carried: Option<Carried>) -> Self {
        self.carried = carried;
        self
    }

    /// Whether the attempt carries a parked unlock.
    pub(crate) fn carries(&self) -> bool {
        self.carried.is_some()
    }

    /// To be called right before the lock statement is first polled: a drop after
    /// that has sent it. Answers the lock of the parked unlock it carries, which
    /// goes out with it.
    pub(crate) fn mark_sent(&self) -> Option<&LockId> {
        self.sent.store(true, Ordering::Relaxed);
        self.carried.as_ref().map(Carried::sent)
    }

    /// The attempt is settled: the connection (when owned) and the admission go
    /// back to the caller. A parked unlock it did not send goes now, first.
    pub(crate) fn disarm(mut self) -> (Option<Conn>, Option<Admission>) {
        drop(self.carried.take());
        let conn = match self.target.take() {
            Some(Target::Owned(conn)) => Some(conn),
            _ => None,
        };
        (conn, self.admission.take())
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        // A parked unlock not sent yet goes ahead of anything else.
        drop(self.carried.take());
        let Some(target) = self.target.take() else {
            return;
        };
        let admission = self.admission.take();
        if let Some(admission) = &admission {
            admission.disown();
        }
        if !self.sent.load(Ordering::Relaxed) {
            return;
        }
        let (id, mode) = (self.id.clone(), self.mode);
        tracing::debug!(lock = %id, "pglock: acquire cancelled while waiting; cleaning up");
        match target {
            // A shared or lent connection: a cancel request interrupts whatever
            // the connection runs when it lands — possibly another task's (or the
            // caller's next) statement queued behind the wait. So no cancel: a
            // release-if-granted is queued right now, behind the wait, and runs
            // the moment it ends. The ledger admission is kept until it has run,
            // so no other attempt on the key comes between.
            Target::Owned(Conn::Session(session)) => {
                let conn = Conn::Session(session);
                finish_detached(async move {
                    match unlock_if_held(conn.exec(), &id, mode).await {
                        Ok(_) => drop(admission),
                        Err(e) => {
                            let err = crate::Error::db(e);
                            if !err.is_connection_lost() {
                                if let Conn::Session(session) = &conn {
                                    session.owe_unlock(id, mode, true, admission);
                                }
                            }
                        }
                    }
                })
            }
            Target::Borrowed(exec) => {
                // Queued on the first poll; the answer is not awaited (the
                // connection is the caller's again once this returns).
                let mut cleanup = std::pin::pin!(unlock_if_held(exec, &id, mode));
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                let _ = cleanup.as_mut().poll(&mut cx);
                drop(admission);
            }
            // A pooled (or dedicated) connection is ours alone: cancel the wait and
            // close the connection, never reuse it. Its session ends as soon as the
            // wait does, which frees anything granted meanwhile, and a cancel that
            // lands late has nobody's statement to hit.
            Target::Owned(conn) => {
                let token = conn.exec().cancel_token();
                conn.discard();
                drop(admission);
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    drop(handle.spawn(conn::cancel(token)));
                }
            }
        }
    }
}

/// Releases the key in `mode` if this session holds it; see [`sql::unlock_if_held`].
/// Answers whether it was held. Sent as an unnamed statement, queued on the first
/// poll.
pub(crate) async fn unlock_if_held(
    exec: Exec<'_>,
    id: &LockId,
    mode: Mode,
) -> Result<bool, tokio_postgres::Error> {
    let key = id.lock_key();
    let (classid, objid, objsubid) = key.pg_locks_triple();
    let mut params = key.params();
    params.extend(sql::triple_params(&classid, &objid, &objsubid));
    let statement = Prepared::Typed(sql::unlock_if_held(mode, key.is_pair()));
    exec.query(&statement, &params)
        .await
        .map(|rows| !rows.is_empty())
}
