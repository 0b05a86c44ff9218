//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`): pglock records, the application's exporter publishes.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `pglock_acquisitions_total` | counter | `mode` (`exclusive`/`shared`), `outcome` (`acquired`, `busy`, `error`) | session-lock acquisitions |
//! | `pglock_wait_seconds` | histogram | `mode`, `outcome` | time from the call to its outcome (connection checkout included) |
//! | `pglock_hold_seconds` | histogram | `mode` | time from grant to release or drop |
//! | `pglock_locks_held` | gauge | — | session locks this process holds now |
//! | `pglock_losses_total` | counter | — | locks found lost: `lost()` completed or `release()` said [`is_lost`](crate::Error::is_lost) |
//!
//! Without the feature every function here is empty.

use std::time::Duration;

use crate::key::Mode;

/// How an acquisition ended.
#[derive(Clone, Copy)]
pub(crate) enum Outcome {
    Acquired,
    Busy,
    Error,
}

#[cfg(feature = "metrics")]
fn mode_label(mode: Mode) -> &'static str {
    match mode {
        Mode::Exclusive => "exclusive",
        Mode::Shared => "shared",
    }
}

/// An acquisition ended, after `waited`.
pub(crate) fn acquisition(mode: Mode, outcome: Outcome, waited: Duration) {
    #[cfg(feature = "metrics")]
    {
        let outcome = match outcome {
            Outcome::Acquired => "acquired",
            Outcome::Busy => "busy",
            Outcome::Error => "error",
        };
        let labels = [("mode", mode_label(mode)), ("outcome", outcome)];
        metrics::counter!("pglock_acquisitions_total", &labels).increment(1);
        metrics::histogram!("pglock_wait_seconds", &labels).record(waited.as_secs_f64());
        if outcome == "acquired" {
            metrics::gauge!("pglock_locks_held").increment(1.0);
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (mode, outcome, waited);
}

/// A held lock ended (released, dropped or found lost at release), after `held`.
pub(crate) fn ended(mode: Mode, held: Duration) {
    #[cfg(feature = "metrics")]
    {
        metrics::histogram!("pglock_hold_seconds", "mode" => mode_label(mode))
            .record(held.as_secs_f64());
        metrics::gauge!("pglock_locks_held").decrement(1.0);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (mode, held);
}

/// A lock was found lost.
pub(crate) fn lost() {
    #[cfg(feature = "metrics")]
    metrics::counter!("pglock_losses_total").increment(1);
}
