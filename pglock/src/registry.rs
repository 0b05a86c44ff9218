//! The name registry: a table on the server that remembers which name each
//! advisory key was derived from, so that listings ([`locks`](crate::locks)) can
//! show names where PostgreSQL only knows integers.
//!
//! Opt-in and process-wide: [`install_registry`] (or [`enable_registry`] where the
//! table was created by a migration) switches it on for the process. From then on
//! the first acquisition of each name through a pool in the process pipelines
//! one upsert behind its lock statement — no extra round trip — and later ones
//! write nothing. The names already recorded by the process are kept in memory
//! as 128-bit fingerprints (the key and a second hash of the name), at most
//! [`REGISTRY_MEMORY`] of them (about 2 MiB): past that the set starts over, so a
//! process that cycles through more distinct names writes each again at most
//! once per that many new names.

use std::collections::HashSet;
use std::hash::Hasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use siphasher::sip::SipHasher24;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Row};

use crate::conn::Param;
use crate::error::Error;
use crate::key::{key_for, LockId, LockKey};

/// The SQL that [`install_registry`] runs: one table, created if missing. Run it
/// yourself (migration tools) if you prefer, then call [`enable_registry`]; it is
/// idempotent.
///
/// One row per distinct name: `lock_key` (the name's [`key_for`]), `name` (the
/// first name recorded for the key), `first_seen`, `last_seen` (refreshed when a
/// process records the name again: at most once per process, see the module
/// docs), and `other_names`: further names seen for the same key — a hash
/// collision, which [`locks`](crate::locks) reports.
pub const REGISTRY_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS public.pglock_names (\
     lock_key pg_catalog.int8 PRIMARY KEY, \
     name pg_catalog.text NOT NULL, \
     first_seen pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now(), \
     last_seen pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now(), \
     other_names pg_catalog.text[] NOT NULL DEFAULT '{}')";

/// How many names a process remembers as recorded before its set starts over.
pub const REGISTRY_MEMORY: usize = 65_536;

/// Whether the table exists, by its qualified name.
const EXISTS: &str = "SELECT pg_catalog.to_regclass('public.pglock_names') IS NOT NULL";

/// Records `$2` as the name of key `$1`; answers the name the registry keeps for
/// the key (another one: a collision, also added to `other_names`, at most 8).
///
/// It is pipelined behind a lock statement, and must neither slow nor block it:
/// its own transaction commits without waiting for the disk
/// (`synchronous_commit = off`: a server crash may forget the last moments'
/// names, which the next acquisition by name records again in another process),
/// and it waits at most 50 ms for a row lock (`lock_timeout`, e.g. behind a
/// transaction that keeps the row locked), after which it fails, and the failure
/// is only logged. Both settings are local to the statement's own transaction.
pub(crate) const REGISTER: &str = "WITH s AS MATERIALIZED (SELECT \
     pg_catalog.set_config('synchronous_commit', 'off', true) AS a, \
     pg_catalog.set_config('lock_timeout', '50ms', true) AS b) \
     INSERT INTO public.pglock_names AS n (lock_key, name) \
     SELECT $1::pg_catalog.int8, $2::pg_catalog.text FROM s \
     ON CONFLICT (lock_key) DO UPDATE SET last_seen = pg_catalog.now(), \
     other_names = CASE WHEN n.name = excluded.name OR excluded.name = ANY (n.other_names) \
     OR pg_catalog.cardinality(n.other_names) >= 8 THEN n.other_names \
     ELSE n.other_names || excluded.name END \
     RETURNING n.name";

/// Deletes the names not recorded since `$1` seconds ago; answers how many.
const PRUNE: &str = "WITH d AS (DELETE FROM public.pglock_names \
     WHERE last_seen < pg_catalog.now() - pg_catalog.make_interval(secs => $1::pg_catalog.float8) \
     RETURNING 1) SELECT pg_catalog.count(*) FROM d";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Fingerprints of the names this process has recorded (or is recording).
static RECORDED: LazyLock<Mutex<HashSet<u128>>> = LazyLock::new(Default::default);

