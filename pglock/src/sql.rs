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

/// Every lock and unlock statement also answers the backend that ran it: through a
/// transaction-pooling proxy, consecutive statements of one client may run in
/// different server sessions, and a session lock taken in one cannot be released
/// from another.
const PID: &str = "pg_catalog.pg_backend_pid()";

fn build(scope: Scope, mode: Mode, attempt: Attempt, pair: bool) -> String {
    let function = format!(
        "pg_catalog.pg_{}advisory_{}lock{}",
        if attempt == Attempt::Try { "try_" } else { "" },
        if scope == Scope::Xact { "xact_" } else { "" },
        if mode == Mode::Shared { "_shared" } else { "" },
    );
    let args = key_args(pair);
    match attempt {
        Attempt::Try => format!("SELECT {function}({args}), {PID} WHERE {ON_PRIMARY}"),
        Attempt::Wait => {
            let timeout = if pair {
                "$3::pg_catalog.text"
            } else {
                "$2::pg_catalog.text"
            };
            // Volatile functions keep the subquery from being flattened or its
            // columns from being pruned; its target list runs left to right.
            format!(
                "SELECT pg_catalog.set_config('lock_timeout', s.saved, true), {PID} FROM (SELECT \
                 pg_catalog.current_setting('lock_timeout') AS saved, \
                 pg_catalog.set_config('lock_timeout', {timeout}, true) AS applied, \
                 {function}({args}) AS locked WHERE {ON_PRIMARY}) AS s"
            )
        }
    }
}

/// The condition every lock statement is filtered by: the server is not a
/// standby. Advisory locks are not WAL-logged, so a lock taken on a hot standby
/// excludes nobody on the primary; on a standby a lock statement therefore
/// answers no row at all, and its lock function never runs (a row's filter is
/// evaluated before its target list). Checked in the lock statement itself, the
/// check costs no statement and no round trip, and it is asked again with every
/// attempt, so there is nothing to cache per connection and nothing to get
/// stale: a standby promoted meanwhile is a primary for the very next attempt.
/// (The reverse cannot happen to a live connection: a primary becomes a standby
/// only through a restart, which ends its sessions.)
const ON_PRIMARY: &str = "NOT pg_catalog.pg_is_in_recovery()";

/// The statement that takes a lock. It answers one row where the server is a
/// primary, none on a standby (see [`ON_PRIMARY`]).
pub(crate) fn lock(scope: Scope, mode: Mode, attempt: Attempt, pair: bool) -> &'static str {
    &LOCK[index(scope, mode, attempt, pair)]
}

