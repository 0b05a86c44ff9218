//! The fault-injection suite (issue 4): terminated backends, server restarts,
//! lease expiry, cancellation storms, mutual exclusion across OS processes,
//! deadlocks, a full lock table and fencing across processes and restarts. Each
//! case ends by checking that nothing leaked: no advisory lock left in `pg_locks`
//! and the pool still usable. Figures are printed (`cargo test --test faults --
//! --nocapture` shows them).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pglock_tests::{
    advisory_locks_of, connect, connect_to, eventually, holders, pid_of, pool, pool_for,
    unique_name, Cluster,
};
use tokio_postgres::Client;

/// Every advisory lock of the current database held by sessions other than the
/// observer's, for the given names.
async fn leftover(observer: &Client, names: &[String]) -> usize {
    let mut n = 0;
    for name in names {
        n += pglock_tests::lock_rows(observer, name).await.len();
    }
    n
}

/// No advisory locks anywhere on a (throwaway) server.
async fn server_has_no_advisory_locks(observer: &Client) -> bool {
    pglock_tests::advisory_lock_count(observer).await == 0
}

/// Every connection of `pool` can be checked out at once, answers, and holds no
/// advisory lock.
async fn pool_is_clean(pool: &deadpool_postgres::Pool, observer: &Client) {
    let size = pool.status().max_size;
    let mut objects = Vec::new();
    for _ in 0..size {
        objects.push(
            pool.get()
                .await
                .expect("the pool still hands out connections"),
        );
    }
    for object in &objects {
        let pid = pid_of(object).await;
        assert_eq!(
            advisory_locks_of(observer, pid).await,
            0,
            "pooled connection {pid} holds a lock"
        );
        let timeout: String = object
            .query_one("SHOW lock_timeout", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(timeout, "0", "pooled connection {pid} kept a lock_timeout");
    }
}

fn figure(what: &str, value: impl std::fmt::Display) {
    println!("FIGURE {what}: {value}");
}

// 1. ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f1_terminated_holder_is_noticed_and_a_waiter_takes_over() {
    let pool = pool(3).await;
    let observer = connect().await;
    let name = unique_name("f1");
    let guard = pglock::advisory(name.as_str())
        .acquire(&pool)
        .await
        .unwrap();
    let waiter = {
        // Another process: a pool of its own.
        let (pool, name) = (pglock_tests::pool(1).await, name.clone());
        tokio::spawn(async move { pglock::advisory(name.as_str()).acquire(&pool).await })
    };
    pglock_tests::wait_until_waiting(&observer, &name, None).await;
    let pid = pid_of(guard.client()).await;
    let killed_at = Instant::now();
    observer
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let lost = tokio::time::timeout(Duration::from_secs(5), guard.lost())
        .await
        .expect("loss within the bound");
    figure(
        "loss detection after pg_terminate_backend (ms)",
        killed_at.elapsed().as_millis(),
    );
    assert!(lost.is_lost());
    let next = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        holders(&observer, &name).await,
        vec![pid_of(next.client()).await]
    );
    assert!(guard.release().await.unwrap_err().is_lost());
    next.release().await.unwrap();
    assert_eq!(leftover(&observer, &[name]).await, 0);
    pool_is_clean(&pool, &observer).await;
}

// 2. ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f2_server_restart_loses_every_lock_and_the_pool_recovers() {
    let cluster = Cluster::start(&[]).expect("throwaway cluster");
    let pool = pool_for(&cluster.url(), 4);
    let names: Vec<String> = (0..3).map(|i| unique_name(&format!("f2-{i}"))).collect();
    let mut guards = Vec::new();
    for name in &names {
        guards.push(
            pglock::advisory(name.as_str())
                .check_every(Duration::from_millis(200))
                .acquire(&pool)
                .await
                .unwrap(),
        );
    }
    let restarted_at = Instant::now();
    cluster.restart().expect("restart");
    for guard in &guards {
        let lost = tokio::time::timeout(Duration::from_secs(10), guard.lost())
            .await
            .expect("every guard notices");
        assert!(lost.is_lost());
    }
    figure(
        "all 3 losses noticed after a restart began (ms)",
        restarted_at.elapsed().as_millis(),
    );
    for guard in guards {
        assert!(guard.release().await.unwrap_err().is_lost());
    }
    // The pool recovers: new acquisitions work on fresh connections.
    for name in &names {
        let guard = pglock::advisory(name.as_str())
            .timeout(Duration::from_secs(5))
            .acquire(&pool)
            .await
            .unwrap();
        guard.release().await.unwrap();
    }
    let observer = connect_to(&cluster.url()).await;
    assert!(server_has_no_advisory_locks(&observer).await);
    pool_is_clean(&pool, &observer).await;
}

