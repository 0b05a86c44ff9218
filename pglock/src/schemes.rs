//! Other libraries' name → key schemes, as explicit [`LockKey`] constructors.
//!
//! pglock's own scheme ([`key_for`](crate::key_for), SipHash-2-4) stays the
//! default for names. When a Rust service must exclude itself from a peer written
//! with another library — a Django app using django-pglock, a .NET service using
//! DistributedLock, a Rails app using with_advisory_lock, another Rust service
//! using sqlx — derive the key the way that library does and lock the key:
//!
//! ```no_run
//! # async fn demo(pool: &deadpool_postgres::Pool) -> Result<(), pglock::Error> {
//! use pglock::LockKey;
//! let key = LockKey::django_pglock("billing.nightly")?;
//! let guard = pglock::advisory(key).acquire(pool).await?;
//! # guard.release().await }
//! ```
//!
//! Each constructor reproduces its source library bit for bit, including the
//! choice between the bigint and the two-integer key space and which names it
//! rejects; the unit tests check the vectors those libraries publish.
//!
//! Available with the `schemes` feature (on by default).

use hkdf::Hkdf;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::LockKey;

/// The HKDF `info` string of sqlx's `PgAdvisoryLock::new`.
const SQLX_INFO: &[u8] = b"SQLx (Rust) Postgres advisory lock";

/// DistributedLock packs at most this many 7-bit ASCII characters into 64 bits.
const DL_MAX_ASCII_LENGTH: usize = 9;
/// Length of DistributedLock's hex-string form, `XXXXXXXXXXXXXXXX`.
const DL_HEX_LENGTH: usize = 16;
/// Length of its separated form, `XXXXXXXX,XXXXXXXX`.
const DL_SEPARATED_HEX_LENGTH: usize = 17;
/// Length of each hex half.
const DL_HEX_PART_LENGTH: usize = 8;

impl LockKey {
    /// The key sqlx's `PgAdvisoryLock::new(name)` locks (Rust, `sqlx::postgres`).
    ///
    /// HKDF-SHA256 with no salt over the UTF-8 bytes of `name` as input key
    /// material, `info` = `b"SQLx (Rust) Postgres advisory lock"`, 8 bytes of
    /// output read as a little-endian `i64`: a [`LockKey::Big`]. Like sqlx, it
    /// accepts every name, the empty one included.
    ///
    /// ```
    /// use pglock::LockKey;
    /// // The vector in sqlx's documentation.
    /// assert_eq!(
    ///     LockKey::sqlx("my first Postgres advisory lock!"),
    ///     LockKey::Big(-5560419505042474287)
    /// );
    /// ```
    pub fn sqlx(name: &str) -> LockKey {
        let hkdf = Hkdf::<Sha256>::new(None, name.as_bytes());
        let mut okm = [0u8; 8];
        hkdf.expand(SQLX_INFO, &mut okm)
            .expect("8 bytes is far below HKDF-SHA256's 255 × 32-byte limit");
        LockKey::Big(i64::from_le_bytes(okm))
    }

    /// The key django-pglock's `pglock.advisory(name)` locks (Python, Django).
    ///
    /// The first 8 bytes of the SHA-256 digest of the UTF-8 bytes of `name`, read
    /// as a little-endian signed integer
    /// (`int.from_bytes(sha256(name).digest()[:8], "little", signed=True)`): a
    /// [`LockKey::Big`]. django-pglock refuses an empty lock id, and so does this
    /// (an [invalid-argument](Error::is_invalid_argument) error).
    ///
    /// ```
    /// use pglock::LockKey;
    /// let key = LockKey::django_pglock("hello").unwrap();
    /// assert_eq!(key, LockKey::Big(1054880662928880172));
    /// // django-pglock's `advisory_id("hello")`: (classid, objid) in pg_locks.
    /// assert_eq!(key.pg_locks_triple(), (245608543, 3125670444, 1));
    /// assert!(LockKey::django_pglock("").unwrap_err().is_invalid_argument());
    /// ```
    pub fn django_pglock(name: &str) -> Result<LockKey, Error> {
        if name.is_empty() {
            return Err(Error::invalid_argument(
                "django-pglock refuses an empty lock id",
            ));
        }
        let digest = Sha256::digest(name.as_bytes());
        Ok(LockKey::Big(i64::from_le_bytes(first_8(&digest))))
    }