static UNLOCK: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut all = Vec::new();
    for mode in [Mode::Exclusive, Mode::Shared] {
        for pair in [false, true] {
            let suffix = if mode == Mode::Shared { "_shared" } else { "" };
            all.push(format!(
                "SELECT pg_catalog.pg_advisory_unlock{suffix}({}), {PID}",
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

static RELAY: LazyLock<[String; 2]> = LazyLock::new(|| {
    [false, true].map(|pair| {
        let args = key_args(pair);
        format!(
            "SELECT pg_catalog.pg_advisory_unlock({args}), {PID}, \
             pg_catalog.pg_try_advisory_lock({args})"
        )
    })
});

/// The statement that hands an exclusive session lock from one guard to the
/// next on the same connection: it releases one hold and tries the lock again,
/// in one statement (one round trip, one flush). It answers whether the lock
/// was held, the backend, and whether the try was granted. The target list runs
/// left to right, so the try runs after the unlock, which has granted the lock
/// to any other session waiting for it on the server first: the try then fails
/// and the server's queue order holds.
pub(crate) fn relay(pair: bool) -> &'static str {
    &RELAY[pair as usize]
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

/// Every advisory lock held or awaited in this database: per lock, holders
/// first, then waiters in queue order (by `waitstart`, read through `to_jsonb` as
/// in [`STATUS`]). `held_since` is the holder session's `state_change` while that
/// session is idle (no statement running, so no lock taken or released since);
/// `blocked_by` is asked only for waiters (`pg_blocking_pids` takes the lock
/// manager's locks).
pub(crate) const LOCKS: &str = "SELECT l.classid, l.objid, l.objsubid, l.mode, l.granted, l.pid, \
     a.application_name, a.client_addr, a.backend_start, a.state, a.xact_start, \
     CASE WHEN l.granted AND a.state IN ('idle', 'idle in transaction', \
     'idle in transaction (aborted)') THEN a.state_change END AS held_since, \
     (pg_catalog.to_jsonb(l) ->> 'waitstart')::pg_catalog.timestamptz AS wait_start, \
     CASE WHEN NOT l.granted THEN pg_catalog.pg_blocking_pids(l.pid) END AS blocked_by \
     FROM pg_catalog.pg_locks AS l LEFT JOIN pg_catalog.pg_stat_activity AS a ON a.pid = l.pid \
     WHERE l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_catalog.pg_database \
     WHERE datname = pg_catalog.current_database()) \
     ORDER BY l.objsubid, l.classid, l.objid, l.granted DESC, wait_start NULLS FIRST, l.pid";

/// The registered names of the bigint keys locked in this database (pipelined
/// with [`LOCKS`]; fails when the registry table does not exist).
pub(crate) const LOCK_NAMES: &str = "SELECT n.lock_key, n.name, n.other_names \
     FROM public.pglock_names AS n WHERE n.lock_key IN (SELECT \
     (l.classid::pg_catalog.int8 << 32) | l.objid::pg_catalog.int8 FROM pg_catalog.pg_locks AS l \
     WHERE l.locktype = 'advisory' AND l.objsubid = 1)";

/// Whether this session holds the key (`$1..$3` triple) in mode `$4`.
pub(crate) const IS_HELD: &str = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE \
     locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid() AND granted AND mode = $4::pg_catalog.text \
     AND classid = $1::pg_catalog.oid AND objid = $2::pg_catalog.oid AND objsubid = $3::pg_catalog.int2)";

/// Sets the session's `idle_session_timeout` (a lease's time-to-live).
pub(crate) const SET_TTL: &str =
    "SELECT pg_catalog.set_config('idle_session_timeout', $1::pg_catalog.text, false)";
/// Sets the session's `application_name` (a holder label).
pub(crate) const SET_LABEL: &str =
    "SELECT pg_catalog.set_config('application_name', $1::pg_catalog.text, false)";
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

/// Pooler-safe locks live in a transaction the guard keeps open.
pub(crate) const BEGIN: &str = "BEGIN";
pub(crate) const COMMIT: &str = "COMMIT";
pub(crate) const ROLLBACK: &str = "ROLLBACK";

pub(crate) const UNLOCK_ALL: &str = "SELECT pg_catalog.pg_advisory_unlock_all()";
/// A savepoint with a name of its own (`pglock_<n>`, `n` unique in the process), so
/// that it clashes with no savepoint of the caller's nor of another acquisition.
pub(crate) struct Savepoint(u64);

impl Savepoint {
    pub(crate) fn new() -> Savepoint {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Savepoint(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }

    pub(crate) fn begin(&self) -> String {
        format!("SAVEPOINT pglock_{}", self.0)
    }

    pub(crate) fn release(&self) -> String {
        format!("RELEASE SAVEPOINT pglock_{}", self.0)
    }

    pub(crate) fn rollback(&self) -> String {
        format!(
            "ROLLBACK TO SAVEPOINT pglock_{0}; RELEASE SAVEPOINT pglock_{0}",
            self.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_the_right_functions() {
        assert_eq!(
            lock(Scope::Session, Mode::Exclusive, Attempt::Try, false),
            "SELECT pg_catalog.pg_try_advisory_lock($1::pg_catalog.int8), \
             pg_catalog.pg_backend_pid() WHERE NOT pg_catalog.pg_is_in_recovery()"
        );
        assert_eq!(
            lock(Scope::Xact, Mode::Shared, Attempt::Try, true),
            "SELECT pg_catalog.pg_try_advisory_xact_lock_shared($1::pg_catalog.int4, \
             $2::pg_catalog.int4), pg_catalog.pg_backend_pid() WHERE NOT pg_catalog.pg_is_in_recovery()"

        );
        let wait = lock(Scope::Session, Mode::Shared, Attempt::Wait, true);
        assert!(wait.contains("pg_advisory_lock_shared($1::pg_catalog.int4, $2::pg_catalog.int4)"));
        assert!(wait.contains("set_config('lock_timeout', $3::pg_catalog.text, true)"));
        assert!(wait.contains("AS locked WHERE NOT pg_catalog.pg_is_in_recovery()) AS s"));
        assert_eq!(
            unlock(Mode::Shared, false),
            "SELECT pg_catalog.pg_advisory_unlock_shared($1::pg_catalog.int8), pg_catalog.pg_backend_pid()"
        );
        assert_eq!(
            relay(false),
            "SELECT pg_catalog.pg_advisory_unlock($1::pg_catalog.int8), pg_catalog.pg_backend_pid(), \
             pg_catalog.pg_try_advisory_lock($1::pg_catalog.int8)"
        );
        assert!(unlock_if_held(Mode::Exclusive, true).contains("classid = $3::pg_catalog.oid"));
        assert!(unlock_if_held(Mode::Shared, false).contains("mode = 'ShareLock'"));
    }

    /// Every function a statement calls is named with its schema: none resolves
    /// through the session's `search_path`.
    #[test]
    fn every_function_is_schema_qualified() {
        let mut all: Vec<String> = Vec::new();
        for scope in [Scope::Session, Scope::Xact] {
            for mode in [Mode::Exclusive, Mode::Shared] {
                for attempt in [Attempt::Try, Attempt::Wait] {
                    for pair in [false, true] {
                        all.push(lock(scope, mode, attempt, pair).to_string());
                        all.push(unlock(mode, pair).to_string());
                        all.push(unlock_if_held(mode, pair).to_string());
                        all.push(relay(pair).to_string());
                    }
                }
            }
        }
        all.extend([HOLDER.clone(), STATUS.clone()]);
        all.extend(
            [
                IS_HELD,
                SET_TTL,
                SET_LABEL,
                UNLOCK_ALL,
                crate::fencing::NEXT_TOKEN,
            ]
            .map(String::from),
        );
        for sql in &all {
            let bytes = sql.as_bytes();
            for (i, _) in sql.match_indices('(') {
                let start = bytes[..i]
                    .iter()
                    .rposition(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
                    .map_or(0, |p| p + 1);
                let name = &sql[start..i];
                if name.is_empty() || ["coalesce", "EXISTS", "AS"].contains(&name) {
                    continue;
                }
                assert!(
                    sql[..start].ends_with("pg_catalog.") || sql[..start].ends_with("public."),
                    "unqualified {name}( in {sql}"
                );
            }
        }
    }
}
