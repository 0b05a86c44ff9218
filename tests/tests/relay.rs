//! Relays: a `Locker` guard that releases an exclusive lock another task of the
//! process waits for sends its unlock and that waiter's try as one statement.
//! Whatever happens to either side — the waiter cancelled, the statement failing,
//! another process queued on the server — there is one holder at a time and
//! nothing is left held.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pglock_tests::{connect, pool, wait_until_waiting, Fixture};

/// The relay statement's executions on the locker's (one) shared connection,
/// asked on that connection through a guard of a lock of its own
/// (`pg_prepared_statements` counts the plans a statement chose, one per
/// execution; this query, prepared too, matches its own pattern and is left out).
async fn relays_run(fx: &Fixture, locker: &pglock::Locker) -> i64 {
    let probe = pglock::advisory(format!("{}:probe", fx.name).as_str())
        .try_acquire(locker)
        .await
        .unwrap()
        .unwrap();
    let runs = probe
        .client()
        .query_one(
            "SELECT coalesce(sum(generic_plans + custom_plans), 0)::int8 \
             FROM pg_prepared_statements \
             WHERE statement LIKE '%pg_advisory_unlock(%pg_try_advisory_lock(%' \
             AND statement NOT LIKE '%pg_prepared_statements%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    probe.release().await.unwrap();
    runs
}

/// A fixture, and a locker with one shared connection (waits borrow from the
/// same pool).
async fn one_connection_locker(prefix: &str) -> (Fixture, pglock::Locker) {
    let pool = pool(6).await;
    let locker = pglock::Locker::new(&pool, 1).await.unwrap();
    (Fixture::new(prefix).await, locker)
}

/// Acquires `name` through `locker` in a task of its own, within `timeout`.
fn spawn_acquire(
    locker: &pglock::Locker,
    name: &str,
    timeout: Duration,
) -> tokio::task::JoinHandle<Result<pglock::Guard, pglock::Error>> {
    let (locker, name) = (locker.clone(), name.to_string());
    tokio::spawn(async move {
        pglock::advisory(name.as_str())
            .timeout(timeout)
            .acquire(&locker)
            .await
    })
}

/// Nothing holds or waits for the fixture's lock any more, and another process
/// takes it.
async fn ends_free_for_another_process(fx: &Fixture) {
    assert!(fx.until_free().await, "still held: {:?}", fx.rows().await);
    let other = connect().await;
    let key = pglock::key_for(&fx.name).unwrap();
    let taken: bool = other
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .await
        .unwrap()
        .get(0);
    assert!(taken, "another process could not take the key");
}

/// The next of a cheap, reproducible spread of numbers (delays, choices).
fn xorshift(x: &mut u64) {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoffs_between_local_guards_go_out_as_one_statement() {
    let (fx, locker) = one_connection_locker("relay").await;
    let inside = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (locker, name, inside, overlaps) = (
            locker.clone(),
            fx.name.clone(),
            inside.clone(),
            overlaps.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                let guard = pglock::advisory(name.as_str())
                    .timeout(Duration::from_secs(10))
                    .acquire(&locker)
                    .await
                    .unwrap();
                if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                tokio::task::yield_now().await;
                inside.fetch_sub(1, Ordering::SeqCst);
                // Both ways a guard ends relay.
                match (t + i) % 2 {
                    0 => guard.release().await.unwrap(),
                    _ => drop(guard),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
    assert!(fx.until_free().await, "still held: {:?}", fx.rows().await);
    let relays = relays_run(&fx, &locker).await;
    println!("FIGURE relay: 200 acquisitions by 4 tasks, relay statement run {relays} times");
    assert!(relays >= 50, "only {relays} relays");
}

/// The waiter is cancelled at a spread of moments around the relay: before the
/// releasing guard sends it, while it is on the wire, after its answer. A grant
/// nobody takes is released; the key ends free and another process takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_to_a_cancelled_waiter_leaves_nothing_held() {
    let (fx, locker) = one_connection_locker("relay-cancel").await;
    let (mut cancelled, mut granted) = (0, 0);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for round in 0..150 {
        xorshift(&mut x);
        let holder = pglock::advisory(fx.name.as_str())
            .acquire(&locker)
            .await
            .unwrap();
        let waiter = tokio::spawn({
            let (locker, name) = (locker.clone(), fx.name.clone());
            async move {
                let guard = pglock::advisory(name.as_str())
                    .timeout(Duration::from_secs(10))
                    .acquire(&locker)
                    .await
                    .unwrap();
                // Held across the cancellation point too.
                tokio::time::sleep(Duration::from_micros(x % 200)).await;
                drop(guard);
            }
        });
        tokio::time::sleep(Duration::from_millis(2)).await;
        match round % 2 {
            0 => drop(holder),
            _ => {
                tokio::spawn(holder.release());
            }
        }
        tokio::time::sleep(Duration::from_micros(x % 400)).await;
        waiter.abort();
        match waiter.await {
            Err(e) if e.is_cancelled() => cancelled += 1,
            Ok(()) => granted += 1,
            Err(e) => panic!("waiter failed: {e}"),
        }
    }
    println!("FIGURE relay cancellation: {cancelled} waiters cancelled, {granted} finished");
    assert!(cancelled > 0);
    ends_free_for_another_process(&fx).await;
}

/// A relay that cannot run (the shared connection is in an aborted transaction
/// its user left) is a failed release: the session holds on to the key — the
/// waiter keeps waiting, nobody else takes it — until its unlock goes through,
/// and the waiter then takes the lock on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_fails_hands_the_lock_on_once_the_unlock_runs() {
    let (fx, locker) = one_connection_locker("relay-fail").await;
    let releasing = pglock::advisory(fx.name.as_str())
        .acquire(&locker)
        .await
        .unwrap();
    let shared_pid = releasing.backend_pid().unwrap();
    // Another lock on the same (only) shared connection, to reach it later.
    let other = pglock::advisory(format!("{}:other", fx.name).as_str())
        .acquire(&locker)
        .await
        .unwrap();
    let waiter = spawn_acquire(&locker, &fx.name, Duration::from_secs(20));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(releasing
        .client()
        .batch_execute("BEGIN; SELECT 1/0")
        .await
        .is_err());
    let err = releasing.release().await.unwrap_err();
    assert!(!err.is_lost(), "{err}");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION),
        "{err}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "the waiter got a lock still held");
    assert_eq!(fx.holders().await, vec![shared_pid]);
    other.client().batch_execute("ROLLBACK").await.unwrap();
    let guard = waiter.await.unwrap().unwrap();
    assert_eq!(fx.holders().await, vec![guard.backend_pid().unwrap()]);
    guard.release().await.unwrap();
    other.release().await.unwrap();
    assert!(fx.until_free().await, "still held: {:?}", fx.rows().await);
}

/// A waiter that waited in the process and then must wait on the server (another
/// process was queued there and got the lock) waits there for what is left of
/// its timeout — the time spent waiting in the process counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_wait_counts_once_against_the_timeout() {
    let (fx, locker) = one_connection_locker("relay-timeout").await;
    let local = pglock::advisory(fx.name.as_str())
        .acquire(&locker)
        .await
        .unwrap();
    let elsewhere = Arc::new(connect().await);
    let key = pglock::key_for(&fx.name).unwrap();
    let queued = tokio::spawn({
        let elsewhere = elsewhere.clone();
        async move {
            elsewhere
                .execute("SELECT pg_advisory_lock($1)", &[&key])
                .await
                .unwrap();
        }
    });
    wait_until_waiting(&fx.observer, &fx.name, None).await;
    let started = Instant::now();
    let waiter = spawn_acquire(&locker, &fx.name, Duration::from_millis(1500));
    // 600 ms in the process, then the lock goes to the process queued on the
    // server, which keeps it until 1,100 ms: within the waiter's 1,500 ms.
    tokio::time::sleep(Duration::from_millis(600)).await;
    local.release().await.unwrap();
    queued.await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100).saturating_sub(started.elapsed())).await;
    elsewhere
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .unwrap();
    let guard = waiter
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("gave up after {:?}: {e}", started.elapsed()));
    assert_eq!(fx.holders().await, vec![guard.backend_pid().unwrap()]);
    guard.release().await.unwrap();
    assert!(fx.until_free().await);
}

