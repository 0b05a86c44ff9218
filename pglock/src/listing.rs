//! Every advisory lock held or awaited on a database, by name where the
//! registry knows it, filtered by directory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::SystemTime;

use futures_util::future::join;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::error::Error;
use crate::key::{LockKey, Mode};
use crate::sql;

/// The characters that end a directory in a lock name.
pub const DIRECTORY_SEPARATORS: [char; 3] = ['/', '.', ':'];

/// One session holding or awaiting one advisory lock, as [`locks`] lists it.
///
/// PostgreSQL keeps no time of grant for a lock; the times here say exactly what
/// PostgreSQL knows (see each field). It does not tell session-level from
/// transaction-level advisory locks apart either: a lock whose holder is
/// [`idle`](ListedLock::session_state) is a session lock, as a transaction lock
/// ends with its transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListedLock {
    /// The key PostgreSQL locks.
    pub key: LockKey,
    /// The name the registry keeps for the key; `None` for a raw key, or a name
    /// nobody recorded (no registry, or not recorded yet).
    pub name: Option<String>,
    /// Other names recorded for the same key: a hash collision (two names that
    /// lock each other out). Empty normally.
    pub other_names: Vec<String>,
    /// Exclusive or shared.
    pub mode: Mode,
    /// `true` for a holder, `false` for a waiter.
    pub granted: bool,
    /// Backend process id of the session; `None` for a lock held by a prepared
    /// transaction (`PREPARE TRANSACTION`), which has no session.
    pub pid: Option<i32>,
    /// The holder label: the session's `application_name` (what
    /// [`Advisory::label`](crate::Advisory::label) sets). `None` when not visible
    /// to the asking role (`pg_stat_activity` hides other roles' sessions from
    /// roles without `pg_read_all_stats`).
    pub label: Option<String>,
    /// The client's address; `None` for a Unix socket, or when not visible.
    pub client_addr: Option<IpAddr>,
    /// When the session connected (`pg_stat_activity.backend_start`): the lock
    /// was granted after it.
    pub session_start: Option<SystemTime>,
    /// The session's state (`pg_stat_activity.state`): `idle`, `active`,
    /// `idle in transaction` …
    pub session_state: Option<String>,
    /// For a holder: a time since which the lock has certainly been held —
    /// `pg_stat_activity.state_change` while the holder's session is idle (also
    /// idle in a transaction): the end of its last statement. No statement has run
    /// since, so none released the lock; it was granted by that statement or an
    /// earlier one. For a pglock guard on a pooled connection or a session of its
    /// own, with nothing else run on it, that statement is the acquisition, so this
    /// is when the lock was granted (to within a round trip). `None` while the
    /// session runs a statement (which may be the one that took the lock), for
    /// waiters, and when not visible.
    pub held_since: Option<SystemTime>,
    /// When the session's current transaction started
    /// (`pg_stat_activity.xact_start`); `None` outside a transaction. A
    /// transaction-level lock was taken after it.
    pub transaction_start: Option<SystemTime>,
    /// For a waiter: when it started waiting (`pg_locks.waitstart`, PostgreSQL
    /// 14 and later; `None` for holders, and on older servers).
    pub wait_start: Option<SystemTime>,
    /// For a waiter: the sessions it waits for (`pg_blocking_pids`): holders in a
    /// conflicting mode, and waiters ahead of it in the queue whose requests
    /// conflict with its own. Empty for holders.
    pub blocked_by: Vec<i32>,
}

impl ListedLock {
    /// The name, or the key when the name is unknown — what a table shows.
    pub fn display_name(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => self.key.to_string(),
        }
    }
}

/// Which locks [`locks`] lists.
///
/// A **directory** is a prefix of lock names that ends at a separator: `/`, `.`
/// or `:` ([`DIRECTORY_SEPARATORS`]; `::` too, as in the attribute's default ids
/// `my_app::jobs::send_invoices`). `LockFilter::directory("billing")` lists
/// `billing/invoices`, `billing.nightly` and `billing::run`, but not `billing`
/// itself nor `billing2.x`; `directory("billing/")`, ending with a separator,
/// lists only names that start with `billing/`; `directory("billing/eu")` lists
/// `billing/eu/…`, `billing/eu.…` and `billing/eu:…`; `directory("")` lists
/// every named lock. Directories match names as
/// the registry records them (case-sensitive), so locks whose name is unknown —
/// raw keys, names never recorded — are in no directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockFilter {
    /// Only locks in this directory; `None` for every lock.
    pub directory: Option<String>,
}

impl LockFilter {
    /// Every advisory lock on the database.
    pub fn all() -> LockFilter {
        LockFilter::default()
    }

    /// The locks whose name is in `directory` (see [`LockFilter`]).
    pub fn directory(directory: impl Into<String>) -> LockFilter {
        LockFilter {
            directory: Some(directory.into()),
        }
    }

