//! Parked unlocks: a dropped exclusive guard of a [`Locker`] leaves its unlock for
//! the next acquisition of the same lock in the process to carry, in one
//! statement with that acquisition's try.
//!
//! A guard dropped with nobody waiting for its lock gives its unlock to a task,
//! which sends it at once when it runs. An acquisition of the same lock through
//! the same locker that comes first (a worker that takes the same lock again
//! and again, say) takes the unlock over instead: it sends
//! [`sql::relay`] — the unlock, then its own try — and the cycle costs one
//! statement and one round trip instead of two statements.
//!
//! What stays true:
//! - The parked guard's ledger permit stays in the ledger until the unlock is
//!   sent: by the task, by the acquisition that carries it, or — when another
//!   kind of acquisition of the key comes (shared, fenced, …) — by that one, at
//!   once, before it goes on. So nothing about the key reaches the connection
//!   ahead of the unlock.
//! - The unlock runs before the try, so a session waiting for the lock on the
//!   server is granted it first (the try then fails, and the acquisition goes on
//!   as after any failed try).
//! - A carrying acquisition that fails or is cancelled cleans up with an
//!   unlock-if-held under the key's permits, as any failed attempt: the session
//!   holds the key at most once then (the try runs only after the unlock), and
//!   that hold is nobody's.
//! - Delay: the unlock leaves when the task is first polled (on a multi-thread
//!   runtime at once on an idle worker; on a current-thread one when the
//!   dropping task next yields, which is also when a connection task could send
//!   a queued statement).
//!
//! [`Locker`]: crate::Locker

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use super::{Conn, Ended, Ending};
use crate::conn::ledger::Hold;
use crate::conn::Session;
use crate::error::Error;
use crate::key::{LockId, Mode};

use crate::sql;

/// A dropped guard's unlock, waiting in its ledger entry.
pub(crate) struct Parked {
    ended: Ended,
}

/// A parked unlock an acquisition took over, without its hold (which is the
/// acquisition's now). Dropped before [`sent`](Carried::sent), it sends the
/// unlock on its own.
pub(crate) struct Carried {
    ended: Option<Ended>,
    armed: AtomicBool,
}

impl Carried {
    /// The connection the parked guard held the lock on: the carrying attempt
    /// runs there.
    pub(crate) fn session(&self) -> &Session {
        match self.ended.as_ref().map(|e| &e.conn) {
            Some(Conn::Session(session)) => session,
            _ => unreachable!("only a session's unlocks are parked"),
        }
    }

    /// The unlock went out with the carrying attempt's statement: the parked
    /// guard's lock.
    pub(crate) fn sent(&self) -> &LockId {
        self.armed.store(false, Ordering::Relaxed);
        &self.ended.as_ref().expect("kept until dropped").id
    }

    /// The parked unlock ran: whether the parked guard's lock was still held.
    pub(crate) fn settled(id: &LockId, held: bool) {
        if !held {
            super::dropped(id, Err(Error::lost(id)));
        }
    }
}

impl Drop for Carried {
    fn drop(&mut self) {
        if let Some(ended) = self.ended.take().filter(|_| *self.armed.get_mut()) {
            ended.unlock_detached();
        }
    }
}

impl Parked {
    /// Parks `ended` when it is an exclusive lock on a locker's connection that
    /// nobody waits for, and starts the task that sends it; sends it at once
    /// otherwise.
    pub(crate) fn park_or_unlock(ended: Ended) {
        let parkable = ended.mode == Mode::Exclusive
            && matches!(ended.ending, Ending::Unlock { .. })
            && !ended.settings.changed()
            && tokio::runtime::Handle::try_current().is_ok()
            && match (&ended.conn, &ended.hold) {
                (Conn::Session(session), Some(hold)) => {
                    // Prepared on a locker's connections only.
                    session
                        .cached(sql::relay(ended.id.lock_key().is_pair()))
                        .is_some()
                        && hold.may_park()
                }
                _ => false,
            };
        if !parkable {
            return ended.unlock_detached();
        }
        let mut parking = ended.hold.as_ref().expect("checked above").parking();
        parking.put(Parked { ended });
        tokio::spawn(async move {
            // Queued (and the hold given up) under the slot's lock; the answer
            // is awaited outside it.
            let unlocking = parking.send_with(|parked| {
                let id = parked.ended.id.clone();
                let mut unlocking = Box::pin(parked.ended.unlock());
                let mut cx = Context::from_waker(Waker::noop());
                let first = unlocking.as_mut().poll(&mut cx);
                (id, unlocking, first)
            });
            if let Some((id, unlocking, first)) = unlocking {
                let result = match first {
                    Poll::Ready(result) => result,
                    Poll::Pending => unlocking.await,
                };
                super::dropped(&id, result);
            }
        });
    }

    /// Sends the unlock now (queued before this returns); the hold goes once it
    /// is queued.
    pub(crate) fn unlock_now(self) {
        self.ended.unlock_detached();
    }

    /// Taken over by an acquisition of the key: the hold, for the acquisition,
    /// and what the carrying attempt needs.
    pub(crate) fn carry(mut self) -> (Hold, Carried) {
        let hold = self
            .ended
            .hold
            .take()
            .expect("a parked unlock has its hold");
        (
            hold,
            Carried {
                ended: Some(self.ended),
                armed: AtomicBool::new(true),
            },
        )
    }
}