/// A guard dropped with nobody waiting parks its unlock; the next acquisition of
/// the same lock through the locker carries it in one statement with its try.
/// Taking the lock again right after dropping it never finds it busy, however
/// the task that sends parked unlocks races with the acquisition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taking_a_dropped_lock_again_carries_its_unlock() {
    let (fx, locker) = one_connection_locker("relay-park").await;
    // Another task keeps the shared connection and the runtime busy meanwhile.
    let stir = tokio::spawn({
        let (locker, name) = (locker.clone(), format!("{}:stir", fx.name));
        async move {
            for i in 0..2000u32 {
                let g = pglock::advisory(format!("{name}:{}", i % 7).as_str())
                    .try_acquire(&locker)
                    .await
                    .unwrap();
                drop(g);
                tokio::task::yield_now().await;
            }
        }
    });
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..3000 {
        xorshift(&mut x);
        let guard = pglock::advisory(fx.name.as_str())
            .try_acquire(&locker)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("cycle {i}: busy right after its own drop"));
        drop(guard);
        if x.is_multiple_of(5) {
            tokio::task::yield_now().await;
        }
    }
    stir.await.unwrap();
    assert!(fx.until_free().await, "still held: {:?}", fx.rows().await);
    let carried = relays_run(&fx, &locker).await;
    println!(
        "FIGURE parked unlocks: 3000 drop-and-retake cycles, {carried} carried by the next try"
    );
    assert!(carried >= 1000, "only {carried} carried");
}

