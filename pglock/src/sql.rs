//! Every SQL text pglock sends. Lock names never appear here: only integer keys,
//! as bind parameters.
//!
//! Every function, view and table is schema-qualified (`pg_catalog.…`): an
//! unqualified name resolves through the session's `search_path`, where a schema
//! listed before `pg_catalog` could shadow `pg_advisory_lock` with a function that
//! locks nothing.

use std::sync::LazyLock;

use crate::key::Mode;

/// Session locks live until unlocked or the session ends; transaction locks until
/// the transaction ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    Session,
    Xact,
}

/// How a lock statement behaves when the lock is busy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// `pg_try_advisory_*`: answers `false` at once.
    Try,
    /// `pg_advisory_*` under a statement-local `lock_timeout` given as the last
    /// parameter (`'0'` waits forever). The statement saves the session's
    /// `lock_timeout`, sets the one asked for, waits, and puts the saved value back,
    /// all in one round trip; on error the (sub)transaction's rollback undoes it.
    Wait,
}

fn index(scope: Scope, mode: Mode, attempt: Attempt, pair: bool) -> usize {
    (scope as usize) << 3 | (mode as usize) << 2 | (attempt as usize) << 1 | pair as usize
}

static LOCK: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut all = vec![String::new(); 16];
    for scope in [Scope::Session, Scope::Xact] {
        for mode in [Mode::Exclusive, Mode::Shared] {
            for attempt in [Attempt::Try, Attempt::Wait] {
                for pair in [false, true] {
                    all[index(scope, mode, attempt, pair)] = build(scope, mode, attempt, pair);
                }
            }
        }
    }
    all
});

fn key_args(pair: bool) -> &'static str {
    if pair {
        "$1::pg_catalog.int4, $2::pg_catalog.int4"
    } else {
        "$1::pg_catalog.int8"
    }
}

fn build(scope: Scope, mode: Mode, attempt: Attempt, pair: bool) -> String {
    let function = format!(
        "pg_catalog.pg_{}advisory_{}lock{}",
        if attempt == Attempt::Try { "try_" } else { "" },
        if scope == Scope::Xact { "xact_" } else { "" },
        if mode == Mode::Shared { "_shared" } else { "" },
    );
    let args = key_args(pair);
    match attempt {
        Attempt::Try => format!("SELECT {function}({args})"),
        Attempt::Wait => {
            let timeout = if pair { "$3::pg_catalog.text" } else { "$2::pg_catalog.text" };
            // Volatile functions keep the subquery from being flattened or its
            // columns from being pruned; its target list runs left to right.
            format!(
                "SELECT pg_catalog.set_config('lock_timeout', s.saved, true) FROM (SELECT \
                 pg_catalog.current_setting('lock_timeout') AS saved, \
                 pg_catalog.set_config('lock_timeout', {timeout}, true) AS applied, \
                 {function}({args}) AS locked) AS s"
            )
        }
    }
}

/// The statement that takes a lock.
pub(crate) fn lock(scope: Scope, mode: Mode, attempt: Attempt, pair: bool) -> &'static str {
    &LOCK[index(scope, mode, attempt, pair)]
}

static UNLOCK: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut all = Vec::new();
    for mode in [Mode::Exclusive, Mode::Shared] {
        for pair in [false, true] {
            let suffix = if mode == Mode::Shared { "_shared" } else { "" };
            all.push(format!(
                "SELECT pg_catalog.pg_advisory_unlock{suffix}({})",
                key_args(pair)
            ));
        }
    }
    all
});

/// The statement that releases one hold of a session lock; answers whether it was
/// held.
pub(crate) fn unlock(mode: Mode, pair: bool) -> &'static str {
    &UNLOCK[(mode as usize) << 1 | pair as usize]
}

static UNLOCK_IF_HELD: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut all = Vec::new();
    for mode in [Mode::Exclusive, Mode::Shared] {
        for pair in [false, true] {
            let suffix = if mode == Mode::Shared { "_shared" } else { "" };
            let n = if pair { 3 } else { 2 };
            all.push(format!(
                "SELECT pg_catalog.pg_advisory_unlock{suffix}({}) FROM pg_catalog.pg_locks \
                 WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid() AND granted \
                 AND mode = '{}' AND classid = ${n}::pg_catalog.oid AND objid = ${}::pg_catalog.oid \
                 AND objsubid = ${}::pg_catalog.int2",
                key_args(pair),
                mode.pg_mode(),
                n + 1,
                n + 2,
            ));
        }
    }
    all
});

/// Releases a session lock only if this session holds it in that mode.
///
/// Used after a failed or abandoned wait: the server may have granted the lock
/// just as `lock_timeout` fired (a known race in PostgreSQL: the timeout error is
/// raised although the lock was granted, and a session lock then stays held). A
/// session that already held the lock in that mode never waits for it, so a
/// granted row right after a failed wait can only be that wait's own grant — as
/// long as no other attempt on the same key ran in between on the same
/// connection, which the connection's ledger guarantees (see `conn::ledger`).
pub(crate) fn unlock_if_held(mode: Mode, pair: bool) -> &'static str {
    &UNLOCK_IF_HELD[(mode as usize) << 1 | pair as usize]
}