    /// The key .NET DistributedLock's `new PostgresAdvisoryLockKey(name,
    /// allowHashing)` stands for (`Medallion.Threading.Postgres`).
    ///
    /// Its rules, in its order:
    ///
    /// 1. **ASCII**: a name of at most 9 ASCII characters (the empty name too) is
    ///    packed 7 bits per character, most significant first, followed by one
    ///    0 bit and then 1 bits up to 64 bits; DistributedLock locks that value in
    ///    the two-integer key space: [`LockKey::Pair`]`(high 32 bits, low 32 bits)`.
    /// 2. **Hex**: 16 hexadecimal digits (`"000000000000002a"`) are a
    ///    [`LockKey::Big`]; `XXXXXXXX,XXXXXXXX` (two groups of 8, separated by a
    ///    comma) is a [`LockKey::Pair`]. Upper- and lower-case digits are
    ///    accepted, nothing else (no sign, no spaces, no `0x`).
    /// 3. **Hashing**, only when `allow_hashing`: the first 8 bytes of the SHA-1
    ///    digest of the UTF-8 bytes, read as a little-endian `i64`: a
    ///    [`LockKey::Big`].
    ///
    /// Any other name is an [invalid-argument](Error::is_invalid_argument) error,
    /// where DistributedLock throws a `FormatException`.
    ///
    /// ```
    /// use pglock::LockKey;
    /// // DistributedLock's own test vector: "漢" repeated 18 times, hashed.
    /// let name = "漢".repeat(18);
    /// assert_eq!(
    ///     LockKey::distributed_lock(&name, true).unwrap(),
    ///     LockKey::Big(-5707277204051710361)
    /// );
    /// assert!(LockKey::distributed_lock(&name, false).unwrap_err().is_invalid_argument());
    /// assert_eq!(LockKey::distributed_lock("00000003,ffffffff", false).unwrap(), LockKey::Pair(3, -1));
    /// assert_eq!(LockKey::distributed_lock("0000000000000001", false).unwrap(), LockKey::Big(1));
    /// assert_eq!(LockKey::distributed_lock(&"\0".repeat(9), false).unwrap(), LockKey::Pair(0, 0));
    /// ```
    pub fn distributed_lock(name: &str, allow_hashing: bool) -> Result<LockKey, Error> {
        if let Some(key) = dl_ascii(name) {
            return Ok(key);
        }
        if let Some(key) = dl_hex(name) {
            return Ok(key);
        }
        if allow_hashing {
            let digest = Sha1::digest(name.as_bytes());
            return Ok(LockKey::Big(i64::from_le_bytes(first_8(&digest))));
        }
        Err(Error::invalid_argument(format!(
            "DistributedLock cannot encode the name {name:?} without hashing: use at most \
             {DL_MAX_ASCII_LENGTH} ASCII characters, {DL_HEX_LENGTH} hex digits, or \
             XXXXXXXX,XXXXXXXX (8 hex digits, a comma, 8 hex digits), or allow hashing"
        )))
    }

    /// The key the Ruby gem with_advisory_lock (`Model.with_advisory_lock(name)`)
    /// locks on PostgreSQL.
    ///
    /// Two 31-bit integers in the two-integer key space:
    /// [`LockKey::Pair`]`(crc32(name) & 0x7fffffff, prefix & 0x7fffffff)`, where
    /// `crc32` is zlib's CRC-32 of the name's bytes and `prefix` is the gem's
    /// `WITH_ADVISORY_LOCK_PREFIX` setting read as an integer (Ruby's `to_i`: `0`
    /// when unset). Every name is accepted.
    ///
    /// ```
    /// use pglock::LockKey;
    /// // zlib's check value: crc32("123456789") = 0xCBF43926.
    /// assert_eq!(
    ///     LockKey::with_advisory_lock("123456789", 0),
    ///     LockKey::Pair(0x4BF43926, 0)
    /// );
    /// assert_eq!(LockKey::with_advisory_lock("123456789", 7), LockKey::Pair(0x4BF43926, 7));
    /// ```
    pub fn with_advisory_lock(name: &str, prefix: i64) -> LockKey {
        let crc = crc32fast::hash(name.as_bytes()) & 0x7fff_ffff;
        LockKey::Pair(crc as i32, (prefix & 0x7fff_ffff) as i32)
    }
}

