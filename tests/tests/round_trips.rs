//! One round trip per attempt, counted on the wire: every attempt — try, blocking, finite
//! timeout — costs one round trip, and so does a release, with no SET/RESET
//! ping-pong and no polling. Connections go through a relay that counts round
//! trips (statements pipelined together count once); statements are warmed first,
//! since preparing them is a one-time cost per connection.

use std::time::Duration;

use pglock_tests::{connect, eventually, holders, unique_name, Relay};

async fn relay() -> Relay {
    let config: tokio_postgres::Config = pglock_tests::database_url().await.parse().unwrap();
    Relay::start(&config)
        .await
        .expect("the test server is reached over TCP")
}

/// Round trips that `work` costs.
async fn count<F: std::future::Future>(relay: &Relay, work: F) -> (u64, F::Output) {
    let before = relay.round_trips();
    let output = work.await;
    (relay.round_trips() - before, output)
}

async fn session_through(relay: &Relay) -> pglock::Session {
    let (client, conn) = relay.config().connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    pglock::Session::new(client)
}

// One thread: statements queued in one poll reach the wire together, as they do
// whenever the connection task is not running at that very moment elsewhere.
#[tokio::test(flavor = "current_thread")]
async fn session_attempts_and_releases_are_one_round_trip_each() {
    let relay = relay().await;
    let session = session_through(&relay).await;
    let name = unique_name("rt-session");
    let forever = pglock::advisory(name.as_str());
    let finite = pglock::advisory(name.as_str()).timeout(Duration::from_secs(2));
    let shared = pglock::advisory(name.as_str())
        .shared()
        .timeout(Duration::from_secs(2));
    // Warm the statement cache.
    for lock in [&forever, &finite, &shared] {
        lock.acquire(&session)
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
        lock.try_acquire(&session)
            .await
            .unwrap()
            .unwrap()
            .release()
            .await
            .unwrap();
    }
    for (what, lock) in [
        ("no timeout", &forever),
        ("finite timeout", &finite),
        ("shared", &shared),
    ] {
        let (trips, guard) = count(&relay, lock.acquire(&session)).await;
        assert_eq!(trips, 1, "acquire ({what})");
        let (trips, released) = count(&relay, guard.unwrap().release()).await;
        assert_eq!(trips, 1, "release ({what})");
        released.unwrap();
        let (trips, guard) = count(&relay, lock.try_acquire(&session)).await;
        assert_eq!(trips, 1, "try_acquire ({what})");
        guard.unwrap().unwrap().release().await.unwrap();
    }
    // A busy try is one round trip too (`try_acquire` asks for no holder).
    let observer = connect().await;
    let other = pglock_tests::session().await;
    let held = forever.acquire(&other).await.unwrap();
    let zero = pglock::advisory(name.as_str()).timeout(Duration::ZERO);
    zero.try_acquire(&session).await.unwrap();
    let (trips, busy) = count(&relay, zero.try_acquire(&session)).await;
    assert_eq!(trips, 1, "busy try");
    assert!(busy.unwrap().is_none());
    held.release().await.unwrap();
    // A dropped guard's release is one round trip as well.
    let guard = forever.acquire(&session).await.unwrap();
    let (trips, ()) = count(&relay, async {
        drop(guard);
        assert!(
            eventually(Duration::from_secs(5), || async {
                holders(&observer, &name).await.is_empty()
            })
            .await
        );
    })
    .await;
    assert_eq!(trips, 1, "release on drop");
}

// One thread: statements queued in one poll reach the wire together, as they do
// whenever the connection task is not running at that very moment elsewhere.
#[tokio::test(flavor = "current_thread")]
async fn pooled_transaction_and_fencing_attempts_are_one_round_trip() {
    let relay = relay().await;
    let pool = pglock_tests::pool_for(&relay_url(&relay), 1);
    let name = unique_name("rt-pool");
    let lock = pglock::advisory(name.as_str()).timeout(Duration::from_secs(2));
    lock.acquire(&pool).await.unwrap().release().await.unwrap();
    let (trips, guard) = count(&relay, lock.acquire(&pool)).await;
    assert_eq!(trips, 1, "pooled acquire");
    let (trips, _) = count(&relay, guard.unwrap().release()).await;
    assert_eq!(trips, 1, "pooled release");

    pglock::install_fencing(&connect().await).await.unwrap();
    let fenced = lock.clone().fencing();
    fenced
        .acquire(&pool)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    let (trips, guard) = count(&relay, fenced.acquire(&pool)).await;
    assert_eq!(trips, 1, "acquire with a fencing token");
    assert!(guard.unwrap().fencing_token().is_some());

    let mut conn = pool.get().await.unwrap();
    let xact = pglock::advisory(unique_name("rt-xact").as_str())
        .timeout(Duration::from_secs(2))
        .xact();
    let tx = conn.transaction().await.unwrap();
    xact.acquire_in(&tx).await.unwrap();
    tx.rollback().await.unwrap();
    let tx = conn.transaction().await.unwrap();
    let (trips, locked) = count(&relay, xact.acquire_in(&tx)).await;
    assert_eq!(trips, 1, "transaction lock, free");
    locked.unwrap();
    tx.rollback().await.unwrap();
}

fn relay_url(relay: &Relay) -> String {
    let c = relay.config();
    let port = c.get_ports()[0];
    let user = c.get_user().unwrap_or("postgres");
    let db = c.get_dbname().unwrap_or("postgres");
    match c.get_password() {
        Some(p) => format!(
            "postgres://{user}:{}@127.0.0.1:{port}/{db}",
            String::from_utf8_lossy(p)
        ),
        None => format!("postgres://{user}@127.0.0.1:{port}/{db}"),
    }
}
