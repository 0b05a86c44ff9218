//! The name registry and the listing of every advisory lock, against the real
//! server: names recorded by pipelined writes, shown for locks held by anyone;
//! raw-key, shared, transaction locks and waiters; directories; collisions; a
//! registry that is blocked or missing never holds an acquisition up.
//!
//! The registry is switched on for this whole test process (it is process-wide),
//! and every lock name here is unique, so tests do not see each other's rows.

use std::time::{Duration, Instant, SystemTime};

use pglock::{ListedLock, LockFilter, LockKey, Mode};
use pglock_tests::{
    connect, connect_to, database_url, eventually, holders, lock_rows, pair_lock_rows, pid_of,
    pool, pool_for, unique_name, wait_until_waiting, Relay,
};
use tokio_postgres::Client;

async fn registry_on() -> Client {
    let client = connect().await;
    pglock::install_registry(&client).await.expect("install");
    assert!(pglock::registry_enabled());
    client
}

/// The registry row for `name`, read with SQL of the test's own:
/// `(name, other_names, last_seen)`.
async fn registry_row(observer: &Client, name: &str) -> Option<(String, Vec<String>, SystemTime)> {
    let key = pglock::key_for(name).unwrap();
    observer
        .query_opt(
            "SELECT name, other_names, last_seen FROM public.pglock_names WHERE lock_key = $1",
            &[&key],
        )
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
}

fn rows_of(listed: &[ListedLock], key: LockKey) -> Vec<&ListedLock> {
    listed.iter().filter(|l| l.key == key).collect()
}

fn named(name: &str) -> LockKey {
    LockKey::Big(pglock::key_for(name).unwrap())
}

