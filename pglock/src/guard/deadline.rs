//! The local deadline: a guard gives its lock up, in its own mind, a safety margin
//! before the server could free it without hearing from this client.
//!
//! The server frees a session lock only when the session ends. Over a silent
//! connection that takes at least a *server bound* after the last packet it
//! received from the client: the keepalive settings' `idle + interval × retries`
//! ([`Keepalive::server_bound`]), or a lease's time-to-live
//! (`idle_session_timeout`). That last packet came no earlier than the last
//! request whose answer the client received, sent at the last *confirmed contact*
//! ([`Contact`]). So the guard's deadline is
//!
//! ```text
//! last confirmed contact + server bound × (1 − 1 %) − margin
//! ```
//!
//! on the monotonic clock: the 1 % covers the server's clock running faster than
//! the client's, and the margin (a tenth of the bound unless set) covers what is
//! left — the time a grant's answer spent on its way back, and the moment between
//! the deadline and the holder acting on it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::conn::contact::Contact;
use crate::error::Error;
use crate::keepalive::Keepalive;
use crate::key::LockId;

/// The clock-rate difference assumed between client and server, in percent.
pub const ASSUMED_DRIFT_PERCENT: u32 = 1;

/// The safety margin when none is set: this fraction of the server bound.
const DEFAULT_MARGIN_DIVISOR: u32 = 10;

/// A lock's partition-safety settings, from its builder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Safety {
    /// The keepalive settings of the lock's connection, as the caller states them
    /// (a connection pglock made knows its own).
    pub(crate) keepalive: Option<Keepalive>,
    pub(crate) margin: Option<Duration>,
}

/// The least time the server needs to free a lock on a connection that went
/// silent: the keepalive bound, or the lease's time-to-live, whichever is
/// shorter; `None` when neither is known.
fn bound(keepalive: Option<Keepalive>, ttl: Option<Duration>) -> Option<Duration> {
    let keepalive = keepalive.map(|k| k.server_bound());
    match (keepalive, ttl) {
        (Some(k), Some(t)) => Some(k.min(t)),
        (k, t) => k.or(t),
    }
}

/// What is left of `bound` once the assumed clock drift is taken off (without
/// overflowing, whatever the bound).
fn drift_free(bound: Duration) -> Duration {
    bound.saturating_sub(bound / 100 * ASSUMED_DRIFT_PERCENT)
}

impl Safety {
    fn margin(&self, bound: Duration) -> Duration {
        self.margin.unwrap_or(bound / DEFAULT_MARGIN_DIVISOR)
    }

    /// How long after a confirmed contact the lock counts as held; `None` when
    /// the bound is unknown (no deadline). Zero when the margin eats it all.
    fn span(&self, bound: Duration) -> Duration {
        drift_free(bound).saturating_sub(self.margin(bound))
    }

    /// Refuses settings under which a healthy holder would lose its lock: the
    /// margin must leave a deadline, and whatever confirms contact (an active
    /// check set with `check_every`, an automatic renewal) must come at most every
    /// half of it, leaving the other half for the round trip.
    pub(crate) fn check(
        &self,
        id: &LockId,
        keepalive: Option<Keepalive>,
        lease: Option<Duration>,
        auto_renew: bool,
        check_every: Option<Duration>,
    ) -> Result<(), Error> {
        let keepalive = self.keepalive.or(keepalive);
        let Some(bound) = bound(keepalive, lease) else {
            return Ok(());
        };
        let span = self.span(bound);
        let refuse = |why: String| Err(Error::invalid_argument(why).with_lock(id));
        if span.is_zero() {
            return refuse(format!(
                "a safety margin of {:?} leaves no local deadline: the server may free the \
                 lock {bound:?} after the last contact; give a margin below {:?}",
                self.margin(bound),
                drift_free(bound)
            ));
        }
        let (what, every) = match lease {
            Some(ttl) if auto_renew => ("the automatic renewal (a third of the lease)", ttl / 3),
            Some(_) => return Ok(()),
            // The default interval adapts (`Guard::check_every`).
            None => match check_every {
                Some(every) => ("check_every", every),
                None => return Ok(()),
            },
        };
        if every > span / 2 {
            return refuse(format!(
                "{what} every {every:?} cannot keep a healthy lock: its local deadline is \
                 {span:?} after the last confirmed contact (server bound {bound:?} less 1 % \
                 clock drift and a {:?} margin), and a confirmation must come within half of \
                 that; confirm more often or give a longer bound",
                self.margin(bound)
            ));
        }
        Ok(())
    }
}

/// A guard's deadline state: the contact clock of its connection and what the
/// server bound is made of.
pub(crate) struct Deadline {
    contact: Arc<Contact>,
    keepalive: Option<Keepalive>,
    /// The connection's own time-to-live (a `Locker`'s leased connections).
    connection_lease: Option<Duration>,
    safety: Safety,
}

