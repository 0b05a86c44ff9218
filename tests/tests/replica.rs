//! Replicas and failover, against a real primary and a real streaming hot standby
//! started by the harness ([`Replica`]): pglock refuses to lock on a standby, finds
//! the primary through a multi-host URL, notices every lock lost in a failover,
//! and keeps fencing tokens increasing across a promotion even when the newest
//! increments never reached the standby.
//!
//! `cargo test -p pglock-tests --test replica -- --nocapture` prints the `FIGURE`
//! lines quoted in the README.

use std::time::{Duration, Instant};

use pglock::ErrorKind;
use pglock_tests::{
    advisory_lock_count, connect_to, holders, in_recovery, pid_of, pool_for, unique_name, Replica,
};

fn figure(what: &str, value: impl std::fmt::Display) {
    println!("FIGURE {what}: {value}");
}

/// A primary and its standby, or `None` (with a message) on a machine without
/// the PostgreSQL server binaries.
async fn replica() -> Option<Replica> {
    if !Replica::available() {
        println!(
            "SKIPPED: no PostgreSQL server binaries with pg_basebackup (pg_config --bindir); \
             the replica tests need them to start a primary and a standby"
        );
        return None;
    }
    Some(
        Replica::start()
            .await
            .expect("a primary and a streaming standby"),
    )
}