fn first_8(digest: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

/// DistributedLock's ASCII packing: up to 9 characters of 7 bits, a 0 bit, then
/// 1 bits; locked as a pair of its two halves.
fn dl_ascii(name: &str) -> Option<LockKey> {
    // .NET counts UTF-16 units; for an all-ASCII string that is the byte length,
    // and any other string fails the 7-bit test anyway.
    if !name.is_ascii() || name.len() > DL_MAX_ASCII_LENGTH {
        return None;
    }
    let mut packed: u64 = 0;
    for byte in name.bytes() {
        packed = (packed << 7) | u64::from(byte);
    }
    packed <<= 1;
    for _ in name.len()..DL_MAX_ASCII_LENGTH {
        packed = (packed << 7) | 0x7f;
    }
    Some(LockKey::Pair(
        (packed >> 32) as u32 as i32,
        packed as u32 as i32,
    ))
}

/// DistributedLock's hex forms: 16 digits (a bigint) or 8 digits, a comma and 8
/// digits (a pair).
fn dl_hex(name: &str) -> Option<LockKey> {
    let separated =
        name.len() == DL_SEPARATED_HEX_LENGTH && name.as_bytes()[DL_HEX_PART_LENGTH] == b',';
    if !separated && name.len() != DL_HEX_LENGTH {
        return None;
    }
    let bytes = name.as_bytes();
    let high = hex_u32(&bytes[..DL_HEX_PART_LENGTH])?;
    let low = hex_u32(&bytes[bytes.len() - DL_HEX_PART_LENGTH..])?;
    Some(if separated {
        LockKey::Pair(high as i32, low as i32)
    } else {
        LockKey::Big(((u64::from(high) << 32) | u64::from(low)) as i64)
    })
}

/// Exactly 8 ASCII hex digits, as .NET's `int.TryParse(…, AllowHexSpecifier)`
/// accepts them (the bits of the `int`).
fn hex_u32(digits: &[u8]) -> Option<u32> {
    if digits.len() != DL_HEX_PART_LENGTH || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlx_published_vector() {
        assert_eq!(
            LockKey::sqlx("my first Postgres advisory lock!"),
            LockKey::Big(-5560419505042474287)
        );
        assert_ne!(LockKey::sqlx("a"), LockKey::sqlx("b"));
        // Not pglock's own scheme.
        assert_ne!(
            LockKey::sqlx("billing.nightly"),
            LockKey::Big(crate::key_for("billing.nightly").unwrap())
        );
    }

    #[test]
    fn django_pglock_vector() {
        let key = LockKey::django_pglock("hello").unwrap();
        assert_eq!(key, LockKey::Big(1054880662928880172));
        // django-pglock's advisory_id("hello") == (245608543, 3125670444)
        assert_eq!(key.pg_locks_triple(), (245608543, 3125670444, 1));
        assert!(LockKey::django_pglock("")
            .unwrap_err()
            .is_invalid_argument());
    }

    #[test]
    fn distributed_lock_hashing_vector() {
        let name = "漢".repeat(2 * DL_MAX_ASCII_LENGTH);
        assert_eq!(
            LockKey::distributed_lock(&name, true).unwrap(),
            LockKey::Big(-5707277204051710361)
        );
        let err = LockKey::distributed_lock(&name, false).unwrap_err();
        assert!(err.is_invalid_argument(), "{err}");
        // DistributedLock rejects these without hashing.
        assert!(LockKey::distributed_lock("漢字", false).is_err());
        assert!(LockKey::distributed_lock(&"A".repeat(10), false).is_err());
        assert!(LockKey::distributed_lock("some very long name", false).is_err());
    }

    #[test]
    fn distributed_lock_ascii() {
        // Empty: 0 bit then 63 one bits.
        assert_eq!(
            LockKey::distributed_lock("", false).unwrap(),
            LockKey::Pair(0x7fff_ffff, -1)
        );
        // Nine NULs pack to 63 zero bits and the 0 bit: Pair(0, 0).
        assert_eq!(
            LockKey::distributed_lock(&"\0".repeat(9), false).unwrap(),
            LockKey::Pair(0, 0)
        );
        // "a": 0x61 in the top 7 bits, then 0, then 56 ones.
        let expected: u64 = (0x61 << 57) | ((1 << 56) - 1);
        assert_eq!(
            LockKey::distributed_lock("a", false).unwrap(),
            LockKey::Pair((expected >> 32) as i32, expected as u32 as i32)
        );
        // Hashing is never used for names the ASCII rule takes.
        assert_eq!(
            LockKey::distributed_lock("ASCII", true).unwrap(),
            LockKey::distributed_lock("ASCII", false).unwrap()
        );
        assert_ne!(
            LockKey::distributed_lock("", false).unwrap(),
            LockKey::distributed_lock("\0", false).unwrap()
        );
        // Every 1..=9-long run of each ASCII char is distinct (its own test).
        let mut seen = std::collections::HashSet::new();
        seen.insert(LockKey::distributed_lock("", false).unwrap());
        for c in 1u8..128 {
            for n in 1..=DL_MAX_ASCII_LENGTH {
                let name = String::from_utf8(vec![c; n]).unwrap();
                let key = LockKey::distributed_lock(&name, false).unwrap();
                assert!(matches!(key, LockKey::Pair(..)));
                assert!(seen.insert(key), "collision for {name:?}");
            }
        }
    }

    #[test]
    fn distributed_lock_hex() {
        assert_eq!(
            LockKey::distributed_lock("0000000000000001", false).unwrap(),
            LockKey::Big(1)
        );
        assert_eq!(
            LockKey::distributed_lock("00000003,ffffffff", false).unwrap(),
            LockKey::Pair(3, -1)
        );
        assert_eq!(
            LockKey::distributed_lock("FFFFFFFFFFFFFFFF", false).unwrap(),
            LockKey::Big(-1)
        );
        assert_eq!(
            LockKey::distributed_lock("8000000000000000", false).unwrap(),
            LockKey::Big(i64::MIN)
        );
        assert_eq!(
            LockKey::distributed_lock("00000000,00000000", false).unwrap(),
            LockKey::Pair(0, 0)
        );
        // Not hex: 16 characters with a non-digit, a sign, a wrong separator.
        assert!(LockKey::distributed_lock("000000000000000g", false).is_err());
        assert!(LockKey::distributed_lock("+000000000000001", false).is_err());
        assert!(LockKey::distributed_lock("00000003;ffffffff", false).is_err());
        // …which hashing then takes.
        assert!(matches!(
            LockKey::distributed_lock("000000000000000g", true).unwrap(),
            LockKey::Big(_)
        ));
    }

    #[test]
    fn with_advisory_lock_pairs() {
        // zlib check value: crc32("123456789") == 0xCBF43926.
        assert_eq!(
            LockKey::with_advisory_lock("123456789", 0),
            LockKey::Pair(0x4BF4_3926, 0)
        );
        // crc32("hello") == 0x3610A686 (high bit clear: unchanged).
        assert_eq!(
            LockKey::with_advisory_lock("hello", 0),
            LockKey::Pair(0x3610_A686, 0)
        );
        assert_eq!(
            LockKey::with_advisory_lock("hello", -1),
            LockKey::Pair(0x3610_A686, 0x7fff_ffff)
        );
        assert_eq!(
            LockKey::with_advisory_lock("hello", (1 << 31) | 5),
            LockKey::Pair(0x3610_A686, 5)
        );
    }
}
