//! Names → keys under each scheme, and `pglock key`.

use clap::ValueEnum;
use pglock::LockKey;

use crate::SchemeArgs;

/// Which library's name → key derivation to follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scheme {
    /// pglock's own: SipHash-2-4 with a zero key (`pglock::key_for`).
    Pglock,
    /// sqlx's `PgAdvisoryLock::new` (HKDF-SHA256).
    Sqlx,
    /// django-pglock's `pglock.advisory` (SHA-256).
    Django,
    /// .NET DistributedLock's `PostgresAdvisoryLockKey`.
    DistributedLock,
    /// The Ruby gem with_advisory_lock (CRC-32, two integers).
    WithAdvisoryLock,
}

impl Scheme {
    fn describe(self) -> &'static str {
        match self {
            Scheme::Pglock => "pglock (SipHash-2-4, zero key, over the UTF-8 bytes)",
            Scheme::Sqlx => "sqlx PgAdvisoryLock::new (HKDF-SHA256)",
            Scheme::Django => "django-pglock (first 8 bytes of SHA-256, little-endian)",
            Scheme::DistributedLock => "DistributedLock PostgresAdvisoryLockKey (.NET)",
            Scheme::WithAdvisoryLock => "with_advisory_lock (Ruby; CRC-32 & 0x7fffffff, prefix)",
        }
    }
}

/// The key of `name` under the chosen scheme.
pub(crate) fn key_of(name: &str, scheme: &SchemeArgs) -> Result<LockKey, pglock::Error> {
    Ok(match scheme.scheme {
        Scheme::Pglock => LockKey::Big(pglock::key_for(name)?),
        Scheme::Sqlx => LockKey::sqlx(name),
        Scheme::Django => LockKey::django_pglock(name)?,
        Scheme::DistributedLock => LockKey::distributed_lock(name, scheme.allow_hashing)?,
        Scheme::WithAdvisoryLock => LockKey::with_advisory_lock(name, scheme.prefix),
    })
}

/// The `WHERE` clause that finds `key` in `pg_catalog.pg_locks`.
pub(crate) fn pg_locks_filter(key: LockKey) -> String {
    let (classid, objid, objsubid) = key.pg_locks_triple();
    format!(
        "locktype = 'advisory' AND database = (SELECT oid FROM pg_catalog.pg_database WHERE \
         datname = pg_catalog.current_database()) AND classid = {classid} AND objid = {objid} \
         AND objsubid = {objsubid}"
    )
}

/// The arguments of `pg_advisory_lock(…)` for `key`.
pub(crate) fn sql_args(key: LockKey) -> String {
    match key {
        LockKey::Big(k) => k.to_string(),
        LockKey::Pair(a, b) => format!("{a}, {b}"),
    }
}

/// `pglock key NAME`: prints the key, its `pg_locks` columns and ready SQL.
pub(crate) fn print_key(name: &str, scheme: &SchemeArgs) -> u8 {
    let key = match key_of(name, scheme) {
        Ok(key) => key,
        Err(e) => {
            eprintln!("pglock: {e}");
            return 2;
        }
    };
    let (classid, objid, objsubid) = key.pg_locks_triple();
    let form = match key {
        LockKey::Big(_) => "bigint",
        LockKey::Pair(..) => "two integers",
    };
    out!("name:     {name}");
    out!("scheme:   {}", scheme.scheme.describe());
    out!("key:      {key} ({form})");
    out!("pg_locks: classid = {classid}, objid = {objid}, objsubid = {objsubid}");
    out!(
        "find:     SELECT pid, mode, granted FROM pg_catalog.pg_locks WHERE {};",
        pg_locks_filter(key)
    );
    out!(
        "lock:     SELECT pg_catalog.pg_advisory_lock({});",
        sql_args(key)
    );
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(scheme: Scheme) -> SchemeArgs {
        SchemeArgs {
            scheme,
            allow_hashing: false,
            prefix: 0,
        }
    }

    #[test]
    fn schemes_map_to_the_library_constructors() {
        assert_eq!(
            key_of("billing.nightly", &args(Scheme::Pglock)).unwrap(),
            LockKey::Big(7699165080005827737)
        );
        assert_eq!(
            key_of("hello", &args(Scheme::Django)).unwrap(),
            LockKey::Big(1054880662928880172)
        );
        assert_eq!(
            key_of("my first Postgres advisory lock!", &args(Scheme::Sqlx)).unwrap(),
            LockKey::Big(-5560419505042474287)
        );
        assert!(key_of("a name that is long", &args(Scheme::DistributedLock)).is_err());
        let mut hashing = args(Scheme::DistributedLock);
        hashing.allow_hashing = true;
        assert_eq!(
            key_of(&"漢".repeat(18), &hashing).unwrap(),
            LockKey::Big(-5707277204051710361)
        );
        assert_eq!(
            key_of("123456789", &args(Scheme::WithAdvisoryLock)).unwrap(),
            LockKey::Pair(0x4BF4_3926, 0)
        );
        assert!(key_of("", &args(Scheme::Pglock)).is_err());
    }

    #[test]
    fn sql_for_both_key_forms() {
        assert_eq!(sql_args(LockKey::Big(-3)), "-3");
        assert_eq!(sql_args(LockKey::Pair(1, -2)), "1, -2");
        assert!(pg_locks_filter(LockKey::Pair(1, -2))
            .ends_with("classid = 1 AND objid = 4294967294 AND objsubid = 2"));
    }
}
