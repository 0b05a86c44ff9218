//! Lock names, the keys PostgreSQL locks on, and lock modes.
//!
//! The name → key derivation is a contract that must never change: two deployed
//! versions that derived keys differently would not exclude each other. It is
//! SipHash-2-4 with both keys zero over exactly the UTF-8 bytes of the name
//! (`Hasher::write`, never `Hash::hash`, which appends a `0xFF` terminator),
//! `finish()` read as a two's-complement `i64`. Golden vectors pin it in the tests
//! below and in the integration tests.

use std::fmt;
use std::hash::Hasher;
use std::sync::Arc;

use siphasher::sip::SipHasher24;

use tokio_postgres::types::{ToSql, Type};

use crate::error::Error;

/// A bind parameter with its type: statements are sent with explicit types.
pub(crate) type Param<'a> = (&'a (dyn ToSql + Sync), Type);

/// The integer key PostgreSQL's advisory lock functions take.
///
/// PostgreSQL keeps the two forms in separate key spaces: `Big(1)` and
/// `Pair(0, 1)` never conflict (`objsubid` is 1 for the bigint form and 2 for the
/// pair form in `pg_locks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockKey {
    /// A single `bigint` key, as `pg_advisory_lock(bigint)` takes it. String
    /// names hash into this space (see [`key_for`]).
    Big(i64),
    /// Two `integer` keys, as `pg_advisory_lock(integer, integer)` takes them.
    Pair(i32, i32),
}

impl LockKey {
    /// The `(classid, objid, objsubid)` triple that `pg_locks` shows for this key.
    ///
    /// For a bigint key the high 32 bits are `classid` and the low 32 bits `objid`
    /// (both as unsigned `oid`s, so negative keys come out right); `objsubid` is 1.
    /// For a pair, `classid` and `objid` are the two integers' bits and `objsubid`
    /// is 2.
    ///
    /// ```
    /// use pglock::LockKey;
    /// assert_eq!(LockKey::Big(-1).pg_locks_triple(), (u32::MAX, u32::MAX, 1));
    /// assert_eq!(LockKey::Big(1 << 32 | 7).pg_locks_triple(), (1, 7, 1));
    /// assert_eq!(LockKey::Pair(-1, 2).pg_locks_triple(), (u32::MAX, 2, 2));
    /// ```
    pub fn pg_locks_triple(self) -> (u32, u32, i16) {
        match self {
            LockKey::Big(k) => (((k as u64) >> 32) as u32, k as u64 as u32, 1),
            LockKey::Pair(a, b) => (a as u32, b as u32, 2),
        }
    }
}

impl LockKey {
    pub(crate) fn is_pair(self) -> bool {
        matches!(self, LockKey::Pair(..))
    }

    /// The bind parameters that carry the key.
    pub(crate) fn params(&self) -> Vec<Param<'_>> {
        let mut params: Vec<Param<'_>> = Vec::with_capacity(5);
        match self {
            LockKey::Big(k) => params.push((k, Type::INT8)),
            LockKey::Pair(a, b) => {
                params.push((a, Type::INT4));
                params.push((b, Type::INT4));
            }
        }
        params
    }
}

/// Exclusive or shared.
///
/// Shared locks conflict only with exclusive locks on the same key: any number of
/// shared holders, or one exclusive holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// One holder at a time (`pg_advisory_lock`). The default.
    Exclusive = 0,
    /// Many holders, none exclusive (`pg_advisory_lock_shared`).
    Shared = 1,
}

impl Mode {
    /// The mode as `pg_locks.mode` shows it: `ExclusiveLock` or `ShareLock`.
    pub fn pg_mode(self) -> &'static str {
        match self {
            Mode::Exclusive => "ExclusiveLock",
            Mode::Shared => "ShareLock",
        }
    }

    pub(crate) fn from_pg_mode(mode: &str) -> Mode {
        if mode == "ShareLock" {
            Mode::Shared
        } else {
            Mode::Exclusive
        }
    }

    /// Whether a hold in this mode and one in `other` exclude each other.
    pub(crate) fn conflicts_with(self, other: Mode) -> bool {
        self == Mode::Exclusive || other == Mode::Exclusive
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Exclusive => "exclusive",
            Mode::Shared => "shared",
        })
    }
}

impl fmt::Display for LockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockKey::Big(k) => write!(f, "{k}"),
            LockKey::Pair(a, b) => write!(f, "({a}, {b})"),
        }
    }
}

/// The advisory key of a lock name: SipHash-2-4 with a zero key over exactly the
/// UTF-8 bytes of `name`, read as a two's-complement `i64`.
///
/// This derivation is a stable contract: every version of pglock, and any other
/// program that follows it, computes the same key, so they exclude each other.
/// Names are case-sensitive. The empty name is an error.
///
/// ```
/// assert_eq!(pglock::key_for("my_lock_id").unwrap(), -1380431858537921237);
/// assert!(pglock::key_for("").unwrap_err().is_invalid_argument());
/// ```
///
/// In psql, lock the same thing with `SELECT pg_advisory_lock(-1380431858537921237);`.
pub fn key_for(name: &str) -> Result<i64, Error> {
    if name.is_empty() {
        return Err(Error::invalid_argument("a lock name must not be empty"));
    }
    Ok(hash(name))
}