    /// Whether a lock called `name` (`None`: unknown) passes the filter.
    pub fn matches(&self, name: Option<&str>) -> bool {
        let Some(dir) = self.directory.as_deref() else {
            return true;
        };
        let Some(rest) = name.and_then(|n| n.strip_prefix(dir)) else {
            return false;
        };
        dir.is_empty()
            || dir.ends_with(DIRECTORY_SEPARATORS)
            || rest.starts_with(DIRECTORY_SEPARATORS)
    }
}

/// Lists every advisory lock held or awaited in the client's database: one
/// [`ListedLock`] per session and lock, named from the registry
/// ([`install_registry`](crate::install_registry)) where it knows the key —
/// whichever process recorded the name — and by key otherwise.
///
/// Rows come grouped by lock — named locks by name, then unnamed ones by key —
/// and within a lock, holders first, then waiters in queue order (by the time
/// they started waiting). One round trip: the names are read by a statement
/// pipelined with the one that reads `pg_locks`, so a lock taken between the two
/// may show by key. Without the registry table every lock shows by key.
///
/// Not shown, because the server does not know them without a write per
/// acquisition: a lease's time-to-live (a session's `idle_session_timeout` is
/// visible to that session only) and the guard's acquisition id.
///
/// ```no_run
/// # async fn demo(client: &tokio_postgres::Client) -> Result<(), pglock::Error> {
/// for lock in pglock::locks(client, &pglock::LockFilter::directory("billing")).await? {
///     println!(
///         "{} {} {} pid {:?} {:?} blocked by {:?}",
///         lock.display_name(),
///         lock.mode,
///         if lock.granted { "held" } else { "waiting" },
///         lock.pid,
///         lock.label,
///         lock.blocked_by,
///     );
/// }
/// # Ok(()) }
/// ```
///
/// # Cancel safety
/// Cancel-safe: it only reads.
pub async fn locks(client: &Client, filter: &LockFilter) -> Result<Vec<ListedLock>, Error> {
    let (locks, names) = join(
        client.query_typed(sql::LOCKS, &[]),
        client.query_typed(sql::LOCK_NAMES, &[]),
    )
    .await;
    let locks = locks?;
    let names: HashMap<i64, (String, Vec<String>)> = match names {
        Ok(rows) => rows
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect(),
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => HashMap::new(),
        Err(e) => return Err(e.into()),
    };
    let mut listed = Vec::with_capacity(locks.len());
    for row in locks {
        let (classid, objid, objsubid): (u32, u32, i16) = (row.get(0), row.get(1), row.get(2));
        let key = if objsubid == 2 {
            LockKey::Pair(classid as i32, objid as i32)
        } else {
            LockKey::Big((i64::from(classid) << 32) | i64::from(objid))
        };
        let (name, other_names) = match key {
            LockKey::Big(k) => names.get(&k).cloned().unzip(),
            LockKey::Pair(..) => (None, None),
        };
        if !filter.matches(name.as_deref()) {
            continue;
        }
        listed.push(ListedLock {
            key,
            name,
            other_names: other_names.unwrap_or_default(),
            mode: Mode::from_pg_mode(row.get(3)),
            granted: row.get(4),
            pid: row.get(5),
            label: row.get(6),
            client_addr: row.get(7),
            session_start: row.get(8),
            session_state: row.get(9),
            transaction_start: row.get(10),
            held_since: row.get(11),
            wait_start: row.get(12),
            blocked_by: row.get::<_, Option<Vec<i32>>>(13).unwrap_or_default(),
        });
    }
    // Stable: keeps each lock's holders-then-queue order.
    listed.sort_by(|a, b| {
        (a.name.is_none(), &a.name, key_order(a.key)).cmp(&(
            b.name.is_none(),
            &b.name,
            key_order(b.key),
        ))
    });
    Ok(listed)
}

fn key_order(key: LockKey) -> (bool, i64) {
    match key {
        LockKey::Big(k) => (false, k),
        LockKey::Pair(a, b) => (true, (i64::from(a) << 32) | i64::from(b as u32)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_end_at_a_separator() {
        let billing = LockFilter::directory("billing");
        for name in [
            "billing/invoices",
            "billing.nightly",
            "billing::run",
            "billing:7",
        ] {
            assert!(billing.matches(Some(name)), "{name}");
        }
        for name in ["billing", "billing2.x", "bill/x", "x/billing/y"] {
            assert!(!billing.matches(Some(name)), "{name}");
        }
        assert!(!billing.matches(None));
        let slash = LockFilter::directory("billing/");
        assert!(slash.matches(Some("billing/invoices")));
        assert!(!slash.matches(Some("billing.nightly")));
        assert!(LockFilter::directory("billing/eu").matches(Some("billing/eu/run")));
        assert!(!LockFilter::directory("billing/eu").matches(Some("billing/europe")));
        assert!(LockFilter::all().matches(None));
        assert!(LockFilter::all().matches(Some("x")));
    }
}
