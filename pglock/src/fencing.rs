//! Fencing tokens: a number that grows with every acquisition of a name, so that
//! storage can reject a holder whose lock has already passed to someone else.

use tokio_postgres::Client;

use crate::error::Error;
use crate::key::LockKey;

/// The SQL that [`install_fencing`] runs: one table, created if missing. Run it
/// yourself (migration tools) if you prefer; it is idempotent.
pub const FENCING_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS public.pglock_fencing (\
     key_space pg_catalog.int2 NOT NULL, \
     lock_key pg_catalog.int8 NOT NULL, \
     token pg_catalog.int8 NOT NULL, \
     PRIMARY KEY (key_space, lock_key))";

/// Issues the next token of a key (`$1` key space, `$2` key) — only if this
/// session holds the lock (`$3..$5`: its `pg_locks` triple), so that the attempts
/// that fail write nothing. Pipelined right behind the lock statement.
pub(crate) const NEXT_TOKEN: &str = "INSERT INTO public.pglock_fencing AS f (key_space, lock_key, token) \
     SELECT $1::pg_catalog.int2, $2::pg_catalog.int8, 1 WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE \
     locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid() AND granted \
     AND classid = $3::pg_catalog.oid AND objid = $4::pg_catalog.oid AND objsubid = $5::pg_catalog.int2) \
     ON CONFLICT (key_space, lock_key) DO UPDATE SET token = f.token + 1 RETURNING token";

/// Creates the table behind fencing tokens ([`FENCING_SCHEMA`]):
/// `public.pglock_fencing`, always in schema `public` and always named with its
/// schema, so that services with different `search_path`s share one sequence of
/// tokens. Idempotent: call it at start-up.
///
/// # Cancel safety
/// Cancel-safe: the statement either commits or not.
pub async fn install_fencing(client: &Client) -> Result<(), Error> {
    client.batch_execute(FENCING_SCHEMA).await?;
    Ok(())
}

/// The `(key_space, lock_key)` a key's tokens are kept under.
pub(crate) fn token_key(key: LockKey) -> (i16, i64) {
    match key {
        LockKey::Big(k) => (1, k),
        LockKey::Pair(a, b) => (2, (i64::from(a) << 32) | i64::from(b as u32)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_keys_do_not_collide() {
        assert_eq!(
            token_key(LockKey::Pair(1, -1)),
            (2, (1 << 32) | 0xFFFF_FFFF)
        );
        assert_ne!(token_key(LockKey::Pair(0, 1)), token_key(LockKey::Big(1)));
    }
}