fn hash(name: &str) -> i64 {
    let mut hasher = SipHasher24::new_with_keys(0, 0);
    hasher.write(name.as_bytes());
    hasher.finish() as i64
}

/// What a lock is called: a name (hashed by [`key_for`]) or a raw key.
///
/// You rarely name this type: [`advisory`](crate::advisory()) takes anything that
/// converts into it — `&str`, `String`, `i64`, `(i32, i32)` or a [`LockKey`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LockId {
    name: Option<Arc<str>>,
    key: LockKey,
    invalid: bool,
}

impl LockId {
    /// A lock called `name`. An empty name is accepted here and reported as an
    /// invalid-argument error when the lock is used.
    pub fn name(name: impl Into<Arc<str>>) -> LockId {
        let name: Arc<str> = name.into();
        let invalid = name.is_empty();
        LockId {
            key: LockKey::Big(if invalid { 0 } else { hash(&name) }),
            name: Some(name),
            invalid,
        }
    }

    /// A lock on a raw key.
    pub fn key(key: LockKey) -> LockId {
        LockId {
            name: None,
            key,
            invalid: false,
        }
    }

    /// The name this lock was given, if it was given one.
    pub fn lock_name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The key PostgreSQL locks on. For the empty name, which is invalid, this is a
    /// placeholder (`Big(0)`): every operation on such a lock answers an
    /// invalid-argument error instead of locking it.
    pub fn lock_key(&self) -> LockKey {
        self.key
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.invalid {
            Err(Error::invalid_argument("a lock name must not be empty"))
        } else {
            Ok(())
        }
    }
}

impl fmt::Display for LockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{name:?} (key {})", self.key),
            None => write!(f, "key {}", self.key),
        }
    }
}

impl fmt::Debug for LockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<&str> for LockId {
    fn from(name: &str) -> Self {
        LockId::name(name)
    }
}
impl From<String> for LockId {
    fn from(name: String) -> Self {
        LockId::name(name)
    }
}
impl From<&String> for LockId {
    fn from(name: &String) -> Self {
        LockId::name(name.as_str())
    }
}
impl From<Arc<str>> for LockId {
    fn from(name: Arc<str>) -> Self {
        LockId::name(name)
    }
}
impl From<i64> for LockId {
    fn from(key: i64) -> Self {
        LockId::key(LockKey::Big(key))
    }
}
impl From<(i32, i32)> for LockId {
    fn from((a, b): (i32, i32)) -> Self {
        LockId::key(LockKey::Pair(a, b))
    }
}
impl From<LockKey> for LockId {
    fn from(key: LockKey) -> Self {
        LockId::key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Changing any of these breaks mutual exclusion between deployed
    /// versions. Never edit this table.
    const GOLDEN: &[(&str, i64)] = &[
        ("my_lock_id", -1380431858537921237),
        ("a", -7583489610679606711),
        ("billing.nightly", 7699165080005827737),
        ("my_app::jobs::send_invoices", 5126864360601373363),
        ("é", 6332414642301591832),
        ("Lock", -5484697124481197205),
        ("lock", 421162165901159450),
    ];

    #[test]
    fn golden_vectors() {
        for &(name, key) in GOLDEN {
            assert_eq!(key_for(name).unwrap(), key, "key of {name:?}");
            assert_eq!(LockId::from(name).lock_key(), LockKey::Big(key));
        }
    }

    #[test]
    fn not_std_hash() {
        // `name.hash(..)` appends 0xFF; the contract hashes the bytes alone.
        use std::hash::Hash;
        let mut h = SipHasher24::new_with_keys(0, 0);
        "a".hash(&mut h);
        assert_ne!(h.finish() as i64, key_for("a").unwrap());
    }

    #[test]
    fn empty_name_is_typed_error() {
        let err = key_for("").unwrap_err();
        assert!(err.is_invalid_argument());
        let id = LockId::from("");
        assert!(id.validate().unwrap_err().is_invalid_argument());
    }

    #[test]
    fn raw_keys_and_triples() {
        assert_eq!(LockId::from(42i64).lock_key(), LockKey::Big(42));
        assert_eq!(LockId::from((1, -2)).lock_key(), LockKey::Pair(1, -2));
        assert_eq!(
            LockKey::Big(i64::MIN).pg_locks_triple(),
            (0x8000_0000, 0, 1)
        );
        assert_eq!(
            LockKey::Big(-2).pg_locks_triple(),
            (u32::MAX, u32::MAX - 1, 1)
        );
        assert_eq!(
            LockKey::Pair(i32::MIN, 5).pg_locks_triple(),
            (0x8000_0000, 5, 2)
        );
    }
}
