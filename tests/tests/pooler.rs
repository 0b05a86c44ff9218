//! Through a real PgBouncer. Session pooling works as a direct connection does;
//! transaction pooling is detected and session locks refused with a typed error,
//! and the pooler-safe mode (a lock held in a transaction the guard keeps open)
//! works there. Both modes are checked with a witness across two OS processes:
//! zero overlaps, nothing left held.

use std::time::{Duration, Instant};

use pglock_tests::{
    child_result, connect, pool_for, spawn_child, Fixture, PgBouncer, PoolMode, Witness,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_connect_works_through_pgbouncer_in_both_modes() {
    for mode in [PoolMode::Session, PoolMode::Transaction] {
        let Some(bouncer) = PgBouncer::start_or_skip(mode, "session_connect").await else {
            return;
        };
        let session = pglock::Session::connect(&bouncer.url())
            .await
            .expect("connects through PgBouncer (no startup options)");
        session.client().query_one("SELECT 1", &[]).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_pooling_is_detected_and_session_locks_refused() {
    let Some(bouncer) = PgBouncer::start_or_skip(PoolMode::Transaction, "detect").await else {
        return;
    };
    let fx = Fixture::new("pooler-detect").await;
    // Through a pool.
    let pool = pool_for(&bouncer.url(), 4);
    let err = pglock::advisory(fx.name.as_str())
        .acquire(&pool)
        .await
        .unwrap_err();
    assert!(err.is_transaction_pooler(), "{err}");
    assert!(err.to_string().contains("pooler_safe"), "{err}");
    assert!(fx.rows().await.is_empty(), "nothing may be held");
    // Through a session.
    let session = pglock::Session::connect(&bouncer.url()).await.unwrap();
    let err = pglock::advisory(fx.name.as_str())
        .try_acquire(&session)
        .await
        .unwrap_err();
    assert!(err.is_transaction_pooler(), "{err}");
    assert!(fx.rows().await.is_empty(), "nothing may be held");
    // The pooler-safe mode works there.
    let guard = pglock::advisory(fx.name.as_str())
        .pooler_safe()
        .timeout(Duration::from_secs(2))
        .acquire(&pool)
        .await
        .unwrap();
    assert_eq!(fx.holders().await.len(), 1);
    let busy = pglock::advisory(fx.name.as_str())
        .pooler_safe()
        .try_acquire(&pool_for(&bouncer.url(), 2))
        .await
        .unwrap();
    assert!(busy.is_none(), "another process finds it busy");
    guard.release().await.unwrap();
    assert!(fx.until_free().await);
}

/// When the first check could not run (a pool of one connection), a release that
/// the proxy routes to another server session is noticed: the error says so, and
/// the source refuses session locks from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlock_routed_elsewhere_is_noticed() {
    let Some(bouncer) = PgBouncer::start_or_skip(PoolMode::Transaction, "rerouted").await else {
        return;
    };
    let fx = Fixture::new("pooler-rerouted").await;
    let pool = pool_for(&bouncer.url(), 1);
    let guard = pglock::advisory(fx.name.as_str())
        .acquire(&pool)
        .await
        .unwrap();
    let holder = guard.backend_pid().unwrap();
    assert_eq!(fx.holders().await, vec![holder]);
    // Another client pins the holding server session in a transaction, so the
    // proxy must route the unlock elsewhere.
    let other = pglock_tests::connect_to(&bouncer.url()).await;
    let mut pinned = false;
    for _ in 0..20 {
        other.batch_execute("BEGIN").await.unwrap();
        let pid: i32 = other
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        if pid == holder {
            pinned = true;
            break;
        }
        other.batch_execute("COMMIT").await.unwrap();
    }
    if !pinned {
        eprintln!("SKIPPED rerouted: the proxy never handed the holding session to another client");
        return;
    }
    let err = guard.release().await.unwrap_err();
    assert!(err.is_transaction_pooler(), "{err}");
    other.batch_execute("COMMIT").await.unwrap();
    // From now on this pool refuses session locks at once.
    let err = pglock::advisory(fx.name.as_str())
        .try_acquire(&pool)
        .await
        .unwrap_err();
    assert!(err.is_transaction_pooler(), "{err}");
    // The orphaned hold is ended the only way there is: its server session.
    fx.observer
        .execute("SELECT pg_terminate_backend($1)", &[&holder])
        .await
        .unwrap();
    assert!(fx.until_free().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooler_safe_guards_release_on_drop_and_refuse_what_cannot_work() {
    let fx = Fixture::new("pooler-safe").await;
    let pool = pglock_tests::pool(2).await;
    let guard = pglock::advisory(fx.name.as_str())
        .pooler_safe()
        .acquire(&pool)
        .await
        .unwrap();
    let pid = pglock_tests::pid_of(guard.client()).await;
    assert_eq!(fx.holders().await, vec![pid]);
    assert!(guard.is_held().await.unwrap());
    drop(guard);
    assert!(fx.until_free().await);
    // The connection went back clean (not in a transaction).
    let client = pool.get().await.unwrap();
    client.batch_execute("BEGIN; COMMIT").await.unwrap();
    drop(client);
    // A timeout leaves nothing behind.
    let other = fx.hold_elsewhere().await;
    let err = pglock::advisory(fx.name.as_str())
        .pooler_safe()
        .timeout(Duration::from_millis(100))
        .acquire(&pool)
        .await
        .unwrap_err();
    assert!(err.is_not_acquired(), "{err}");
    drop(other);
    for lock in [
        pglock::advisory(fx.name.as_str()).pooler_safe().fencing(),
        pglock::advisory(fx.name.as_str()).pooler_safe().label("x"),
    ] {
        assert!(lock.acquire(&pool).await.unwrap_err().is_misuse());
    }
    let session = pglock_tests::session().await;
    let err = pglock::advisory(fx.name.as_str())
        .pooler_safe()
        .acquire(&session)
        .await
        .unwrap_err();
    assert!(err.is_misuse(), "{err}");
    assert!(fx.until_free().await);
}

// Two OS processes hammer one name through PgBouncer ------------------------

const ROLE: &str = "PGLOCK_POOLER_ROLE";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_across_processes_through_pgbouncer() {
    for (mode, pooler_safe) in [(PoolMode::Session, false), (PoolMode::Transaction, true)] {
        let Some(bouncer) = PgBouncer::start_or_skip(mode, "witness").await else {
            return;
        };
        let direct = connect().await;
        let table = format!("pglock_pooler_witness_{}", std::process::id());
        let name = pglock_tests::unique_name("pooler-witness");
        let witness = Witness::create(&direct, &table, std::slice::from_ref(&name)).await;
        let env = [
            (
                ROLE,
                if pooler_safe { "safe" } else { "session" }.to_string(),
            ),
            ("PGLOCK_POOLER_URL", bouncer.url()),
            ("PGLOCK_POOLER_NAME", name.clone()),
            ("PGLOCK_POOLER_TABLE", table.clone()),
        ];
        let children: Vec<_> = (0..2).map(|_| spawn_child("child_entry", &env)).collect();
        let (mut acquisitions, mut worst) = (0u64, 0u64);
        for child in children {
            let (count, most) = child_result(child);
            acquisitions += count;
            worst = worst.max(most);
        }
        println!(
            "FIGURE pgbouncer {mode:?} (pooler_safe={pooler_safe}): {acquisitions} acquisitions \
             by 2 processes, at most {worst} holder(s) at once"
        );
        assert!(acquisitions > 10);
        assert_eq!(worst, 1, "two holders at once");
        let (total, inside) = witness.totals(&direct).await;
        assert_eq!((total, inside), (acquisitions, 0));
        assert!(
            pglock_tests::eventually(Duration::from_secs(5), || async {
                pglock_tests::lock_rows(&direct, &name).await.is_empty()
            })
            .await,
            "a lock was left behind"
        );
        witness.drop_table(&direct).await;
    }
}

/// Not a test: the child processes' entry point.
#[test]
#[ignore = "entry point for the child processes of witness_across_processes_through_pgbouncer"]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (count, worst) = rt.block_on(async move {
        let url = std::env::var("PGLOCK_POOLER_URL").unwrap();
        let name = std::env::var("PGLOCK_POOLER_NAME").unwrap();
        let table = std::env::var("PGLOCK_POOLER_TABLE").unwrap();
        let pool = pool_for(&url, 4);
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let (pool, name, table, role) =
                (pool.clone(), name.clone(), table.clone(), role.clone());
            tasks.push(tokio::spawn(async move {
                // The witness runs on a direct connection, outside any lock's
                // transaction, so that every process sees it at once.
                let direct = connect().await;
                let witness = Witness::named(&table);
                let (mut count, mut worst) = (0u64, 0u64);
                while Instant::now() < deadline {
                    let lock = pglock::advisory(name.as_str()).timeout(Duration::from_secs(10));
                    let lock = if role == "safe" {
                        lock.pooler_safe()
                    } else {
                        lock
                    };
                    let guard = lock.acquire(&pool).await.unwrap();
                    worst = worst.max(witness.enter(&direct, &name).await);
                    witness.leave(&direct, &name).await;
                    guard.release().await.unwrap();
                    count += 1;
                }
                (count, worst)
            }));
        }
        let (mut count, mut worst) = (0, 0);
        for t in tasks {
            let (c, w) = t.await.unwrap();
            count += c;
            worst = worst.max(w);
        }
        (count, worst)
    });
    println!("RESULT {count} {worst}");
}