/// Creates the registry table ([`REGISTRY_SCHEMA`]), `public.pglock_names`, if
/// missing, and switches the registry on for this process ([`enable_registry`]).
/// Always in schema `public` and always named with its schema, so that services
/// with different `search_path`s share it. Idempotent, also when several
/// processes start at once: call it at start-up.
///
/// Needs the right to create a table in `public` (PostgreSQL 15 grants it to the
/// database owner only); a service without it calls [`enable_registry`] on a table
/// a migration created.
///
/// What it costs: a row per distinct name; one write — pipelined behind the lock
/// statement, so no extra round trip — the first time a process acquires a lock
/// by a name; nothing on later acquisitions. Prune names not used for a while with
/// [`prune_registry`].
///
/// # What is recorded
///
/// Names of session locks taken through a pool — with the guard API or the
/// attribute — after the switch, whether the lock was granted or busy: there the
/// write runs on a connection no code but pglock's can have used since it left
/// the pool, so it is its own transaction. Not recorded: raw-key locks (they have
/// no name); transaction locks, locks through a [`Session`](crate::Session) and
/// locks on a lent connection ([`acquire_on`](crate::Advisory::acquire_on)) —
/// those connections are yours and may be inside one of your transactions, which
/// the write would join (undone with it, and able to abort it or change its
/// settings). [`register`] records those names explicitly (once, say at
/// start-up).
///
/// # Cancel safety
/// Cancel-safe: the statement either commits or not; the switch is set only once
/// it has.
pub async fn install_registry(client: &Client) -> Result<(), Error> {
    match client.batch_execute(REGISTRY_SCHEMA).await {
        Ok(()) => {}
        // `CREATE TABLE IF NOT EXISTS` racing another process's fails with one of
        // these: the table is there, as the check confirms.
        Err(e)
            if e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                || e.code() == Some(&SqlState::DUPLICATE_TABLE) =>
        {
            return enable_registry(client).await;
        }
        Err(e) => return Err(e.into()),
    }
    ENABLED.store(true, Ordering::Release);
    Ok(())
}

/// Switches the registry on for this process, after checking that the table
/// ([`REGISTRY_SCHEMA`]) exists: a [misuse](Error::is_misuse) error, and the
/// switch left as it was, when it does not. See [`install_registry`] for what is
/// recorded and what it costs.
///
/// The switch, and the set of names the process has recorded, are per process,
/// not per database: a process that locks on several databases needs the table
/// in each, and records each name in the first database it locks it on. Should the table disappear later, each
/// name's one write fails — pipelined, without slowing or failing the acquisition
/// — and is logged (`tracing`, level warn).
///
/// # Cancel safety
/// Cancel-safe: it only reads.
pub async fn enable_registry(client: &Client) -> Result<(), Error> {
    let row = client.query_one(EXISTS, &[]).await?;
    if !row.get::<_, bool>(0) {
        return Err(Error::misuse(
            "the name registry needs the public.pglock_names table: call \
             pglock::install_registry(&client) once (or run pglock::REGISTRY_SCHEMA)",
        ));
    }
    ENABLED.store(true, Ordering::Release);
    Ok(())
}

/// Switches the registry off for this process: later acquisitions record
/// nothing. The names already recorded stay in the table.
pub fn disable_registry() {
    ENABLED.store(false, Ordering::Release);
}

/// Whether this process records lock names ([`install_registry`],
/// [`enable_registry`]).
pub fn registry_enabled() -> bool {
    ENABLED.load(Ordering::Acquire)
}

