//! Production-safety features of a held lock: liveness checks and
//! loss notification, leases with a server-enforced time-to-live, fencing tokens,
//! acquisition ids and holder labels, and the dead-peer settings of lock
//! connections.

use std::collections::HashSet;
use std::time::Duration;

use pglock_tests::{connect, eventually, holders, lock_rows, pid_of, pool, session, unique_name};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn is_held_follows_the_server() {
    let pool = pool(2).await;
    let observer = connect().await;
    let name = unique_name("is-held");
    let guard = pglock::advisory(name.as_str())
        .acquire(&pool)
        .await
        .unwrap();
    assert!(guard.is_held().await.unwrap());
    pglock::release_all(guard.client()).await.unwrap();
    assert!(holders(&observer, &name).await.is_empty());
    assert!(!guard.is_held().await.unwrap());
    assert!(guard.release().await.unwrap_err().is_lost());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_fires_when_the_backend_is_terminated_and_not_before() {
    let pool = pool(2).await;
    let observer = connect().await;
    let name = unique_name("lost-terminate");
    let guard = pglock::advisory(name.as_str())
        .check_every(Duration::from_millis(50))
        .acquire(&pool)
        .await
        .unwrap();
    // While held, `lost` does not complete.
    let early = tokio::time::timeout(Duration::from_millis(300), guard.lost()).await;
    assert!(early.is_err(), "lost() completed while the lock was held");
    let pid = pid_of(guard.client()).await;
    observer
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let lost = tokio::time::timeout(Duration::from_secs(5), guard.lost())
        .await
        .expect("loss noticed");
    assert!(lost.is_lost(), "{lost}");
    assert!(lost.to_string().contains(&name));
    assert!(guard.release().await.unwrap_err().is_lost());
    assert!(holders(&observer, &name).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_fires_on_unlock_all_at_the_check_cadence() {
    let session = session().await;
    let name = unique_name("lost-unlock-all");
    let guard = pglock::advisory(name.as_str())
        .check_every(Duration::from_millis(50))
        .acquire(&session)
        .await
        .unwrap();
    pglock::release_all(session.client()).await.unwrap();
    let lost = tokio::time::timeout(Duration::from_secs(5), guard.lost())
        .await
        .expect("noticed");
    assert!(lost.is_lost());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expires_on_the_server_when_not_renewed() {
    let pool = pool(2).await;
    let observer = connect().await;
    let name = unique_name("lease-expiry");
    let guard = pglock::advisory(name.as_str())
        .lease(Duration::from_millis(500))
        .acquire(&pool)
        .await
        .unwrap();
    assert_eq!(guard.lease_ttl(), Some(Duration::from_millis(500)));
    assert_eq!(holders(&observer, &name).await.len(), 1);
    // The holder stays silent: the server ends its session and frees the lock.
    assert!(
        eventually(Duration::from_secs(5), || async {
            holders(&observer, &name).await.is_empty()
        })
        .await
    );
    // Another process takes it over.
    let other = pool_of_its_own().await;
    let waiter = pglock::advisory(name.as_str())
        .timeout(Duration::from_secs(5))
        .acquire(&other)
        .await
        .unwrap();
    assert!(guard.release().await.unwrap_err().is_lost());
    waiter.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_a_lease_for_loss_does_not_renew_it() {
    let pool = pool(2).await;
    let observer = connect().await;
    let name = unique_name("lease-watched");
    let guard = pglock::advisory(name.as_str())
        .lease(Duration::from_millis(400))
        .check_every(Duration::from_millis(50))
        .acquire(&pool)
        .await
        .unwrap();
    // The holder hangs but watches for loss: the lease must still expire.
    let lost = tokio::time::timeout(Duration::from_secs(5), guard.lost())
        .await
        .expect("the unrenewed lease expired although lost() was watching");
    assert!(lost.is_lost(), "{lost}");
    assert!(
        eventually(Duration::from_secs(5), || async {
            holders(&observer, &name).await.is_empty()
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_and_automatic_renewal_keep_a_lease_alive() {
    let pool = pool(3).await;
    let observer = connect().await;
    let manual = unique_name("lease-manual");
    let auto = unique_name("lease-auto");
    let ttl = Duration::from_millis(400);
    let m = pglock::advisory(manual.as_str())
        .lease(ttl)
        .acquire(&pool)
        .await
        .unwrap();
    let a = pglock::advisory(auto.as_str())
        .lease(ttl)
        .auto_renew()
        .acquire(&pool)
        .await
        .unwrap();
    for _ in 0..8 {
        tokio::time::sleep(ttl / 4).await;
        m.renew(ttl).await.unwrap();
    }
    // Eight renewals spanned two time-to-lives: both are still held.
    assert_eq!(holders(&observer, &manual).await.len(), 1);
    assert_eq!(holders(&observer, &auto).await.len(), 1);
    m.renew(Duration::from_secs(30)).await.unwrap();
    assert_eq!(m.lease_ttl(), Some(Duration::from_secs(30)));
    m.release().await.unwrap();
    a.release().await.unwrap();
    assert!(holders(&observer, &manual).await.is_empty());
    assert!(holders(&observer, &auto).await.is_empty());
}

/// `SHOW what` on `client`.
async fn show(client: &tokio_postgres::Client, what: &str) -> String {
    let row = client
        .query_one(&format!("SHOW {what}"), &[])
        .await
        .unwrap();
    row.get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_settings_never_reach_the_pool_or_outlive_a_session_lock() {
    // Through a pool, released or dropped: the connection comes back as it was.
    let pool = pool(1).await;
    let name = unique_name("lease-pool");
    let first_pid = pid_of(&pool.get().await.unwrap()).await;
    for release in [true, false] {
        let guard = pglock::advisory(name.as_str())
            .lease(Duration::from_secs(30))
            .label("leased-pooled")
            .acquire(&pool)
            .await
            .unwrap();
        assert_eq!(
            pid_of(guard.client()).await,
            first_pid,
            "the pooled connection was used"
        );
        assert_eq!(show(guard.client(), "idle_session_timeout").await, "30s");
        assert_eq!(
            show(guard.client(), "application_name").await,
            "leased-pooled"
        );
        if release {
            guard.release().await.unwrap();
        } else {
            drop(guard);
        }
        let back = pool.get().await.unwrap();
        assert_eq!(
            pid_of(&back).await,
            first_pid,
            "the same connection went back to the pool"
        );
        assert_eq!(show(&back, "idle_session_timeout").await, "0");
        assert_eq!(show(&back, "application_name").await, "pglock-tests");
    }
    // An automatically renewed lease needs a connection of its own: it leaves the
    // pool for good.
    let guard = pglock::advisory(name.as_str())
        .lease(Duration::from_secs(30))
        .auto_renew()
        .acquire(&pool)
        .await
        .unwrap();
    assert_eq!(pid_of(guard.client()).await, first_pid);
    let other = pool.get().await.unwrap();
    assert_ne!(
        pid_of(&other).await,
        first_pid,
        "the renewed lease's connection left the pool"
    );
    assert_eq!(show(&other, "idle_session_timeout").await, "0");
    drop(other);
    guard.release().await.unwrap();
    // A session is shared by its guards: per-guard settings are refused there,
    // and nothing changes.
    let session = session().await;
    let before: String = session
        .client()
        .query_one("SHOW idle_session_timeout", &[])
        .await
        .unwrap()
        .get(0);
    let err = pglock::advisory(name.as_str())
        .lease(Duration::from_secs(30))
        .label("leased-by-test")
        .acquire(&session)
        .await
        .unwrap_err();
    assert!(err.is_misuse(), "{err}");
    let after: String = session
        .client()
        .query_one("SHOW idle_session_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(after, before);
    let app: String = session
        .client()
        .query_one("SHOW application_name", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(app, "pglock-tests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lease_is_an_invalid_argument() {
    let pool = pool(1).await;
    let err = pglock::advisory(unique_name("lease-zero").as_str())
        .lease(Duration::ZERO)
        .acquire(&pool)
        .await
        .unwrap_err();
    assert!(err.is_invalid_argument(), "{err}");
    let guard = pool.get().await.unwrap();
    assert_eq!(
        pglock_tests::advisory_locks_of(&connect().await, pid_of(&guard).await).await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_tokens_strictly_increase() {
    let pool = pool(2).await;
    let observer = connect().await;
    pglock::install_fencing(&observer).await.unwrap();
    pglock::install_fencing(&observer).await.unwrap(); // idempotent
    let name = unique_name("fencing");
    let mut last = 0;
    for _ in 0..5 {
        let guard = pglock::advisory(name.as_str())
            .fencing()
            .acquire(&pool)
            .await
            .unwrap();
        let token = guard.fencing_token().expect("a token");
        assert!(token > last, "{token} after {last}");
        last = token;
        guard.release().await.unwrap();
    }
    // Failed attempts (a try, a timeout) issue no token at all.
    let holder = pglock::advisory(name.as_str())
        .fencing()
        .acquire(&pool)
        .await
        .unwrap();
    // From another process, so that the attempts reach the server.
    let other = pool_of_its_own().await;
    let busy = pglock::advisory(name.as_str())
        .fencing()
        .try_acquire(&other)
        .await
        .unwrap();
    assert!(busy.is_none());
    let timed_out = pglock::advisory(name.as_str())
        .fencing()
        .timeout(Duration::from_millis(50))
        .acquire(&other)
        .await
        .unwrap_err();
    assert!(timed_out.is_not_acquired());
    let held_token = holder.fencing_token().unwrap();
    holder.release().await.unwrap();
    let next = pglock::advisory(name.as_str())
        .fencing()
        .acquire(&pool)
        .await
        .unwrap();
    assert_eq!(next.fencing_token().unwrap(), held_token + 1);
    // A lock taken without fencing has no token.
    let plain = pglock::advisory(unique_name("plain").as_str())
        .acquire(&pool)
        .await
        .unwrap();
    assert_eq!(plain.fencing_token(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_without_its_table_is_a_clear_error_and_holds_nothing() {
    let owner = connect().await;
    // A database of our own, without the table (its place is fixed:
    // public.pglock_fencing, whatever the search path).
    let db = format!("pglock_nofence_{}", std::process::id());
    owner
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
        .await
        .unwrap();
    owner
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    let url = pglock_tests::database_url().await;
    let mut config: tokio_postgres::Config = url.parse().unwrap();
    config.dbname(&db);
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    let observer = {
        let (c, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        c
    };
    tokio::spawn(conn);
    let session = pglock::Session::new(client);
    let name = unique_name("fencing-missing");
    let err = pglock::advisory(name.as_str())
        .fencing()
        .acquire(&session)
        .await
        .unwrap_err();
    assert!(err.is_misuse(), "{err:?}");
    assert!(err.to_string().contains("install_fencing"), "{err}");
    assert!(lock_rows(&observer, &name).await.is_empty());
    drop((session, observer));
    owner
        .batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquisitions_have_unique_ids_and_labels_show_in_listings() {
    let pool = pool(2).await;
    let observer = connect().await;
    let name = unique_name("label");
    let mut ids = HashSet::new();
    for _ in 0..50 {
        let g = pglock::advisory(name.as_str())
            .acquire(&pool)
            .await
            .unwrap();
        assert!(ids.insert(g.acquisition_id()));
    }
    let guard = pglock::advisory(name.as_str())
        .label("invoice-worker-7")
        .acquire(&pool)
        .await
        .unwrap();
    assert_eq!(guard.label(), Some("invoice-worker-7"));
    let status = pglock::status(&observer, name.as_str()).await.unwrap();
    assert_eq!(
        status.holders[0].application_name.as_deref(),
        Some("invoice-worker-7")
    );
    // Another process (a pool of its own) is told who holds it.
    let other = pool_of_its_own().await;
    let err = pglock::advisory(name.as_str())
        .timeout(Duration::ZERO)
        .acquire(&other)
        .await
        .unwrap_err();
    assert_eq!(err.holder().unwrap().application_name, "invoice-worker-7");
    guard.release().await.unwrap();
    // The label was reset before the connection went back: none in the pool has it.
    let (a, b) = (pool.get().await.unwrap(), pool.get().await.unwrap());
    for c in [&a, &b] {
        let app: String = c
            .query_one("SHOW application_name", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(app, "pglock-tests");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_connections_get_dead_peer_settings() {
    let session = pglock::Session::connect(&pglock_tests::database_url().await)
        .await
        .unwrap();
    let row = session
        .client()
        .query_one(
            "SELECT current_setting('tcp_keepalives_idle'), current_setting('tcp_keepalives_interval'), \
             current_setting('tcp_keepalives_count'), current_setting('tcp_user_timeout')",
            &[],
        )
        .await
        .unwrap();
    let values: Vec<String> = (0..4).map(|i| row.get(i)).collect();
    assert_eq!(values, ["10", "5", "3", "25000"]);
    let mut config: tokio_postgres::Config =
        "host=localhost options='-c work_mem=8MB'".parse().unwrap();
    pglock::configure_keepalives(&mut config);
    let options = config.get_options().unwrap();
    assert!(options.starts_with("-c work_mem=8MB"), "{options}");
    assert!(options.contains("tcp_keepalives_idle=10"), "{options}");
}

/// A pool standing for another process.
async fn pool_of_its_own() -> deadpool_postgres::Pool {
    pool(1).await
}
