//! Fencing tokens: a number that grows with every acquisition of a name, so that
//! storage can reject a holder whose lock has already passed to someone else.
//!
//! # Across a failover
//!
//! The counters live in a table, replicated like any other, and replication is
//! asynchronous by default: when a standby is promoted, the last increments made
//! on the old primary may never have reached it, and its counter can hand out
//! again a number a stale holder still carries. So a token is not the counter
//! alone but the pair (timeline, counter), compared lexicographically:
//!
//! ```text
//! token = timeline × 2^44 + counter
//! ```
//!
//! The timeline is the server's WAL timeline ID, which PostgreSQL increases with
//! every promotion (and every point-in-time recovery), read when the token is
//! issued from the name of the WAL segment being written
//! (`pg_walfile_name(pg_current_wal_lsn())`, both executable by any role). Every
//! token issued after a promotion is therefore above every token issued before
//! it on the old timeline, whatever the standby received — and above the tokens
//! of an old primary that keeps running unfenced (split brain), which stays on
//! its old timeline. Within a timeline the counter increases by one per grant.
//! Tokens of pglock versions that stored the bare counter are below 2^44, so the
//! order holds across an upgrade too. 44 bits of counter are 1.7 × 10^13 grants
//! of one name per timeline; the (impossible in practice) overflow of either part
//! is an error, never a smaller token.
//!
//! What the order cannot survive is a history that goes backwards: restoring the
//! database with `pg_dump`/`pg_restore` into a fresh cluster (timeline 1 again).
//! Carry tokens over such a move yourself, or keep the old cluster's timeline
//! higher than any it will see.

use tokio_postgres::Client;

use crate::error::Error;
use crate::key::{LockId, LockKey};

/// The SQL that [`install_fencing`] runs: one table, created if missing. Run it
/// yourself (migration tools) if you prefer; it is idempotent.
pub const FENCING_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS public.pglock_fencing (\
     key_space pg_catalog.int2 NOT NULL, \
     lock_key pg_catalog.int8 NOT NULL, \
     token pg_catalog.int8 NOT NULL, \
     PRIMARY KEY (key_space, lock_key))";

/// Issues the next token of a key (`$1` key space, `$2` key) — only if this
/// session holds the lock (`$3..$5`: its `pg_locks` triple), so that the attempts
/// that fail write nothing. Pipelined right behind the lock statement. Answers
/// the token (see the module docs: the timeline times 2^44 plus the counter), or
/// NULL once the counter no longer fits its 44 bits; a timeline past 2^19
/// overflows the multiplication, which is an error.
pub(crate) const NEXT_TOKEN: &str = "INSERT INTO public.pglock_fencing AS f (key_space, lock_key, token) \
     SELECT $1::pg_catalog.int2, $2::pg_catalog.int8, 1 WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE \
     locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid() AND granted \
     AND classid = $3::pg_catalog.oid AND objid = $4::pg_catalog.oid AND objsubid = $5::pg_catalog.int2) \
     ON CONFLICT (key_space, lock_key) DO UPDATE SET token = f.token + 1 \
     RETURNING CASE WHEN token < 17592186044416 THEN \
     ('x' || pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))\
     ::pg_catalog.bit(32)::pg_catalog.int8 * 17592186044416 + token END";

/// The token a granted attempt's [`NEXT_TOKEN`] answered.
pub(crate) fn issued(rows: &[tokio_postgres::Row], lock: &LockId) -> Result<Option<i64>, Error> {
    match rows.first().map(|r| r.get::<_, Option<i64>>(0)) {
        Some(None) => Err(Error::misuse(
            "this lock's fencing counter has run out of its 44 bits on this timeline; \
             no token was issued",
        )
        .with_lock(lock)),
        Some(token) => Ok(token),
        None => Ok(None),
    }
}

/// The timeline and the counter a fencing token is made of (see the module docs).
pub fn fencing_token_parts(token: i64) -> (i64, i64) {
    (token >> 44, token & ((1 << 44) - 1))
}

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
    fn tokens_split_into_timeline_and_counter() {
        assert_eq!(fencing_token_parts((3 << 44) + 17), (3, 17));
        assert_eq!(fencing_token_parts(41), (0, 41));
        // Any token of a later timeline is above every token of an earlier one.
        let (later, earlier_max) = (2i64 << 44, (1i64 << 44) + (1 << 44) - 1);
        assert_eq!(fencing_token_parts(earlier_max), (1, (1 << 44) - 1));
        assert!(later > earlier_max);
    }

    #[test]
    fn pair_keys_do_not_collide() {
        assert_eq!(
            token_key(LockKey::Pair(1, -1)),
            (2, (1 << 32) | 0xFFFF_FFFF)
        );
        assert_ne!(token_key(LockKey::Pair(0, 1)), token_key(LockKey::Big(1)));
    }
}
