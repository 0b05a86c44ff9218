//! The last confirmed contact with the server on one connection: the moment a
//! request was sent whose answer came back, on the monotonic clock.
//!
//! A [`Session`](super::Session) keeps one for its connection, shared by every
//! guard on it, so one guard's check confirms the contact for all of them; a
//! guard on a pooled connection keeps its own. A guard's local deadline counts
//! from it (see the crate docs, "Partitions").

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The process-wide origin the contact clocks count from: a second before the
/// first use, so that an instant taken just before it still counts exactly.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(Duration::from_secs(1)).unwrap_or(now)
    })
}

/// A monotonic timestamp, in microseconds since [`origin`], that only moves
/// forward.
#[derive(Debug)]
pub(crate) struct Contact(AtomicU64);

impl Contact {
    pub(crate) fn new(at: Instant) -> Contact {
        Contact(AtomicU64::new(micros(at)))
    }

    /// Records that the server answered a request sent at `sent`.
    pub(crate) fn confirm(&self, sent: Instant) {
        self.0.fetch_max(micros(sent), Ordering::AcqRel);
    }

    /// The last confirmed contact.
    pub(crate) fn last(&self) -> Instant {
        origin() + Duration::from_micros(self.0.load(Ordering::Acquire))
    }
}

/// Rounded down: a contact is never recorded later than it happened.
fn micros(at: Instant) -> u64 {
    at.saturating_duration_since(origin()).as_micros() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_only_moves_forward() {
        let start = Instant::now();
        let contact = Contact::new(start);
        assert!(contact.last() <= start);
        assert!(start - contact.last() < Duration::from_millis(1));
        let later = start + Duration::from_secs(3);
        contact.confirm(later);
        contact.confirm(start);
        assert!(contact.last() <= later);
        assert!(later - contact.last() < Duration::from_millis(1));
    }
}