#[tokio::test]
async fn the_listing_shows_named_raw_shared_transaction_locks_and_waiters_by_directory() {
    let observer = registry_on().await;
    let dir = unique_name("registry-dir");
    let excl = format!("{dir}/invoices");
    let shared = format!("{dir}.reports");
    let xact = format!("{dir}::ledger");
    let elsewhere = format!("{dir}2/other"); // same prefix, another directory
    let pool = pool(8).await;

    let excl_guard = pglock::advisory(excl.as_str())
        .label("worker-7")
        .acquire(&pool)
        .await
        .unwrap();
    let shared_a = pglock::advisory(shared.as_str())
        .shared()
        .acquire(&pool)
        .await
        .unwrap();
    let shared_b = pglock::advisory(shared.as_str())
        .shared()
        .acquire(&pool)
        .await
        .unwrap();
    let other_guard = pglock::advisory(elsewhere.as_str())
        .acquire(&pool)
        .await
        .unwrap();
    let raw: i64 = -(std::process::id() as i64) * 1_000_003 - 17;
    let raw_guard = pglock::advisory(raw).acquire(&pool).await.unwrap();
    let pair = (std::process::id() as i32, -42);
    let pair_guard = pglock::advisory(pair).acquire(&pool).await.unwrap();
    // A transaction lock: its name is recorded explicitly (pglock writes nothing
    // inside the caller's transaction).
    assert_eq!(pglock::register(&observer, &xact).await.unwrap(), None);
    let mut xact_client = connect().await;
    let xact_pid = pid_of(&xact_client).await;
    let tx = xact_client.transaction().await.unwrap();
    pglock::advisory(xact.as_str())
        .xact()
        .acquire_in(&tx)
        .await
        .unwrap();

    // Two waiters on the exclusive lock, one after the other.
    let mut waiter_pids = Vec::new();
    let mut waiters = Vec::new();
    for _ in 0..2 {
        let session = pglock_tests::session().await;
        let pid = pid_of(session.client()).await;
        let name = excl.clone();
        waiters.push(tokio::spawn(async move {
            let lock = pglock::advisory(name.as_str()).timeout(Duration::from_secs(30));
            lock.acquire(&session).await.map(drop)
        }));
        wait_until_waiting(&observer, &excl, Some(pid)).await;
        waiter_pids.push(pid);
    }

    let all = pglock::locks(&observer, &LockFilter::all()).await.unwrap();
    let now = SystemTime::now();

    // The exclusive lock: its holder (as pg_locks shows it), then the waiters in
    // queue order, each blocked by the holder (the second also by the first).
    let holder_pid = holders(&observer, &excl).await;
    assert_eq!(holder_pid.len(), 1);
    let rows = rows_of(&all, named(&excl));
    assert_eq!(rows.len(), 3, "{rows:#?}");
    let held = rows[0];
    assert!(held.granted);
    assert_eq!(held.name.as_deref(), Some(excl.as_str()));
    assert_eq!(held.mode, Mode::Exclusive);
    assert_eq!(held.pid, Some(holder_pid[0]));
    assert_eq!(held.label.as_deref(), Some("worker-7"));
    assert!(
        held.client_addr.is_some(),
        "the test server is reached over TCP"
    );
    assert_eq!(held.session_state.as_deref(), Some("idle"));
    let since = held.held_since.expect("an idle holder");
    assert!(held.session_start.unwrap() <= since && since <= now);
    assert!(held.blocked_by.is_empty() && held.wait_start.is_none());
    for (row, pid) in rows[1..].iter().zip(&waiter_pids) {
        assert!(!row.granted);
        assert_eq!(row.pid, Some(*pid));
        assert_eq!(row.name.as_deref(), Some(excl.as_str()));
        assert!(row.blocked_by.contains(&holder_pid[0]), "{row:?}");
        assert!(row.wait_start.is_some() && row.held_since.is_none());
    }
    assert!(rows[1].wait_start <= rows[2].wait_start);

    // Two shared holders, by name.
    let rows = rows_of(&all, named(&shared));
    assert_eq!(rows.len(), 2);
    assert!(rows
        .iter()
        .all(|r| r.granted && r.mode == Mode::Shared && r.name.as_deref() == Some(&*shared)));
    let mut pids: Vec<i32> = rows.iter().filter_map(|r| r.pid).collect();
    pids.sort_unstable();
    assert_eq!(pids, holders(&observer, &shared).await);

    // The transaction lock: named, held by a session inside a transaction.
    let rows = rows_of(&all, named(&xact));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].pid, Some(xact_pid));
    assert_eq!(rows[0].name.as_deref(), Some(xact.as_str()));
    assert_eq!(
        rows[0].session_state.as_deref(),
        Some("idle in transaction")
    );
    assert!(rows[0].transaction_start.is_some());

    // Raw keys stay nameless, shown by key.
    let rows = rows_of(&all, LockKey::Big(raw));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].name, None);
    assert_eq!(rows[0].display_name(), raw.to_string());
    let rows = rows_of(&all, LockKey::Pair(pair.0, pair.1));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].name, None);
    assert_eq!(
        rows[0].pid,
        Some(pair_lock_rows(&observer, pair.0, pair.1).await[0].pid)
    );

    // By directory: `dir` holds the three named locks (with the waiters), not the
    // raw keys nor `dir2/…`; `dir/` only the exclusive one.
    let in_dir = pglock::locks(&observer, &LockFilter::directory(&dir))
        .await
        .unwrap();
    let mut names: Vec<&str> = in_dir.iter().filter_map(|l| l.name.as_deref()).collect();
    assert_eq!(names.len(), in_dir.len(), "only named locks in a directory");
    names.dedup();
    let mut expected = vec![excl.as_str(), shared.as_str(), xact.as_str()];
    expected.sort_unstable();
    assert_eq!(names, expected, "sorted by name, each lock's rows together");
    assert_eq!(in_dir.len(), 3 + 2 + 1);
    let slash = pglock::locks(&observer, &LockFilter::directory(format!("{dir}/")))
        .await
        .unwrap();
    assert_eq!(slash.len(), 3);
    assert!(slash.iter().all(|l| l.key == named(&excl)));
    let other = pglock::locks(&observer, &LockFilter::directory(format!("{dir}2")))
        .await
        .unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].name.as_deref(), Some(elsewhere.as_str()));

    excl_guard.release().await.unwrap();
    for waiter in waiters {
        waiter.await.unwrap().unwrap();
    }
    tx.rollback().await.unwrap();
    for guard in [shared_a, shared_b, other_guard, raw_guard, pair_guard] {
        guard.release().await.unwrap();
    }
    let after = pglock::locks(&observer, &LockFilter::directory(&dir))
        .await
        .unwrap();
    assert!(after.is_empty(), "{after:#?}");
}

#[tokio::test]
async fn a_name_recorded_by_one_process_names_a_lock_held_by_another() {
    let observer = registry_on().await;
    let name = unique_name("registry-recorded");
    let unrecorded = unique_name("registry-unrecorded");
    // Recorded by this process's first acquisition (and released).
    let pool = pool(1).await;
    pglock::advisory(name.as_str())
        .acquire(&pool)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    assert_eq!(registry_row(&observer, &name).await.unwrap().0, name);
    assert!(registry_row(&observer, &unrecorded).await.is_none());

    // Another program, which knows only keys (psql, another language), holds
    // both locks on a connection of its own.
    let other = connect().await;
    let other_pid = pid_of(&other).await;
    for n in [&name, &unrecorded] {
        other
            .execute(
                "SELECT pg_advisory_lock($1)",
                &[&pglock::key_for(n).unwrap()],
            )
            .await
            .unwrap();
        assert_eq!(holders(&observer, n).await, vec![other_pid]);
    }
    let all = pglock::locks(&observer, &LockFilter::all()).await.unwrap();
    let rows = rows_of(&all, named(&name));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].name.as_deref(), Some(name.as_str()));
    assert_eq!(rows[0].pid, Some(other_pid));
    let rows = rows_of(&all, named(&unrecorded));
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].name, None,
        "never acquired by name with the registry on"
    );
}

