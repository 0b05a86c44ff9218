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

/// Keys built from static parts: recording allocates nothing and builds no label
/// set per call (the macros' dynamic labels would, on every lock cycle).
#[cfg(feature = "metrics")]
mod keys {
    use metrics::{Key, Label, Level, Metadata};

    use super::Outcome;
    use crate::key::Mode;

    pub(super) static META: Metadata<'static> =
        Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

    const fn pair(mode: &'static str, outcome: &'static str) -> [Label; 2] {
        [
            Label::from_static_parts("mode", mode),
            Label::from_static_parts("outcome", outcome),
        ]
    }

    static BY_OUTCOME: [[[Label; 2]; 3]; 2] = [
        [
            pair("exclusive", "acquired"),
            pair("exclusive", "busy"),
            pair("exclusive", "error"),
        ],
        [
            pair("shared", "acquired"),
            pair("shared", "busy"),
            pair("shared", "error"),
        ],
    ];

    static BY_MODE: [[Label; 1]; 2] = [
        [Label::from_static_parts("mode", "exclusive")],
        [Label::from_static_parts("mode", "shared")],
    ];

    fn mode_index(mode: Mode) -> usize {
        match mode {
            Mode::Exclusive => 0,
            Mode::Shared => 1,
        }
    }

    pub(super) fn with_outcome(name: &'static str, mode: Mode, outcome: Outcome) -> Key {
        let o = match outcome {
            Outcome::Acquired => 0,
            Outcome::Busy => 1,
            Outcome::Error => 2,
        };
        Key::from_static_parts(name, &BY_OUTCOME[mode_index(mode)][o])
    }

    pub(super) fn with_mode(name: &'static str, mode: Mode) -> Key {
        Key::from_static_parts(name, &BY_MODE[mode_index(mode)])
    }

    pub(super) fn plain(name: &'static str) -> Key {
        Key::from_static_name(name)
    }
}

/// An acquisition ended, after `waited`.
pub(crate) fn acquisition(mode: Mode, outcome: Outcome, waited: Duration) {
    #[cfg(feature = "metrics")]
    metrics::with_recorder(|r| {
        let acquisitions = keys::with_outcome("pglock_acquisitions_total", mode, outcome);
        r.register_counter(&acquisitions, &keys::META).increment(1);
        let wait = keys::with_outcome("pglock_wait_seconds", mode, outcome);
        r.register_histogram(&wait, &keys::META)
            .record(waited.as_secs_f64());
        if matches!(outcome, Outcome::Acquired) {
            r.register_gauge(&keys::plain("pglock_locks_held"), &keys::META)
                .increment(1.0);
        }
    });
    #[cfg(not(feature = "metrics"))]
    let _ = (mode, outcome, waited);
}

/// A held lock ended (released, dropped or found lost at release), after `held`.
pub(crate) fn ended(mode: Mode, held: Duration) {
    #[cfg(feature = "metrics")]
    metrics::with_recorder(|r| {
        r.register_histogram(&keys::with_mode("pglock_hold_seconds", mode), &keys::META)
            .record(held.as_secs_f64());
        r.register_gauge(&keys::plain("pglock_locks_held"), &keys::META)
            .decrement(1.0);
    });
    #[cfg(not(feature = "metrics"))]
    let _ = (mode, held);
}

/// A lock was found lost.
pub(crate) fn lost() {
    #[cfg(feature = "metrics")]
    metrics::with_recorder(|r| {
        r.register_counter(&keys::plain("pglock_losses_total"), &keys::META)
            .increment(1);
    });
}