/// The `pg_locks` triple of a key as bind parameters, in the order the
/// statements here take them after the key.
pub(crate) fn triple_params<'a>(
    classid: &'a u32,
    objid: &'a u32,
    objsubid: &'a i16,
) -> [crate::key::Param<'a>; 3] {
    use tokio_postgres::types::Type;
    [
        (classid, Type::OID),
        (objid, Type::OID),
        (objsubid, Type::INT2),
    ]
}

/// Filters `pg_locks` (aliased `l`) to one advisory key in this database;
/// parameters `$1..$3` are the `classid`, `objid`, `objsubid` triple.
const KEY_FILTER: &str = "l.locktype = 'advisory' \
     AND l.database = (SELECT oid FROM pg_catalog.pg_database \
     WHERE datname = pg_catalog.current_database()) \
     AND l.classid = $1::pg_catalog.oid AND l.objid = $2::pg_catalog.oid AND l.objsubid = $3::pg_catalog.int2";

/// One session (other than this one) holding the key in a mode that conflicts
/// with the request (`$4`: whether the request is exclusive).
pub(crate) static HOLDER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT l.pid, coalesce(a.application_name, '') FROM pg_catalog.pg_locks AS l \
         LEFT JOIN pg_catalog.pg_stat_activity AS a ON a.pid = l.pid \
         WHERE {KEY_FILTER} AND l.granted AND l.pid <> pg_catalog.pg_backend_pid() \
         AND ($4::pg_catalog.bool OR l.mode = 'ExclusiveLock') LIMIT 1"
    )
});

/// Every session holding or waiting for the key, holders first, then waiters in
/// queue order. `waitstart` is read through `to_jsonb` so that servers older than
/// PostgreSQL 14, which lack the column, answer NULL instead of failing.
pub(crate) static STATUS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT l.pid, l.mode, l.granted, a.application_name, a.client_addr, \
         a.backend_start, (pg_catalog.to_jsonb(l) ->> 'waitstart')::pg_catalog.timestamptz AS wait_start \
         FROM pg_catalog.pg_locks AS l LEFT JOIN pg_catalog.pg_stat_activity AS a ON a.pid = l.pid \
         WHERE {KEY_FILTER} \
         ORDER BY l.granted DESC, wait_start NULLS FIRST, l.pid"
    )
});

/// Whether this session holds the key (`$1..$3` triple) in mode `$4`.
pub(crate) const IS_HELD: &str = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE \
     locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid() AND granted AND mode = $4::pg_catalog.text \
     AND classid = $1::pg_catalog.oid AND objid = $2::pg_catalog.oid AND objsubid = $3::pg_catalog.int2)";

/// Sets the session's `idle_session_timeout` (a lease's time-to-live).
pub(crate) const SET_TTL: &str = "SELECT pg_catalog.set_config('idle_session_timeout', $1::pg_catalog.text, false)";
/// Sets the session's `application_name` (a holder label).
pub(crate) const SET_LABEL: &str = "SELECT pg_catalog.set_config('application_name', $1::pg_catalog.text, false)";
/// Puts back what [`SET_TTL`] and [`SET_LABEL`] changed on a session pglock does
/// not own.
pub(crate) const RESET_TTL: &str = "RESET idle_session_timeout";
pub(crate) const RESET_LABEL: &str = "RESET application_name";

/// A duration as a millisecond setting value (`lock_timeout`,
/// `idle_session_timeout`): whole milliseconds rounded up, `None` past the
/// `i32::MAX` ms such settings accept.
pub(crate) fn millis(d: std::time::Duration) -> Option<String> {
    let ms = d.as_nanos().div_ceil(1_000_000);
    (ms <= i32::MAX as u128).then(|| format!("{ms}ms"))
}

pub(crate) const UNLOCK_ALL: &str = "SELECT pg_catalog.pg_advisory_unlock_all()";
pub(crate) const SAVEPOINT: &str = "SAVEPOINT pglock_acquire";
pub(crate) const RELEASE_SAVEPOINT: &str = "RELEASE SAVEPOINT pglock_acquire";
pub(crate) const ROLLBACK_SAVEPOINT: &str =
    "ROLLBACK TO SAVEPOINT pglock_acquire; RELEASE SAVEPOINT pglock_acquire";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_the_right_functions() {
        assert_eq!(
            lock(Scope::Session, Mode::Exclusive, Attempt::Try, false),
            "SELECT pg_catalog.pg_try_advisory_lock($1::pg_catalog.int8)"
        );
        assert_eq!(
            lock(Scope::Xact, Mode::Shared, Attempt::Try, true),
            "SELECT pg_catalog.pg_try_advisory_xact_lock_shared($1::pg_catalog.int4, $2::pg_catalog.int4)"
        );
        let wait = lock(Scope::Session, Mode::Shared, Attempt::Wait, true);
        assert!(wait.contains("pg_advisory_lock_shared($1::pg_catalog.int4, $2::pg_catalog.int4)"));
        assert!(wait.contains("set_config('lock_timeout', $3::pg_catalog.text, true)"));
        assert_eq!(
            unlock(Mode::Shared, false),
            "SELECT pg_catalog.pg_advisory_unlock_shared($1::pg_catalog.int8)"
        );
        assert!(unlock_if_held(Mode::Exclusive, true).contains("classid = $3::pg_catalog.oid"));
        assert!(unlock_if_held(Mode::Shared, false).contains("mode = 'ShareLock'"));
    }
}