// 3. ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f3_lease_expires_within_ttl_plus_one_second_and_renewal_keeps_it() {
    let pool = pool(3).await;
    let observer = connect().await;
    let ttl = Duration::from_millis(800);
    let silent = unique_name("f3-silent");
    let guard = pglock::advisory(silent.as_str())
        .lease(ttl)
        .acquire(&pool)
        .await
        .unwrap();
    let granted = Instant::now();
    // The holder hangs: no renewal, no query.
    assert!(
        eventually(ttl + Duration::from_secs(1), || async {
            holders(&observer, &silent).await.is_empty()
        })
        .await,
        "the server did not end the silent holder's session within TTL + 1 s"
    );
    let expired_after = granted.elapsed();
    figure(
        "lease expiry after grant, TTL 800 ms (ms)",
        expired_after.as_millis(),
    );
    figure(
        "lease expiry slack beyond TTL (ms)",
        expired_after.saturating_sub(ttl).as_millis(),
    );
    assert!(guard.release().await.unwrap_err().is_lost());

    let renewed = unique_name("f3-renewed");
    let guard = pglock::advisory(renewed.as_str())
        .lease(ttl)
        .auto_renew()
        .acquire(&pool)
        .await
        .unwrap();
    tokio::time::sleep(ttl * 4).await;
    assert_eq!(
        holders(&observer, &renewed).await.len(),
        1,
        "renewal kept the lease past four TTLs"
    );
    assert!(guard.is_held().await.unwrap());
    guard.release().await.unwrap();
    assert_eq!(leftover(&observer, &[silent, renewed]).await, 0);
    pool_is_clean(&pool, &observer).await;
}

// 4. ------------------------------------------------------------------------