/// A parked unlock goes out on its own when nothing else comes, on both kinds of
/// runtime: another process can take the lock at once.
#[tokio::test(flavor = "current_thread")]
async fn a_parked_unlock_goes_out_on_its_own() {
    let (fx, locker) = one_connection_locker("relay-park-alone").await;
    let other = connect().await;
    let key = pglock::key_for(&fx.name).unwrap();
    for _ in 0..20 {
        let guard = pglock::advisory(fx.name.as_str())
            .acquire(&locker)
            .await
            .unwrap();
        assert_eq!(fx.holders().await, vec![guard.backend_pid().unwrap()]);
        drop(guard);
        // The other process waits on the server: the unlock must reach it.
        let taken = tokio::time::timeout(
            Duration::from_secs(5),
            other.execute("SELECT pg_advisory_lock($1)", &[&key]),
        )
        .await;
        assert!(taken.is_ok(), "the dropped guard's unlock never went out");
        other
            .execute("SELECT pg_advisory_unlock($1)", &[&key])
            .await
            .unwrap();
    }
    assert!(fx.until_free().await, "still held: {:?}", fx.rows().await);
}

/// Another kind of acquisition of a parked lock (shared mode) sends the parked
/// unlock first, then takes its own: never two modes held by the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_acquisition_sends_a_parked_unlock_first() {
    let (fx, locker) = one_connection_locker("relay-park-shared").await;
    for _ in 0..50 {
        drop(
            pglock::advisory(fx.name.as_str())
                .try_acquire(&locker)
                .await
                .unwrap()
                .expect("free"),
        );
        let shared = pglock::advisory(fx.name.as_str())
            .shared()
            .try_acquire(&locker)
            .await
            .unwrap()
            .expect("free after the exclusive guard's drop");
        let rows = fx.rows().await;
        assert!(
            rows.iter().all(|r| r.mode == "ShareLock"),
            "the exclusive hold is still there: {rows:?}"
        );
        drop(shared);
    }
    assert!(fx.until_free().await, "still held: {:?}", fx.rows().await);
}

/// Acquisitions that carry a parked unlock, cancelled at a spread of moments
/// (before their statement goes, while it is on the wire, after): the lock
/// ends free, and a lost parked lock is still counted right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carrying_acquisitions_cancelled_leave_nothing_held() {
    let (fx, locker) = one_connection_locker("relay-park-cancel").await;
    let (mut cancelled, mut acquired) = (0, 0);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for round in 0..300u32 {
        xorshift(&mut x);
        let guard = pglock::advisory(fx.name.as_str())
            .acquire(&locker)
            .await
            .unwrap();
        if round.is_multiple_of(50) {
            // The lock is lost while held: the carried unlock finds it gone.
            guard
                .client()
                .execute("SELECT pg_advisory_unlock_all()", &[])
                .await
                .unwrap();
        }
        drop(guard);
        let cut = Duration::from_micros(x % 300);
        match tokio::time::timeout(cut, pglock::advisory(fx.name.as_str()).try_acquire(&locker))
            .await
        {
            Ok(Ok(Some(g))) => {
                acquired += 1;
                assert_eq!(fx.holders().await, vec![g.backend_pid().unwrap()]);
            }
            Ok(other) => panic!("round {round}: {other:?}"),
            Err(_) => cancelled += 1,
        }
    }
    println!("FIGURE parked unlocks cancelled: {cancelled} carrying acquisitions cancelled, {acquired} acquired");
    assert!(cancelled > 0);
    ends_free_for_another_process(&fx).await;
}

/// A relay whose task is dropped before it reads the answer — the releasing
/// guard was dropped on a runtime that then shut down, while the locker's
/// connection lives on in another — leaves nothing held: the waiter gets the
/// lock, and once it releases, the key is free.
#[test]
fn a_relay_dropped_with_its_runtime_leaves_nothing_held() {
    let main = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (fx, locker) = main.block_on(one_connection_locker("relay-runtime"));
    for _ in 0..20 {
        let other = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let guard = other
            .block_on(pglock::advisory(fx.name.as_str()).acquire(&locker))
            .unwrap();
        let waiter = {
            let _main = main.enter();
            spawn_acquire(&locker, &fx.name, Duration::from_secs(10))
        };
        main.block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });
        // The relay is queued on the connection, its task spawned on `other`
        // and never run: the runtime goes first.
        other.block_on(async move { drop(guard) });
        drop(other);
        main.block_on(async {
            let guard = waiter.await.unwrap().unwrap();
            assert_eq!(fx.holders().await, vec![guard.backend_pid().unwrap()]);
            guard.release().await.unwrap();
            assert!(fx.until_free().await, "still held: {:?}", fx.rows().await);
        });
    }
    main.block_on(ends_free_for_another_process(&fx));
}