#[tokio::test]
async fn two_names_on_one_key_are_reported() {
    let observer = registry_on().await;
    let name = unique_name("registry-collision");
    let key = pglock::key_for(&name).unwrap();
    // Construct a collision: another name already recorded for the key.
    let first = format!("{name}-recorded-first");
    observer
        .execute(
            "INSERT INTO public.pglock_names (lock_key, name) VALUES ($1, $2)",
            &[&key, &first],
        )
        .await
        .unwrap();
    let pool = pool(1).await;
    let guard = pglock::advisory(name.as_str())
        .acquire(&pool)
        .await
        .unwrap();
    assert_eq!(
        holders(&observer, &name).await.len(),
        1,
        "the lock is held anyway"
    );
    let (kept, others, _) = registry_row(&observer, &name).await.unwrap();
    assert_eq!(kept, first, "the registry keeps the first name");
    assert_eq!(others, vec![name.clone()]);
    let all = pglock::locks(&observer, &LockFilter::all()).await.unwrap();
    let rows = rows_of(&all, LockKey::Big(key));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].name.as_deref(), Some(first.as_str()));
    assert_eq!(rows[0].other_names, vec![name.clone()]);
    // The explicit call says so, and does not add the name twice.
    assert_eq!(
        pglock::register(&observer, &name).await.unwrap(),
        Some(first)
    );
    assert_eq!(
        registry_row(&observer, &name).await.unwrap().1,
        vec![name.clone()]
    );
    guard.release().await.unwrap();
}

// One thread: statements queued in one poll reach the wire together.
#[tokio::test(flavor = "current_thread")]
async fn the_first_acquisition_records_the_name_in_the_same_round_trip_and_later_ones_write_nothing(
) {
    let observer = registry_on().await;
    let config: tokio_postgres::Config = database_url().await.parse().unwrap();
    let relay = Relay::start(&config).await.expect("TCP");
    let relayed = format!(
        "postgres://{}@127.0.0.1:{}/{}",
        config.get_user().unwrap_or("postgres"),
        relay.config().get_ports()[0],
        config.get_dbname().unwrap_or("postgres"),
    );
    let pool = pool_for(&relayed, 1);
    // Warm the pooled connection's statement cache with another name.
    let warm = pglock::advisory(unique_name("registry-warm").as_str());
    warm.acquire(&pool).await.unwrap().release().await.unwrap();

    let name = unique_name("registry-rt");
    let lock = pglock::advisory(name.as_str()).timeout(Duration::from_secs(5));
    let before = relay.round_trips();
    let guard = lock.acquire(&pool).await.unwrap();
    assert_eq!(relay.round_trips() - before, 1, "the write is pipelined");
    let (_, _, first_seen) = registry_row(&observer, &name).await.expect("recorded");
    guard.release().await.unwrap();
    for _ in 0..3 {
        let before = relay.round_trips();
        let guard = lock.acquire(&pool).await.unwrap();
        assert_eq!(relay.round_trips() - before, 1);
        guard.release().await.unwrap();
    }
    let (_, _, last_seen) = registry_row(&observer, &name).await.unwrap();
    assert_eq!(last_seen, first_seen, "one write per name per process");

    // A `Session` is the caller's connection, maybe inside the caller's
    // transaction: nothing is written there.
    let session = pglock_tests::session().await;
    let unrecorded = unique_name("registry-session");
    let guard = pglock::advisory(unrecorded.as_str())
        .acquire(&session)
        .await
        .unwrap();
    assert_eq!(holders(&observer, &unrecorded).await.len(), 1);
    assert!(registry_row(&observer, &unrecorded).await.is_none());
    guard.release().await.unwrap();
}