/// The bare counter `public.pglock_fencing` holds for a bigint key.
async fn counter(client: &tokio_postgres::Client, key: i64) -> i64 {
    client
        .query_one(
            "SELECT token FROM public.pglock_fencing WHERE key_space = 1 AND lock_key = $1",
            &[&key],
        )
        .await
        .expect("a fencing row")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_is_refused_where_its_own_lock_function_would_grant() {
    let Some(replica) = replica().await else {
        return;
    };
    let primary = connect_to(&replica.primary.url()).await;
    let mut standby = connect_to(&replica.standby.url()).await;
    assert!(in_recovery(&standby).await && !in_recovery(&primary).await);
    let name = unique_name("standby");
    let key = pglock::key_for(&name).unwrap();

    // The danger: the primary holds the key, and the standby grants it anyway.
    primary
        .execute("SELECT pg_advisory_lock($1)", &[&key])
        .await
        .unwrap();
    let granted: bool = standby
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .await
        .unwrap()
        .get(0);
    assert!(
        granted,
        "the standby should grant what only the primary holds"
    );
    standby
        .execute("SELECT pg_advisory_unlock_all()", &[])
        .await
        .unwrap();

    // pglock pointed at the standby: every way in is refused, and nothing is held.
    let pool = pool_for(&replica.standby.url(), 2);
    let lock = pglock::advisory(name.as_str());
    let started = Instant::now();
    let err = lock.acquire(&pool).await.unwrap_err();
    let refusal = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Standby, "{err}");
    assert!(err.is_standby());
    assert!(
        err.to_string().contains("target_session_attrs=read-write"),
        "the error says what to do: {err}"
    );
    assert_eq!(err.lock().and_then(|l| l.lock_name()), Some(name.as_str()));
    assert!(lock.try_acquire(&pool).await.unwrap_err().is_standby());
    let timed = lock.clone().timeout(Duration::from_secs(1));
    assert!(timed.acquire(&pool).await.unwrap_err().is_standby());
    assert!(lock
        .clone()
        .shared()
        .acquire(&pool)
        .await
        .unwrap_err()
        .is_standby());
    let labelled = lock
        .clone()
        .label("on-a-standby")
        .lease(Duration::from_secs(5));
    assert!(labelled.acquire(&pool).await.unwrap_err().is_standby());
    assert!(lock.run(&pool, async {}).await.unwrap_err().is_standby());
    // The pooled connections are clean and usable: settings put back.
    let object = pool.get().await.unwrap();
    let row = object
        .query_one(
            "SELECT current_setting('application_name'), current_setting('idle_session_timeout')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("pglock-tests".to_string(), "0".to_string())
    );
    drop(object);

    // A session connected to the standby, and a lock on a lent connection.
    let session = pglock::Session::connect(&replica.standby.url())
        .await
        .expect("connecting to a standby is fine");
    assert!(lock.acquire(&session).await.unwrap_err().is_standby());
    let mut lent = connect_to(&replica.standby.url()).await;
    assert!(lock.acquire_on(&mut lent).await.unwrap_err().is_standby());

    // Transaction locks: a read-only transaction on a standby could take one.
    let tx = standby.transaction().await.unwrap();
    let err = lock.clone().xact().acquire_in(&tx).await.unwrap_err();
    assert!(err.is_standby(), "{err}");
    assert!(lock
        .clone()
        .xact()
        .try_acquire_in(&tx)
        .await
        .unwrap_err()
        .is_standby());
    let raw: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&key])
        .await
        .expect("the transaction is still usable")
        .get(0);
    assert!(
        raw,
        "a raw transaction lock would have been granted on the standby"
    );
    tx.rollback().await.unwrap();

    let observer = connect_to(&replica.standby.url()).await;
    assert_eq!(
        advisory_lock_count(&observer).await,
        0,
        "nothing held on the standby"
    );
    assert_eq!(holders(&primary, &name).await, vec![pid_of(&primary).await]);

    // The same pool and session code, given both hosts and read-write, find the
    // primary (the standby is listed first).
    let url = replica.multi_host_url();
    let pool = pool_for(&url, 2);
    let guard = lock
        .clone()
        .timeout(Duration::from_millis(50))
        .acquire(&pool)
        .await
        .unwrap_err();
    assert!(guard.is_not_acquired(), "busy on the primary: {guard}");
    primary
        .execute("SELECT pg_advisory_unlock_all()", &[])
        .await
        .unwrap();
    let guard = lock.acquire(&pool).await.unwrap();
    assert_eq!(
        holders(&primary, &name).await,
        vec![pid_of(guard.client()).await]
    );
    guard.release().await.unwrap();
    let session = pglock::Session::connect(&url).await.unwrap();
    let guard = lock.acquire(&session).await.unwrap();
    assert_eq!(
        holders(&primary, &name).await,
        vec![pid_of(session.client()).await]
    );
    guard.release().await.unwrap();
    assert!(holders(&primary, &name).await.is_empty());
    figure(
        "pointed at a standby: refused (is_standby), locks held there",
        format!("0, refusal took {} ms", refusal.as_millis()),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_loses_every_guard_and_the_pool_finds_the_promoted_standby() {
    let Some(replica) = replica().await else {
        return;
    };
    let old_primary = connect_to(&replica.primary.url()).await;
    pglock::install_fencing(&old_primary).await.unwrap();
    let pool = pool_for(&replica.multi_host_url(), 6);
    let fenced = unique_name("fenced");
    let fenced_key = pglock::key_for(&fenced).unwrap();

    // Tokens the standby receives …
    let mut last = 0;
    fn issue(last: &mut i64, token: i64) {
        assert!(token > *last, "token {token} is not above {last}");
        *last = token;
    }
    for _ in 0..3 {
        let guard = pglock::advisory(fenced.as_str())
            .fencing()
            .acquire(&pool)
            .await
            .unwrap();
        issue(&mut last, guard.fencing_token().unwrap());
        guard.release().await.unwrap();
    }
    assert!(
        replica.caught_up().await,
        "the standby replays the first tokens"
    );

    // … locks held on the primary …
    let names: Vec<String> = (0..3).map(|i| unique_name(&format!("held-{i}"))).collect();
    let mut guards = Vec::new();
    for name in &names {
        let guard = pglock::advisory(name.as_str())
            .acquire(&pool)
            .await
            .unwrap();
        assert_eq!(
            holders(&old_primary, name).await,
            vec![pid_of(guard.client()).await]
        );
        guards.push(guard);
    }

    // … and the newest tokens, which the standby never gets: its replication is cut.
    replica.standby.stop().unwrap();
    for _ in 0..5 {
        let guard = pglock::advisory(fenced.as_str())
            .fencing()
            .acquire(&pool)
            .await
            .unwrap();
        issue(&mut last, guard.fencing_token().unwrap());
        guard.release().await.unwrap();
    }
    let counter_before = counter(&old_primary, fenced_key).await;
    drop(old_primary);

    // The primary goes away: every guard notices.
    let watchers: Vec<_> = guards
        .into_iter()
        .map(|guard| {
            tokio::spawn(async move {
                let err = guard.lost().await;
                (Instant::now(), err, guard)
            })
        })
        .collect();
    let stop_began = Instant::now();
    tokio::task::block_in_place(|| replica.primary.stop()).unwrap();
    let stopped = stop_began.elapsed();
    let mut slowest = Duration::ZERO;
    for watcher in watchers {
        let (at, err, guard) = tokio::time::timeout(Duration::from_secs(5), watcher)
            .await
            .expect("every guard notices the loss")
            .unwrap();
        assert!(err.is_lost(), "{err}");
        slowest = slowest.max(at - stop_began);
        assert!(guard.release().await.unwrap_err().is_lost());
    }

    // The standby comes back without the newest increments, and is promoted.
    replica.start_standby().unwrap();
    let standby = connect_to(&replica.standby.url()).await;
    assert!(in_recovery(&standby).await);
    // A session on the standby is refused now, and accepted once it is promoted
    // (its tokens then on the new timeline too).
    let promoted_later = pglock::Session::connect(&replica.standby.url())
        .await
        .unwrap();
    let lock = pglock::advisory(names[0].as_str()).fencing();
    assert!(lock
        .acquire(&promoted_later)
        .await
        .unwrap_err()
        .is_standby());
    let counter_on_standby = counter(&standby, fenced_key).await;
    assert!(
        counter_on_standby < counter_before,
        "the standby must lack the newest increments ({counter_on_standby} vs {counter_before})"
    );
    let promote_began = Instant::now();
    replica.promote().expect("pg_ctl promote");
    // The same pool, with the same URL, gets the new primary as soon as it takes
    // writes; until then connecting is refused (the pool error says why).
    let guard = loop {
        match pglock::advisory(fenced.as_str())
            .fencing()
            .timeout(Duration::from_secs(1))
            .acquire(&pool)
            .await
        {
            Ok(guard) => break guard,
            Err(e) if e.is_pool() && promote_began.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(e) => panic!("no lock on the promoted standby: {e}"),
        }
    };
    let failover = promote_began.elapsed();
    let new_primary = connect_to(&replica.standby.url()).await;
    assert!(!in_recovery(&new_primary).await);
    let token = guard.fencing_token().unwrap();
    let before = last;
    issue(&mut last, token);
    let (old_timeline, old_counter) = pglock::fencing_token_parts(before);
    let (new_timeline, new_counter) = pglock::fencing_token_parts(token);
    assert!(new_timeline > old_timeline);
    assert_eq!(new_counter, counter_on_standby + 1);
    assert!(
        new_counter <= old_counter,
        "the bare counter went back: the timeline is what keeps the token above"
    );
    assert_eq!(counter(&new_primary, fenced_key).await, new_counter);

    // New acquisitions work, and the new primary holds only what guards own.
    let mut held = vec![guard];
    for name in &names {
        held.push(
            pglock::advisory(name.as_str())
                .acquire(&pool)
                .await
                .unwrap(),
        );
    }
    assert_eq!(advisory_lock_count(&new_primary).await, 4);
    for guard in &held {
        let pid = pid_of(guard.client()).await;
        let mine: i64 = new_primary
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1 AND granted",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(mine, 1);
    }
    for guard in held {
        guard.release().await.unwrap();
    }
    assert_eq!(advisory_lock_count(&new_primary).await, 0);
    let guard = lock.acquire(&promoted_later).await.unwrap();
    assert_eq!(
        pglock::fencing_token_parts(guard.fencing_token().unwrap()),
        (new_timeline, 1)
    );
    assert_eq!(
        holders(&new_primary, &names[0]).await,
        vec![pid_of(promoted_later.client()).await]
    );
    guard.release().await.unwrap();
    assert_eq!(advisory_lock_count(&new_primary).await, 0);

    figure(
        "failover: 3 guards report loss after the primary's stop began (stop took)",
        format!("{} ms ({} ms)", slowest.as_millis(), stopped.as_millis()),
    );
    figure(
        "failover: first lock on the promoted standby through the multi-host pool, after pg_ctl promote",
        format!("{} ms", failover.as_millis()),
    );
    figure(
        "fencing across failover: last token before → first after (timeline, counter)",
        format!(
            "{before} ({old_timeline}, {old_counter}) → {token} ({new_timeline}, {new_counter}); \
             the standby lacked {} increments",
            counter_before - counter_on_standby
        ),
    );
}
