//! Keys against a real server: golden name keys are what the server
//! locks, raw `i64` keys (negative ones too) and `(i32, i32)` pairs land where
//! `pg_locks` says they should, the pair space is separate, names are
//! case-sensitive, and the empty name is a typed error that sends nothing.

use std::time::Duration;

use pglock::LockKey;
use pglock_tests::{bigint_lock_rows, connect, pair_lock_rows, pid_of, pool, session};

/// The contract's golden vectors, copied here on purpose: the test must not trust the
/// library's own constants.
const GOLDEN: &[(&str, i64)] = &[
    ("my_lock_id", -1380431858537921237),
    ("a", -7583489610679606711),
    ("billing.nightly", 7699165080005827737),
    ("my_app::jobs::send_invoices", 5126864360601373363),
    ("é", 6332414642301591832),
    ("Lock", -5484697124481197205),
    ("lock", 421162165901159450),
];

/// `pg_locks` rows for `key` read with the server's own split of the bigint
/// (`classid`, `objid` as the high and low 32 bits), computed by the server from
/// the key, independently of pglock and of the harness.
async fn rows_by_server_split(observer: &tokio_postgres::Client, key: i64) -> Vec<i32> {
    observer
        .query(
            "SELECT l.pid FROM pg_locks l, \
             (SELECT ((x >> 32) & 4294967295)::text::oid AS hi, \
                     (x & 4294967295)::text::oid AS lo FROM (SELECT $1::int8 AS x) s) k \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
             AND l.classid = k.hi AND l.objid = k.lo \
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[&key],
        )
        .await
        .expect("query pg_locks")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The golden names are locked on exactly the golden keys.
///
/// The golden names are shared by every run, so each is locked for a moment only
/// and through a session whose pid identifies our rows.
#[tokio::test]
async fn golden_names_lock_the_golden_keys() {
    let observer = connect().await;
    let s = session().await;
    let pid = pid_of(s.client()).await;
    for &(name, key) in GOLDEN {
        assert_eq!(pglock::key_for(name).unwrap(), key, "key_for({name:?})");
        let guard = pglock::advisory(name)
            .timeout(Duration::from_secs(10))
            .acquire(&s)
            .await
            .unwrap_or_else(|e| panic!("acquire {name:?}: {e}"));
        assert_eq!(guard.key(), LockKey::Big(key));
        let rows = bigint_lock_rows(&observer, key).await;
        assert!(
            rows.iter()
                .any(|r| r.pid == pid && r.granted && r.mode == "ExclusiveLock"),
            "{name:?}: no granted row for key {key} held by {pid}: {rows:?}"
        );
        assert!(rows_by_server_split(&observer, key).await.contains(&pid));
        guard.release().await.unwrap();
        assert!(!bigint_lock_rows(&observer, key)
            .await
            .iter()
            .any(|r| r.pid == pid));
    }
}

/// A program that follows the key contract without pglock (here: plain SQL on the
/// golden key) excludes pglock users of the name, and the other way round.
#[tokio::test]
async fn raw_sql_on_the_golden_key_excludes_the_name() {
    let other = connect().await;
    let s = session().await;
    let (name, key) = ("billing.nightly", 7699165080005827737_i64);
    // Wait politely if a parallel run holds the shared golden name.
    other
        .execute("SELECT pg_advisory_lock($1)", &[&key])
        .await
        .unwrap();
    assert!(pglock::advisory(name)
        .try_acquire(&s)
        .await
        .unwrap()
        .is_none());
    let unlocked: bool = other
        .query_one("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .unwrap()
        .get(0);
    assert!(unlocked);

    let guard = pglock::advisory(name)
        .timeout(Duration::from_secs(10))
        .acquire(&s)
        .await
        .unwrap();
    let got: bool = other
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .await
        .unwrap()
        .get(0);
    assert!(!got, "raw SQL took the key while pglock held the name");
    guard.release().await.unwrap();
}

/// Names are case-sensitive: `Lock` and `lock` are different keys and do not
/// exclude each other.
#[tokio::test]
async fn names_are_case_sensitive() {
    let observer = connect().await;
    let pool = pool(2).await;
    let upper = format!("{}:Lock", pglock_tests::unique_name("case"));
    let lower = upper.replace(":Lock", ":lock");
    assert_ne!(
        pglock::key_for(&upper).unwrap(),
        pglock::key_for(&lower).unwrap()
    );
    let a = pglock::advisory(upper.as_str())
        .acquire(&pool)
        .await
        .unwrap();
    let b = pglock::advisory(lower.as_str())
        .timeout(Duration::ZERO)
        .acquire(&pool)
        .await
        .expect("the lower-case name is a different lock");
    let pa = pid_of(a.client()).await;
    let pb = pid_of(b.client()).await;
    assert_ne!(pa, pb);
    assert_eq!(pglock_tests::holders(&observer, &upper).await, vec![pa]);
    assert_eq!(pglock_tests::holders(&observer, &lower).await, vec![pb]);
    a.release().await.unwrap();
    b.release().await.unwrap();
}

/// Raw `i64` keys, negative ones included, are locked as the server splits them.
#[tokio::test]
async fn raw_i64_keys_split_right() {
    let observer = connect().await;
    let s = session().await;
    let pid = pid_of(s.client()).await;
    // Random-ish keys so that parallel runs do not meet; the low bits vary.
    let salt = (std::process::id() as i64) << 8;
    let keys = [
        -1 - salt,
        -(1 << 40) - salt,
        i64::MIN + salt,
        i64::MAX - salt,
        (1 << 32) + salt,
        salt + 7,
    ];
    for key in keys {
        let guard = pglock::advisory(key)
            .timeout(Duration::from_secs(10))
            .acquire(&s)
            .await
            .unwrap();
        assert_eq!(guard.key(), LockKey::Big(key));
        assert_eq!(guard.name(), None);
        assert!(
            rows_by_server_split(&observer, key).await.contains(&pid),
            "key {key} not found where the server puts it"
        );
        let rows = bigint_lock_rows(&observer, key).await;
        assert!(rows.iter().any(|r| r.pid == pid && r.granted), "{rows:?}");
        // The same number, locked with plain SQL, is the same lock.
        let got: bool = observer
            .query_one("SELECT pg_try_advisory_lock($1::int8)", &[&key])
            .await
            .unwrap()
            .get(0);
        assert!(!got, "key {key}: plain SQL took it while pglock held it");
        guard.release().await.unwrap();
        assert!(rows_by_server_split(&observer, key).await.is_empty());
    }
}

/// `(i32, i32)` keys live in the two-integer space (`objsubid` 2) and do not
/// conflict with the bigint key of the same bits.
#[tokio::test]
async fn pair_keys_are_a_separate_space() {
    let observer = connect().await;
    let pool = pool(2).await;
    let a = -(std::process::id() as i32) - 17;
    let b = -5;
    let pair = pglock::advisory((a, b)).acquire(&pool).await.unwrap();
    assert_eq!(pair.key(), LockKey::Pair(a, b));
    let pair_pid = pid_of(pair.client()).await;

    let rows = pair_lock_rows(&observer, a, b).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].granted && rows[0].pid == pair_pid);
    let subid: i16 = observer
        .query_one(
            "SELECT objsubid FROM pg_locks WHERE locktype = 'advisory' AND pid = $1",
            &[&pair_pid],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(subid, 2);

    // The bigint with the same 64 bits: high half `a`, low half `b`.
    let same_bits = ((a as i64) << 32) | (b as u32 as i64);
    assert_eq!(LockKey::Big(same_bits).pg_locks_triple().0, a as u32);
    let big = pglock::advisory(same_bits)
        .timeout(Duration::ZERO)
        .acquire(&pool)
        .await
        .expect("the bigint key of the same bits is another lock");
    let big_pid = pid_of(big.client()).await;
    assert_eq!(
        bigint_lock_rows(&observer, same_bits)
            .await
            .iter()
            .map(|r| r.pid)
            .collect::<Vec<_>>(),
        vec![big_pid]
    );

    // The pair excludes another taker of the pair, as plain SQL sees it too.
    let got: bool = observer
        .query_one("SELECT pg_try_advisory_lock($1::int4, $2::int4)", &[&a, &b])
        .await
        .unwrap()
        .get(0);
    assert!(!got);

    pair.release().await.unwrap();
    big.release().await.unwrap();
    assert!(pair_lock_rows(&observer, a, b).await.is_empty());
    assert!(bigint_lock_rows(&observer, same_bits).await.is_empty());
}

/// The empty name is an invalid-argument error everywhere, and nothing reaches
/// the server: no lock, no statement, no pooled connection taken.
#[tokio::test]
async fn empty_name_is_invalid_and_sends_nothing() {
    let observer = connect().await;
    assert!(pglock::key_for("").unwrap_err().is_invalid_argument());

    let s = session().await;
    let pid = pid_of(s.client()).await;
    s.client()
        .batch_execute("SELECT 'pglock-marker-before-empty-name'")
        .await
        .unwrap();

    let err = pglock::advisory("").acquire(&s).await.unwrap_err();
    assert!(err.is_invalid_argument(), "{err:?}");
    let err = pglock::advisory(String::new())
        .timeout(Duration::from_secs(1))
        .acquire(&s)
        .await
        .unwrap_err();
    assert!(err.is_invalid_argument(), "{err:?}");
    let err = pglock::advisory("").try_acquire(&s).await.unwrap_err();
    assert!(err.is_invalid_argument(), "{err:?}");
    let ran = std::sync::atomic::AtomicBool::new(false);
    let err = pglock::advisory("")
        .run(&s, async {
            ran.store(true, std::sync::atomic::Ordering::SeqCst)
        })
        .await
        .unwrap_err();
    assert!(err.is_invalid_argument(), "{err:?}");
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    let err = pglock::status(&observer, "").await.unwrap_err();
    assert!(err.is_invalid_argument(), "{err:?}");

    // The session's last statement is still ours: pglock sent nothing.
    let last: String = observer
        .query_one("SELECT query FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert_eq!(last, "SELECT 'pglock-marker-before-empty-name'");
    assert_eq!(pglock_tests::advisory_locks_of(&observer, pid).await, 0);

    // Through a pool whose only connection is taken, the error comes before any
    // checkout (otherwise it would be a pool timeout).
    let pool = pool(1).await;
    let only = pool.get().await.unwrap();
    let err = pglock::advisory("").acquire(&pool).await.unwrap_err();
    assert!(err.is_invalid_argument(), "{err:?}");
    drop(only);

    // In a transaction: the error leaves it usable.
    let mut client = connect().await;
    let tx = client.transaction().await.unwrap();
    let err = pglock::advisory("")
        .xact()
        .acquire_in(&tx)
        .await
        .unwrap_err();
    assert!(err.is_invalid_argument(), "{err:?}");
    let err = pglock::advisory("")
        .xact()
        .try_acquire_in(&tx)
        .await
        .unwrap_err();
    assert!(err.is_invalid_argument(), "{err:?}");
    tx.query_one("SELECT 1", &[]).await.unwrap();
    tx.commit().await.unwrap();
}