impl Deadline {
    /// For a lock granted at `granted` on a connection with the contact clock
    /// `contact` and (if known) the keepalive settings `keepalive`.
    pub(crate) fn new(
        contact: Arc<Contact>,
        keepalive: Option<Keepalive>,
        connection_lease: Option<Duration>,
        safety: Safety,
        granted: Instant,
    ) -> Deadline {
        contact.confirm(granted);
        Deadline {
            contact,
            keepalive: keepalive.or(safety.keepalive),
            connection_lease,
            safety,
        }
    }

    /// The shorter of the lock's lease and its connection's.
    fn ttl(&self, lease: Option<Duration>) -> Option<Duration> {
        match (lease, self.connection_lease) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How long after a confirmed contact the lock counts as held, for a lease
    /// of `ttl` (if any); `None` without a known server bound.
    pub(crate) fn span(&self, ttl: Option<Duration>) -> Option<Duration> {
        bound(self.keepalive, self.ttl(ttl)).map(|b| self.safety.span(b))
    }

    /// How often a plain lock's active checks must run to keep it: half the
    /// span, leaving the other half for the round trip.
    pub(crate) fn check_cap(&self) -> Option<Duration> {
        self.span(None).map(|span| span / 2)
    }

    /// The margin kept before the server bound.
    pub(crate) fn margin(&self, ttl: Option<Duration>) -> Option<Duration> {
        bound(self.keepalive, self.ttl(ttl)).map(|b| self.safety.margin(b))
    }

    /// When the lock stops counting as held unless contact is confirmed again.
    pub(crate) fn at(&self, ttl: Option<Duration>) -> Option<Instant> {
        self.span(ttl).map(|span| self.contact.last() + span)
    }

    /// The last confirmed contact on the lock's connection.
    pub(crate) fn last_contact(&self) -> Instant {
        self.contact.last()
    }

    /// Records that the server answered a request sent at `sent` on the lock's
    /// connection.
    pub(crate) fn confirm(&self, sent: Instant) {
        self.contact.confirm(sent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn deadline_counts_from_the_last_contact() {
        let now = Instant::now();
        let d = Deadline::new(
            Arc::new(Contact::new(now)),
            Some(Keepalive::default()),
            None,
            Safety::default(),
            now,
        );
        // A connection lease shorter than the keepalive bound is the bound.
        let leased = Deadline::new(
            Arc::new(Contact::new(now)),
            Some(Keepalive::default()),
            Some(Duration::from_secs(10)),
            Safety::default(),
            now,
        );
        assert_eq!(leased.span(None), Some(Duration::from_millis(8_900)));
        // 25 s less 1 % (0.25 s) less a tenth (2.5 s).
        assert_eq!(d.span(None), Some(Duration::from_millis(22_250)));
        assert_eq!(d.margin(None), Some(Duration::from_millis(2_500)));
        // A lease shorter than the keepalive bound decides.
        assert_eq!(d.span(Some(s(2))), Some(Duration::from_millis(1_780)));
        let at = d.at(None).unwrap();
        assert!(at <= now + d.span(None).unwrap());
        d.confirm(now + s(5));
        assert!(d.at(None).unwrap() > at + s(4));
        let unknown = Deadline::new(
            Arc::new(Contact::new(now)),
            None,
            None,
            Safety::default(),
            now,
        );
        assert_eq!(unknown.at(None), None);
        assert!(unknown.at(Some(s(3))).is_some());
    }

    #[test]
    fn unworkable_settings_are_refused() {
        let id = LockId::from("x");
        let ok = Safety::default();
        let k = Some(Keepalive::default());
        let every = |n| Some(s(n));
        assert!(ok.check(&id, k, None, false, every(5)).is_ok());
        assert!(ok.check(&id, k, None, false, every(11)).is_ok());
        assert!(ok
            .check(&id, k, None, false, every(12))
            .unwrap_err()
            .is_invalid_argument());
        // The default adapts; nothing known, nothing to refuse.
        let short = Keepalive::new(s(2), s(1), 2).ok();
        assert!(ok.check(&id, short, None, false, None).is_ok());
        assert!(ok.check(&id, None, None, false, every(60)).is_ok());
        assert!(ok.check(&id, None, Some(s(2)), true, every(60)).is_ok());
        // A lease longer than the keepalive bound renews too rarely for it.
        assert!(ok
            .check(&id, k, Some(s(90)), true, None)
            .unwrap_err()
            .is_invalid_argument());
        let wide = Safety {
            keepalive: None,
            margin: Some(s(25)),
        };
        assert!(wide
            .check(&id, k, None, false, every(1))
            .unwrap_err()
            .is_invalid_argument());
    }
}