#[tokio::test]
async fn a_blocked_or_missing_registry_never_holds_an_acquisition_up() {
    let observer = registry_on().await;
    // A transaction keeps the name's registry row locked.
    let name = unique_name("registry-blocked");
    let key = pglock::key_for(&name).unwrap();
    let mut blocker = connect().await;
    blocker
        .execute(
            "INSERT INTO public.pglock_names (lock_key, name) VALUES ($1, $2)",
            &[&key, &name],
        )
        .await
        .unwrap();
    let tx = blocker.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM public.pglock_names WHERE lock_key = $1 FOR UPDATE",
        &[&key],
    )
    .await
    .unwrap();
    let pool = pool(1).await;
    let started = Instant::now();
    let guard = tokio::time::timeout(
        Duration::from_secs(5),
        pglock::advisory(name.as_str()).acquire(&pool),
    )
    .await
    .expect("the registry write does not wait for the row")
    .unwrap();
    let took = started.elapsed();
    assert_eq!(holders(&observer, &name).await.len(), 1);
    println!("acquired past a locked registry row in {took:?}");
    tx.rollback().await.unwrap();
    guard.release().await.unwrap();

    // A database without the table: the lock is taken all the same.
    let scratch = format!("pglock_registry_{}", std::process::id());
    for statement in ["DROP DATABASE IF EXISTS", "CREATE DATABASE"] {
        observer
            .batch_execute(&format!("{statement} {scratch}"))
            .await
            .unwrap();
    }
    let base = database_url().await;
    let (path, query) = base.split_once('?').unwrap_or((&base, ""));
    let (server, _) = path.rsplit_once('/').expect("a URL with a database");
    let scratch_url = format!(
        "{server}/{scratch}{}{query}",
        if query.is_empty() { "" } else { "?" }
    );
    {
        let scratch_pool = pool_for(&scratch_url, 1);
        let scratch_observer = connect_to(&scratch_url).await;
        let err = pglock::enable_registry(&scratch_observer)
            .await
            .unwrap_err();
        assert!(err.is_misuse(), "{err}");
        assert!(
            pglock::registry_enabled(),
            "a failed check leaves the switch as it was"
        );
        let name = unique_name("registry-missing");
        let guard = pglock::advisory(name.as_str())
            .timeout(Duration::from_secs(5))
            .acquire(&scratch_pool)
            .await
            .unwrap();
        let count: i64 = scratch_observer
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND objid::int8 = ($1::int8 & 4294967295)",
                &[&pglock::key_for(&name).unwrap()],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(count, 1);
        // The listing works there too, by key.
        let listed = pglock::locks(&scratch_observer, &LockFilter::all())
            .await
            .unwrap();
        assert!(listed
            .iter()
            .any(|l| l.key == named(&name) && l.name.is_none()));
        guard.release().await.unwrap();
    }
    observer
        .batch_execute(&format!("DROP DATABASE {scratch} WITH (FORCE)"))
        .await
        .unwrap();
}

#[tokio::test]
async fn prune_deletes_names_unused_for_a_while() {
    let observer = registry_on().await;
    let old = unique_name("registry-old");
    let fresh = unique_name("registry-fresh");
    observer
        .execute(
            "INSERT INTO public.pglock_names (lock_key, name, first_seen, last_seen) \
             VALUES ($1, $2, now() - interval '3 days', now() - interval '3 days')",
            &[&pglock::key_for(&old).unwrap(), &old],
        )
        .await
        .unwrap();
    assert_eq!(pglock::register(&observer, &fresh).await.unwrap(), None);
    let pruned = pglock::prune_registry(&observer, Duration::from_secs(2 * 86_400))
        .await
        .unwrap();
    assert!(pruned >= 1);
    assert!(registry_row(&observer, &old).await.is_none());
    assert!(registry_row(&observer, &fresh).await.is_some());
    // Any duration is accepted; nothing is that old.
    assert_eq!(
        pglock::prune_registry(&observer, Duration::MAX)
            .await
            .unwrap(),
        0
    );
    // Bad input: the empty name is refused, and nothing is written.
    assert!(pglock::register(&observer, "")
        .await
        .unwrap_err()
        .is_invalid_argument());
}

#[tokio::test]
async fn a_cancelled_first_acquisition_leaks_nothing_and_the_name_is_recorded() {
    let observer = registry_on().await;
    let name = unique_name("registry-cancel");
    let holder = connect().await;
    holder
        .execute(
            "SELECT pg_advisory_lock($1)",
            &[&pglock::key_for(&name).unwrap()],
        )
        .await
        .unwrap();
    let pool = pool(1).await;
    // The first acquisition waits behind the holder, its write pipelined behind
    // the wait, and is dropped mid-wait.
    let lock = pglock::advisory(name.as_str());
    let dropped = tokio::time::timeout(Duration::from_millis(300), lock.acquire(&pool)).await;
    assert!(dropped.is_err(), "still waiting when dropped");
    drop(holder);
    assert!(
        eventually(Duration::from_secs(5), || async {
            lock_rows(&observer, &name).await.is_empty()
        })
        .await,
        "no lock left behind"
    );
    // The name is recorded: by the cancelled attempt's write, if it ran, or by
    // this acquisition's (an unanswered write is not counted as done).
    let guard = pglock::advisory(name.as_str())
        .timeout(Duration::from_secs(5))
        .acquire(&pool)
        .await
        .unwrap();
    assert_eq!(registry_row(&observer, &name).await.unwrap().0, name);
    let listed = pglock::locks(&observer, &LockFilter::directory(&name)).await;
    assert!(
        listed.unwrap().is_empty(),
        "a name is not its own directory"
    );
    guard.release().await.unwrap();
}