/// A small deterministic generator: the storm's "random" points, reproducible
/// from the printed seed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f4_cancellation_storm_leaks_nothing() {
    let pool = pool(8).await;
    let session = pglock_tests::session().await;
    let observer = connect().await;
    let names: Arc<Vec<String>> =
        Arc::new((0..3).map(|i| unique_name(&format!("f4-{i}"))).collect());
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("storm seed {seed}");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (acquired, cancelled) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    // Holders keep the names busy at random.
    let mut holders_tasks = Vec::new();
    for h in 0..2u64 {
        let (pool, names, stop) = (pool.clone(), names.clone(), stop.clone());
        holders_tasks.push(tokio::spawn(async move {
            let mut rng = XorShift(seed ^ ((h + 1) * 0x9E37_79B9));
            while !stop.load(Ordering::Relaxed) {
                let name = &names[rng.next(names.len() as u64) as usize];
                if let Ok(g) = pglock::advisory(name.as_str())
                    .timeout(Duration::from_millis(50))
                    .acquire(&pool)
                    .await
                {
                    tokio::time::sleep(Duration::from_micros(rng.next(3000))).await;
                    drop(g);
                }
            }
        }));
    }
    let mut storm = Vec::new();
    for t in 0..4u64 {
        let (pool, session, names) = (pool.clone(), session.clone(), names.clone());
        let (acquired, cancelled) = (acquired.clone(), cancelled.clone());
        storm.push(tokio::spawn(async move {
            let mut rng = XorShift(seed.rotate_left(t as u32 * 7 + 3) | 1);
            for i in 0..300u64 {
                let lock = pglock::advisory(names[rng.next(names.len() as u64) as usize].as_str());
                let lock = if rng.next(4) == 0 {
                    lock.shared()
                } else {
                    lock
                };
                let budget = Duration::from_micros(rng.next(20_000));
                let attempt = if i % 3 == 0 {
                    tokio::time::timeout(budget, lock.acquire(&session)).await
                } else {
                    tokio::time::timeout(budget, lock.acquire(&pool)).await
                };
                match attempt {
                    Ok(Ok(guard)) => {
                        acquired.fetch_add(1, Ordering::Relaxed);
                        if rng.next(2) == 0 {
                            drop(guard);
                        } else {
                            // Cancel the release too, at a random point.
                            let _ = tokio::time::timeout(
                                Duration::from_micros(rng.next(500)),
                                guard.release(),
                            )
                            .await;
                        }
                    }
                    Ok(Err(e)) => panic!("acquire failed: {e}"),
                    Err(_) => {
                        cancelled.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for task in storm {
        task.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for task in holders_tasks {
        task.await.unwrap();
    }
    figure("storm acquisitions", acquired.load(Ordering::Relaxed));
    figure("storm cancellations", cancelled.load(Ordering::Relaxed));
    let clean = eventually(Duration::from_secs(10), || async {
        leftover(&observer, &names).await == 0
    })
    .await;
    let left = leftover(&observer, &names).await;
    figure("storm leaked locks", left);
    assert!(clean, "{left} advisory locks leaked");
    assert!(
        cancelled.load(Ordering::Relaxed) > 0,
        "the storm cancelled nothing"
    );
    pool_is_clean(&pool, &observer).await;
    assert_eq!(
        advisory_locks_of(&observer, pid_of(session.client()).await).await,
        0
    );
}

// 5 and 8: child processes ----------------------------------------------------

const ROLE: &str = "PGLOCK_FAULTS_ROLE";

/// Runs this test binary again as a child doing one role.
fn spawn_role(role: &str, env: &[(&str, String)]) -> std::process::Child {
    let mut env = env.to_vec();
    env.push((ROLE, role.to_string()));
    pglock_tests::spawn_child("child_process_entry", &env)
}

/// Not a test: the entry point of the child processes the multi-process cases
/// spawn (it does nothing unless `PGLOCK_FAULTS_ROLE` is set).
#[test]
#[ignore = "entry point for the child processes of f5 and f8"]
fn child_process_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (a, b) = rt.block_on(async {
        let url = std::env::var("PGLOCK_FAULTS_URL").unwrap();
        let names: Vec<String> = std::env::var("PGLOCK_FAULTS_NAMES")
            .unwrap()
            .split(',')
            .map(String::from)
            .collect();
        let table = std::env::var("PGLOCK_FAULTS_TABLE").unwrap();
        let seconds: u64 = std::env::var("PGLOCK_FAULTS_SECONDS")
            .unwrap()
            .parse()
            .unwrap();
        match role.as_str() {
            "mutex" => hammer(&url, &names, &table, Duration::from_secs(seconds), false).await,
            "fencing" => hammer(&url, &names, &table, Duration::from_secs(seconds), true).await,
            other => panic!("unknown role {other}"),
        }
    });
    println!("RESULT {a} {b}");
}

/// Tasks that hammer `names` for `duration`, each critical section checked
/// against a witness row. Mutex: answers (acquisitions, most holders seen at
/// once). Fencing: answers (acquisitions, tokens that were not above the last).
async fn hammer(
    url: &str,
    names: &[String],
    table: &str,
    duration: Duration,
    fencing: bool,
) -> (u64, u64) {
    let tasks = 6;
    let pool = pool_for(url, tasks);
    let deadline = Instant::now() + duration;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (pool, names, table) = (pool.clone(), names.to_vec(), table.to_string());
        handles.push(tokio::spawn(async move {
            let (mut count, mut worst) = (0u64, 0u64);
            let mut i = t;
            while Instant::now() < deadline {
                let name = &names[i % names.len()];
                i += 1;
                let lock = pglock::advisory(name.as_str());
                let guard = if fencing { lock.fencing() } else { lock }
                    .acquire(&pool)
                    .await
                    .unwrap();
                let client = guard.client();
                if fencing {
                    let token = guard.fencing_token().unwrap();
                    let moved = client
                        .execute(
                            &format!("UPDATE {table} SET last = $2 WHERE name = $1 AND last < $2"),
                            &[name, &token],
                        )
                        .await
                        .unwrap();
                    worst += u64::from(moved != 1);
                } else {
                    let witness = pglock_tests::Witness::named(&table);
                    worst = worst.max(witness.enter(client, name).await);
                    witness.leave(client, name).await;
                }
                guard.release().await.unwrap();
                count += 1;
            }
            (count, worst)
        }));
    }
    let (mut count, mut worst) = (0, 0);
    for h in handles {
        let (c, w) = h.await.unwrap();
        count += c;
        worst = if fencing { worst + w } else { worst.max(w) };
    }
    (count, worst)
}

fn child_env(
    url: &str,
    names: &[String],
    table: &str,
    seconds: u64,
) -> Vec<(&'static str, String)> {
    vec![
        ("PGLOCK_FAULTS_URL", url.to_string()),
        ("PGLOCK_FAULTS_NAMES", names.join(",")),
        ("PGLOCK_FAULTS_TABLE", table.to_string()),
        ("PGLOCK_FAULTS_SECONDS", seconds.to_string()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f5_mutual_exclusion_across_processes() {
    let url = pglock_tests::database_url().await;
    let observer = connect().await;
    let table = format!("pglock_witness_{}", std::process::id());
    let names: Vec<String> = (0..3).map(|i| unique_name(&format!("f5-{i}"))).collect();
    let witness = pglock_tests::Witness::create(&observer, &table, &names).await;
    let seconds = 3;
    let started = Instant::now();
    let children: Vec<_> = (0..2)
        .map(|_| spawn_role("mutex", &child_env(&url, &names, &table, seconds)))
        .collect();
    let results: Vec<(u64, u64)> = children
        .into_iter()
        .map(pglock_tests::child_result)
        .collect();
    let elapsed = started.elapsed();
    let acquisitions: u64 = results.iter().map(|r| r.0).sum();
    let most: u64 = results.iter().map(|r| r.1).max().unwrap();
    let (total, inside) = witness.totals(&observer).await;
    figure("processes × tasks", "2 × 6, 3 names");
    figure("exclusive acquisitions", acquisitions);
    figure(
        "acquisitions per second",
        format!("{:.0}", acquisitions as f64 / elapsed.as_secs_f64()),
    );
    figure("most holders seen at once", most);
    witness.drop_table(&observer).await;
    assert!(acquisitions > 0);
    assert_eq!(most, 1, "two holders overlapped");
    assert_eq!(
        total, acquisitions,
        "the witness counted every critical section exactly once"
    );
    assert_eq!(inside, 0);
    assert_eq!(leftover(&observer, &names).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f8_fencing_tokens_increase_across_processes_and_restarts() {
    let cluster = Cluster::start(&[]).expect("throwaway cluster");
    let url = cluster.url();
    let observer = connect_to(&url).await;
    pglock::install_fencing(&observer).await.unwrap();
    let table = "fence_witness";
    let names = vec![unique_name("f8")];
    observer
        .batch_execute(&format!(
            "CREATE TABLE {table} (name text PRIMARY KEY, last bigint NOT NULL DEFAULT 0)"
        ))
        .await
        .unwrap();
    observer
        .execute(
            &format!("INSERT INTO {table} (name) VALUES ($1)"),
            &[&names[0]],
        )
        .await
        .unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| spawn_role("fencing", &child_env(&url, &names, table, 2)))
        .collect();
    let results: Vec<(u64, u64)> = children
        .into_iter()
        .map(pglock_tests::child_result)
        .collect();
    let acquisitions: u64 = results.iter().map(|r| r.0).sum();
    let stale: u64 = results.iter().map(|r| r.1).sum();
    figure("fenced acquisitions across 2 processes", acquisitions);
    figure("tokens not above the previous holder's", stale);
    assert!(acquisitions > 0);
    assert_eq!(stale, 0);
    let last: i64 = observer
        .query_one(&format!("SELECT last FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    drop(observer);
    cluster.restart().expect("restart");
    let pool = pool_for(&url, 1);
    let guard = pglock::advisory(names[0].as_str())
        .fencing()
        .acquire(&pool)
        .await
        .unwrap();
    let after = guard.fencing_token().unwrap();
    figure("token before restart → after", format!("{last} → {after}"));
    assert!(
        after > last,
        "token {after} after a restart is not above {last}"
    );
    guard.release().await.unwrap();
    let observer = connect_to(&url).await;
    assert!(server_has_no_advisory_locks(&observer).await);
}

// 6. ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f6_deadlock_between_two_sessions_fails_exactly_one() {
    let (a, b) = (pglock_tests::session().await, pglock_tests::session().await);
    let observer = connect().await;
    let (k1, k2) = (unique_name("f6-1"), unique_name("f6-2"));
    let ga = pglock::advisory(k1.as_str()).acquire(&a).await.unwrap();
    let gb = pglock::advisory(k2.as_str()).acquire(&b).await.unwrap();
    // Each side waits for the other's lock; the victim of the deadlock gives its
    // own lock up, as a caller handling the error would.
    let side = |session: pglock::Session, mine: pglock::Guard, wanted: String| async move {
        let result = pglock::advisory(wanted.as_str()).acquire(&session).await;
        match result {
            Ok(second) => (true, Some((mine, second))),
            Err(e) => {
                assert!(e.is_deadlock(), "{e:?}");
                drop(mine);
                (false, None)
            }
        }
    };
    let ((a_ok, a_held), (b_ok, b_held)) = tokio::join!(side(a.clone(), ga, k2.clone()), async {
        pglock_tests::wait_until_waiting(&observer, &k2, None).await;
        side(b.clone(), gb, k1.clone()).await
    });
    assert!(a_ok != b_ok, "exactly one side must be the deadlock victim");
    let (first, second) = a_held.or(b_held).expect("the survivor holds both locks");
    figure("deadlock victims / survivors", "1 / 1");
    first.release().await.unwrap();
    second.release().await.unwrap();
    let names = [k1, k2];
    assert!(
        eventually(Duration::from_secs(5), || async {
            leftover(&observer, &names).await == 0
        })
        .await
    );
}

// 7. ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f7_full_lock_table_is_a_clear_error_and_leaks_nothing() {
    let cluster =
        Cluster::start(&[("max_locks_per_transaction", "10")]).expect("throwaway cluster");
    let session = pglock::Session::new(connect_to(&cluster.url()).await);
    // Connected before the table fills: a new connection's start-up needs entries
    // of the lock table too, and the dropped guards' unlocks below are queued,
    // not awaited.
    let observer = connect_to(&cluster.url()).await;
    let mut guards = Vec::new();
    let err = loop {
        match pglock::advisory(guards.len() as i64)
            .acquire(&session)
            .await
        {
            Ok(g) => guards.push(g),
            Err(e) => break e,
        }
        assert!(guards.len() < 100_000, "the lock table never filled");
    };
    figure(
        "locks held when the table filled (max_locks_per_transaction = 10)",
        guards.len(),
    );
    assert!(err.is_lock_table_full(), "{err:?}");
    assert!(
        err.to_string().contains("max_locks_per_transaction"),
        "{err}"
    );
    assert_eq!(err.code().map(|c| c.code()), Some("53200"));
    // The connection stays usable, and so does the server once locks go.
    session.client().query_one("SELECT 1", &[]).await.unwrap();
    drop(guards);
    assert!(
        eventually(Duration::from_secs(10), || async {
            server_has_no_advisory_locks(&observer).await
        })
        .await
    );
    let pool = pool_for(&cluster.url(), 2);
    pglock::advisory("after-full")
        .acquire(&pool)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    pool_is_clean(&pool, &observer).await;
}