/// Records `name` in the registry now, in one round trip, whether or not the
/// registry is switched on for this process — for names locked in transactions,
/// through a [`Session`](crate::Session) or on lent connections, or recorded
/// ahead of use. Refreshes `last_seen` when the name was recorded already. Call
/// it outside a transaction: like the automatic write, it sets
/// `synchronous_commit = off` and a 50 ms `lock_timeout` for the transaction it
/// runs in.
///
/// Answers `Ok(None)` when the registry keeps `name` for its key, and
/// `Ok(Some(first))` when it keeps another name for the same key (a hash
/// collision: `name` is added to the row's `other_names`, and
/// [`locks`](crate::locks) shows both).
///
/// # Errors
/// [`is_invalid_argument`](Error::is_invalid_argument) for the empty name; a
/// database error when the table is missing.
///
/// # Cancel safety
/// Cancel-safe: the statement either commits or not.
pub async fn register(client: &Client, name: &str) -> Result<Option<String>, Error> {
    let key = key_for(name)?;
    let params: [Param<'_>; 2] = [(&key, Type::INT8), (&name, Type::TEXT)];
    let rows = client
        .query_typed(REGISTER, &params)
        .await
        .map_err(|e| Error::db(e).with_lock(&LockId::name(name)))?;
    let kept: String = rows
        .first()
        .map(|r| r.get(0))
        .unwrap_or_else(|| name.to_string());
    Ok((kept != name).then_some(kept))
}

/// Deletes the names no process has recorded for `unused_for` (by `last_seen`);
/// answers how many. A pruned name that is used again is recorded again by the
/// next process that acquires it for the first time — not by a process that
/// recorded it before the prune (it remembers having done so), so prune with a
/// margin well above the lifetime of your processes, or names in use show as raw
/// keys until such a process restarts.
///
/// # Cancel safety
/// Cancel-safe: the statement either commits or not.
pub async fn prune_registry(client: &Client, unused_for: Duration) -> Result<u64, Error> {
    // Past 300 years nothing is that old, and PostgreSQL's interval would overflow.
    let secs = unused_for.as_secs_f64().min(300.0 * 365.25 * 86_400.0);
    let params: [Param<'_>; 1] = [(&secs, Type::FLOAT8)];
    let rows = client.query_typed(PRUNE, &params).await?;
    Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0)) as u64)
}

/// The in-process record of one name's first registration: while it lives, no
/// other acquisition of the name in the process writes it. Dropped without an
/// answer from the server (the statement was never sent, or the connection
/// broke), it lets the next acquisition try again.
pub(crate) struct Claim {
    fingerprint: u128,
    key: i64,
    name: String,
    answered: AtomicBool,
}

impl Claim {
    /// A claim on recording the name of `id`, when the registry is on, `id` is a
    /// name, and the process has not recorded it yet.
    pub(crate) fn of(id: &LockId) -> Option<Claim> {
        if !registry_enabled() {
            return None;
        }
        let name = id.lock_name()?;
        let LockKey::Big(key) = id.lock_key() else {
            return None;
        };
        let fingerprint = fingerprint(key, name);
        let mut recorded = RECORDED.lock().unwrap_or_else(|p| p.into_inner());
        if recorded.contains(&fingerprint) {
            return None;
        }
        if recorded.len() >= REGISTRY_MEMORY {
            recorded.clear();
        }
        recorded.insert(fingerprint);
        Some(Claim {
            fingerprint,
            key,
            name: name.into(),
            answered: AtomicBool::new(false),
        })
    }

    /// The statement's parameters.
    pub(crate) fn params(&self) -> Vec<Param<'_>> {
        vec![(&self.key, Type::INT8), (&self.name, Type::TEXT)]
    }

    /// Takes the server's answer: the name is recorded for the process (even when
    /// the write failed: it is not retried), and a collision or a failure is
    /// logged. Never fails the acquisition.
    pub(crate) fn answered(&self, result: &Result<Vec<Row>, tokio_postgres::Error>) {
        match result {
            Ok(rows) => {
                self.answered.store(true, Ordering::Release);
                if let Some(kept) = rows.first().map(|r| r.get::<_, &str>(0)) {
                    if kept != self.name {
                        tracing::warn!(
                            lock = %self.name,
                            key = self.key,
                            recorded = kept,
                            "pglock: two lock names hash to one key; the registry keeps the \
                             first, and listings show both"
                        );
                    }
                }
            }
            Err(e) if e.as_db_error().is_some() => {
                self.answered.store(true, Ordering::Release);
                let hint = if e.code() == Some(&SqlState::UNDEFINED_TABLE) {
                    "the public.pglock_names table is missing on this database \
                     (pglock::install_registry)"
                } else {
                    "the name is not recorded by this process"
                };
                tracing::warn!(lock = %self.name, error = %e, "pglock: registry write failed: {hint}");
            }
            // No answer: the next acquisition tries again.
            Err(_) => {}
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.answered.load(Ordering::Acquire) {
            RECORDED
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.fingerprint);
        }
    }
}

/// The key and a second, independent hash of the name: names that collide on
/// the key are still told apart.
fn fingerprint(key: i64, name: &str) -> u128 {
    let mut hasher = SipHasher24::new_with_keys(0x7067_6c6f_636b, 0x6e61_6d65);
    hasher.write(name.as_bytes());
    (u128::from(key as u64) << 64) | u128::from(hasher.finish())
}
