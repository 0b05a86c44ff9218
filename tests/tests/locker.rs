//! `Locker`: many locks on a few shared connections; waits on connections of
//! their own; a dead shared connection loses every lock on it, and each guard
//! says so.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pglock_tests::{
    child_result, connect, eventually, holders, pool, spawn_child, unique_name, Fixture, Witness,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_locks_on_four_connections() {
    let observer = connect().await;
    let pool = pool(6).await;
    let locker = pglock::Locker::new(&pool, 4).await.unwrap();
    let prefix = unique_name("locker-many");
    let names: Vec<String> = (0..1000).map(|i| format!("{prefix}:{i}")).collect();
    let mut guards = Vec::new();
    for name in &names {
        guards.push(
            pglock::advisory(name.as_str())
                .try_acquire(&locker)
                .await
                .unwrap()
                .expect("free"),
        );
    }
    let pids: HashSet<i32> = observer
        .query(
            "SELECT DISTINCT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND pid = ANY($1)",
            &[&guards
                .iter()
                .filter_map(|g| g.backend_pid())
                .collect::<Vec<i32>>()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(pids.len() <= 4, "{} connections hold the locks", pids.len());
    let held: i64 = observer
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND pid = ANY($1)",
            &[&pids.iter().copied().collect::<Vec<i32>>()],
        )
        .await
        .unwrap()
        .get(0);
    assert!(held >= 1000, "{held}");
    println!(
        "FIGURE locker: 1000 locks held on {} connections",
        pids.len()
    );
    // Released concurrently: the unlocks are pipelined.
    let started = Instant::now();
    futures_util::future::join_all(guards.into_iter().map(|g| g.release()))
        .await
        .into_iter()
        .collect::<Result<Vec<()>, _>>()
        .unwrap();
    println!("FIGURE locker: 1000 releases in {:?}", started.elapsed());
    for name in names.iter().step_by(97) {
        assert!(holders(&observer, name).await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_never_stalls_the_shared_connections() {
    let fx = Fixture::new("locker-wait").await;
    let holder = fx.hold_elsewhere().await;
    let pool = pool(4).await;
    let locker = pglock::Locker::new(&pool, 1).await.unwrap();
    let waiter = tokio::spawn({
        let (locker, name) = (locker.clone(), fx.name.clone());
        async move {
            pglock::advisory(name.as_str())
                .timeout(Duration::from_secs(10))
                .acquire(&locker)
                .await
        }
    });
    pglock_tests::wait_until_waiting(&fx.observer, &fx.name, None).await;
    // Meanwhile other locks come and go on the one shared connection.
    let others = tokio::time::timeout(Duration::from_secs(2), async {
        for i in 0..20 {
            let name = format!("{}:other:{i}", fx.name);
            let guard = pglock::advisory(name.as_str())
                .try_acquire(&locker)
                .await
                .unwrap()
                .unwrap();
            guard.release().await.unwrap();
        }
    })
    .await;
    assert!(others.is_ok(), "the wait held up the shared connection");
    drop(holder);
    let guard = waiter.await.unwrap().unwrap();
    assert_eq!(fx.holders().await, vec![guard.backend_pid().unwrap()]);
    guard.release().await.unwrap();
    assert!(fx.until_free().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_shared_connection_loses_every_lock_on_it() {
    let observer = connect().await;
    let pool = pool(4).await;
    let locker = pglock::Locker::new(&pool, 2).await.unwrap();
    let prefix = unique_name("locker-dead");
    // Names until the connection of the first holds 1,000 of them (the other
    // shared connection holds about as many).
    let (mut guards, mut on_victim, mut victim) = (Vec::new(), 0, None);
    for i in 0.. {
        let name = format!("{prefix}:{i}");
        let guard = pglock::advisory(name.as_str())
            .try_acquire(&locker)
            .await
            .unwrap()
            .unwrap();
        let victim = *victim.get_or_insert(guard.backend_pid().unwrap());
        on_victim += usize::from(guard.backend_pid() == Some(victim));
        guards.push(guard);
        if on_victim == 1000 {
            break;
        }
    }
    let victim = victim.unwrap();
    let (lost, kept): (Vec<_>, Vec<_>) = guards
        .into_iter()
        .partition(|g| g.backend_pid() == Some(victim));
    assert_eq!(lost.len(), 1000);
    observer
        .execute("SELECT pg_terminate_backend($1)", &[&victim])
        .await
        .unwrap();
    let started = Instant::now();
    let reported = Arc::new(AtomicUsize::new(0));
    futures_util::future::join_all(lost.iter().map(|g| {
        let reported = reported.clone();
        async move {
            let err = tokio::time::timeout(Duration::from_secs(5), g.lost())
                .await
                .expect("reported within the bound");
            assert!(err.is_lost());
            reported.fetch_add(1, Ordering::Relaxed);
        }
    }))
    .await;
    println!(
        "FIGURE locker: {} losses reported within {:?} of the termination",
        reported.load(Ordering::Relaxed),
        started.elapsed()
    );
    assert_eq!(reported.load(Ordering::Relaxed), lost.len());
    for g in lost {
        assert!(g.release().await.unwrap_err().is_lost());
    }
    // The other connection's locks are untouched.
    for g in kept {
        g.release().await.unwrap();
    }
    // Nothing is left behind, and the locker goes on with a new connection.
    assert!(
        eventually(Duration::from_secs(5), || async {
            let n: i64 = observer
                .query_one(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1",
                    &[&victim],
                )
                .await
                .unwrap()
                .get(0);
            n == 0
        })
        .await
    );
    for i in 0..50 {
        let name = format!("{prefix}:again:{i}");
        pglock::advisory(name.as_str())
            .try_acquire(&locker)
            .await
            .unwrap()
            .unwrap()
            .release()
            .await
            .unwrap();
    }
}

/// Two lockers (as two processes would have) and many tasks on few names: a
/// witness counts holders in the critical section.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_lockers_never_give_two_holders() {
    let pool_a = pool(4).await;
    let pool_b = pool(4).await;
    let a = pglock::Locker::new(&pool_a, 2).await.unwrap();
    let b = pglock::Locker::new(&pool_b, 2).await.unwrap();
    let prefix = unique_name("locker-witness");
    let inside: Arc<Vec<AtomicUsize>> = Arc::new((0..3).map(|_| AtomicUsize::new(0)).collect());
    let overlaps = Arc::new(AtomicUsize::new(0));
    let acquired = Arc::new(AtomicUsize::new(0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut tasks = Vec::new();
    for t in 0..12u64 {
        let locker = if t % 2 == 0 { a.clone() } else { b.clone() };
        let (prefix, inside, overlaps, acquired) = (
            prefix.clone(),
            inside.clone(),
            overlaps.clone(),
            acquired.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = t as usize;
            while tokio::time::Instant::now() < deadline {
                i += 1;
                let slot = i % 3;
                let name = format!("{prefix}:{slot}");
                let lock = pglock::advisory(name.as_str())
                    .timeout(Duration::from_millis(1 + (i as u64 * 7) % 30));
                let Ok(guard) = lock.acquire(&locker).await else {
                    continue;
                };
                acquired.fetch_add(1, Ordering::Relaxed);
                if inside[slot].fetch_add(1, Ordering::SeqCst) != 0 {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis((i % 3) as u64)).await;
                inside[slot].fetch_sub(1, Ordering::SeqCst);
                if i.is_multiple_of(2) {
                    drop(guard);
                } else {
                    guard.release().await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "FIGURE locker witness: {} acquisitions, {} overlaps",
        acquired.load(Ordering::Relaxed),
        overlaps.load(Ordering::Relaxed)
    );
    assert!(acquired.load(Ordering::Relaxed) > 20);
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
    let observer = connect().await;
    for slot in 0..3 {
        let name = format!("{prefix}:{slot}");
        assert!(
            eventually(Duration::from_secs(5), || async {
                holders(&observer, &name).await.is_empty()
            })
            .await
        );
    }
}

/// Handoffs between tasks of one locker (the next try queued behind the unlock
/// on the shared connection), cancelled at random points (waiting in the ledger,
/// with the try on the wire, part-way through a release), released or dropped,
/// against a contender in "another process" (a second locker on its own
/// connections): one holder at a time, no release that finds its lock gone, and
/// nothing held afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_handoffs_survive_random_cancellation() {
    let fx = Fixture::new("locker-handoff").await;
    let pool_a = pool(8).await;
    let pool_b = pool(4).await;
    let local = pglock::Locker::new(&pool_a, 1).await.unwrap();
    let other = pglock::Locker::new(&pool_b, 1).await.unwrap();
    let inside = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let acquired = Arc::new(AtomicUsize::new(0));
    let cancelled = Arc::new(AtomicUsize::new(0));
    let lost = Arc::new(AtomicUsize::new(0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut tasks = Vec::new();
    for t in 0..10u64 {
        let locker = if t < 8 { local.clone() } else { other.clone() };
        let name = fx.name.clone();
        let (inside, overlaps, acquired, cancelled, lost) = (
            inside.clone(),
            overlaps.clone(),
            acquired.clone(),
            cancelled.clone(),
            lost.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = t;
            while tokio::time::Instant::now() < deadline {
                // A cheap, deterministic spread of cut-off points and hold times.
                i = i
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                // One acquisition in three is cut off within 2 ms, the others not
                // before 50 ms (their own timeout ends them first).
                let cut = match (i >> 40) % 3 {
                    0 => Duration::from_micros((i >> 33) % 2000),
                    _ => Duration::from_millis(60),
                };
                let lock = pglock::advisory(name.as_str()).timeout(Duration::from_millis(50));
                let guard = match tokio::time::timeout(cut, lock.acquire(&locker)).await {
                    Ok(Ok(guard)) => guard,
                    Ok(Err(e)) => {
                        assert!(e.is_not_acquired(), "unexpected error: {e}");
                        continue;
                    }
                    Err(_) => {
                        cancelled.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                acquired.fetch_add(1, Ordering::Relaxed);
                if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                if (i >> 20) % 4 == 0 {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                } else {
                    tokio::task::yield_now().await;
                }
                inside.fetch_sub(1, Ordering::SeqCst);
                match (i >> 24) % 3 {
                    0 => drop(guard),
                    1 => {
                        if let Err(e) = guard.release().await {
                            assert!(e.is_lost(), "unexpected error: {e}");
                            lost.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    // Release, cancelled part-way: the guard's unlock still goes.
                    _ => {
                        let _ = tokio::time::timeout(cut, guard.release()).await;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "FIGURE locker handoffs: {} acquisitions, {} cancelled acquisitions, {} overlaps, {} lost",
        acquired.load(Ordering::Relaxed),
        cancelled.load(Ordering::Relaxed),
        overlaps.load(Ordering::Relaxed),
        lost.load(Ordering::Relaxed)
    );
    assert!(acquired.load(Ordering::Relaxed) > 100);
    assert!(cancelled.load(Ordering::Relaxed) > 10);
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
    assert_eq!(lost.load(Ordering::SeqCst), 0);
    assert!(fx.until_free().await, "still held: {:?}", fx.rows().await);
    // Both lockers can still take it, each once and exclusively.
    let g = pglock::advisory(fx.name.as_str())
        .try_acquire(&local)
        .await
        .unwrap()
        .expect("free after the storm");
    assert_eq!(fx.holders().await, vec![g.backend_pid().unwrap()]);
    assert!(pglock::advisory(fx.name.as_str())
        .try_acquire(&other)
        .await
        .unwrap()
        .is_none());
    g.release().await.unwrap();
    assert!(fx.until_free().await);
}

/// A local handoff goes through the server: when another process waits there,
/// the unlock hands the lock to that waiter and the next local try finds it busy
/// (PostgreSQL refuses a try while others queue) — local tasks hammering the lock
/// do not keep it from others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_handoffs_do_not_jump_the_servers_queue() {
    let fx = Fixture::new("locker-handoff-fair").await;
    let pool = pool(12).await;
    let locker = pglock::Locker::new(&pool, 1).await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acquired = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (locker, name, stop, acquired) = (
            locker.clone(),
            fx.name.clone(),
            stop.clone(),
            acquired.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let lock = pglock::advisory(name.as_str()).timeout(Duration::from_secs(10));
                let guard = lock.acquire(&locker).await.unwrap();
                acquired.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
                guard.release().await.unwrap();
            }
        }));
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            acquired.load(Ordering::Relaxed) > 200
        })
        .await
    );
    // Another process queues at the server while the local tasks keep going.
    let other = connect().await;
    let key = pglock::key_for(&fx.name).unwrap();
    let started = Instant::now();
    other
        .batch_execute("SET lock_timeout = '5s'")
        .await
        .unwrap();
    other
        .execute("SELECT pg_advisory_lock($1)", &[&key])
        .await
        .expect("the other process's wait is granted while local tasks contend");
    let waited = started.elapsed();
    let before = acquired.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Held elsewhere: the local tasks are waiting now.
    assert_eq!(acquired.load(Ordering::Relaxed), before);
    other
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .unwrap();
    println!("FIGURE locker handoff fairness: the other process waited {waited:?}");
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert!(fx.until_free().await);
}

/// A locker's lease: one time-to-live per shared connection, renewed for all its
/// locks at once while the process runs; when its runtime freezes, the server
/// ends the connection and frees every lock on it. Its label names the holders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lockers_lease_expires_when_its_process_freezes() {
    let observer = connect().await;
    let pool = pool(3).await;
    let prefix = unique_name("locker-lease");
    let names: Vec<String> = (0..5).map(|i| format!("{prefix}:{i}")).collect();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let (freeze_tx, freeze_rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Vec<bool>>();
    let holder = std::thread::spawn({
        let (pool, names) = (pool.clone(), names.clone());
        move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let locker = pglock::Locker::builder(&pool)
                    .connections(1)
                    .lease(Duration::from_millis(600))
                    .label("locker-lease-test")
                    .build()
                    .await
                    .unwrap();
                let mut guards = Vec::new();
                for name in &names {
                    guards.push(
                        pglock::advisory(name.as_str())
                            .try_acquire(&locker)
                            .await
                            .unwrap()
                            .unwrap(),
                    );
                }
                // Healthy for three times the lease: the renewals keep it.
                tokio::time::sleep(Duration::from_millis(1800)).await;
                ready_tx.send(()).unwrap();
                // The process freezes: nothing runs on this runtime.
                freeze_rx.recv().unwrap();
                std::thread::sleep(Duration::from_millis(2500));
                let mut lost = Vec::new();
                for guard in guards {
                    lost.push(guard.release().await.is_err_and(|e| e.is_lost()));
                }
                done_tx.send(lost).unwrap();
            });
        }
    });
    tokio::task::spawn_blocking(move || ready_rx.recv().unwrap())
        .await
        .unwrap();
    for name in &names {
        let status = pglock::status(&observer, name.as_str()).await.unwrap();
        assert_eq!(status.holders.len(), 1, "held after 3 × the lease: {name}");
        assert_eq!(
            status.holders[0].application_name.as_deref(),
            Some("locker-lease-test")
        );
    }
    freeze_tx.send(()).unwrap();
    let frozen = Instant::now();
    let freed = eventually(Duration::from_secs(2), || async {
        holders(&observer, &names[0]).await.is_empty()
    })
    .await;
    println!(
        "FIGURE locker lease: 600 ms lease, freed {:?} after the process froze",
        frozen.elapsed()
    );
    assert!(freed, "the server did not end the silent connection");
    for name in &names {
        assert!(holders(&observer, name).await.is_empty());
    }
    let lost = done_rx.await.unwrap();
    assert!(
        lost.iter().all(|l| *l),
        "every guard reports the loss: {lost:?}"
    );
    holder.join().unwrap();
}

// Two OS processes, each with a locker, hammer three names ------------------

const ROLE: &str = "PGLOCK_LOCKER_ROLE";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_across_two_processes() {
    let direct = connect().await;
    let table = format!("pglock_locker_witness_{}", std::process::id());
    let prefix = unique_name("locker-procs");
    let names: Vec<String> = (0..3).map(|slot| format!("{prefix}:{slot}")).collect();
    let witness = Witness::create(&direct, &table, &names).await;
    let env = [
        (ROLE, "hammer".to_string()),
        ("PGLOCK_LOCKER_PREFIX", prefix.clone()),
        ("PGLOCK_LOCKER_TABLE", table.clone()),
    ];
    let children: Vec<_> = (0..2).map(|_| spawn_child("locker_child", &env)).collect();
    let (mut acquisitions, mut worst) = (0u64, 0u64);
    for child in children {
        let (count, most) = child_result(child);
        acquisitions += count;
        worst = worst.max(most);
    }
    println!(
        "FIGURE locker: 2 processes × 6 tasks × 3 names, {acquisitions} acquisitions, at most \
         {worst} holder(s) of a name at once"
    );
    assert!(acquisitions > 20);
    assert_eq!(worst, 1, "two holders at once");
    let (total, inside) = witness.totals(&direct).await;
    assert_eq!((total, inside), (acquisitions, 0));
    for name in &names {
        assert!(
            eventually(Duration::from_secs(5), || async {
                holders(&direct, name).await.is_empty()
            })
            .await
        );
    }
    witness.drop_table(&direct).await;
}

/// Not a test: the child processes' entry point.
#[test]
#[ignore = "entry point for the child processes of witness_across_two_processes"]
fn locker_child() {
    if std::env::var(ROLE).is_err() {
        return;
    }
    let prefix = std::env::var("PGLOCK_LOCKER_PREFIX").unwrap();
    let table = std::env::var("PGLOCK_LOCKER_TABLE").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (count, worst) = rt.block_on(async move {
        let pool = pool(6).await;
        let locker = pglock::Locker::new(&pool, 2).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut tasks = Vec::new();
        for t in 0..6usize {
            let (locker, prefix, table) = (locker.clone(), prefix.clone(), table.clone());
            tasks.push(tokio::spawn(async move {
                let direct = connect().await;
                let witness = Witness::named(&table);
                let (mut count, mut worst) = (0u64, 0u64);
                let mut i = t;
                while Instant::now() < deadline {
                    i += 1;
                    let name = format!("{prefix}:{}", i % 3);
                    let lock = pglock::advisory(name.as_str())
                        .timeout(Duration::from_millis(5 + (i as u64 * 13) % 40));
                    let Ok(guard) = lock.acquire(&locker).await else {
                        continue;
                    };
                    worst = worst.max(witness.enter(&direct, &name).await);
                    witness.leave(&direct, &name).await;
                    if i.is_multiple_of(2) {
                        drop(guard);
                    } else {
                        guard.release().await.unwrap();
                    }
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
