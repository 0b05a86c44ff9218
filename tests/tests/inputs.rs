//! Every input either works or is a typed error: nothing panics, nothing is left
//! held, and nothing slips through changed (a label cut short, a lease rounded up).

use std::time::Duration;

use proptest::prelude::*;

use pglock_tests::{connect, lock_rows, pool};

#[tokio::test]
async fn labels_and_leases_that_postgres_would_change_are_refused() {
    let fx = pglock_tests::Fixture::new("inputs").await;
    let pool = pool(1).await;
    let refused = [
        pglock::advisory(fx.name.as_str()).label("nul\0byte"),
        pglock::advisory(fx.name.as_str()).label("x".repeat(10_000)),
        pglock::advisory(fx.name.as_str()).label("wörker-☃"),
        pglock::advisory(fx.name.as_str()).lease(Duration::from_nanos(1)),
        pglock::advisory(fx.name.as_str()).lease(Duration::from_millis(2)),
        pglock::advisory(fx.name.as_str()).check_every(Duration::MAX),
    ];
    for lock in refused {
        let err = lock.acquire(&pool).await.unwrap_err();
        assert!(err.is_invalid_argument(), "{err}");
        assert!(fx.rows().await.is_empty(), "nothing may be held");
    }
    // Fencing tokens need one holder at a time.
    let err = pglock::advisory(fx.name.as_str())
        .shared()
        .fencing()
        .acquire(&pool)
        .await
        .unwrap_err();
    assert!(err.is_misuse(), "{err}");
    assert!(fx.rows().await.is_empty());
    // The pooled connection is clean and usable.
    let client = pool.get().await.unwrap();
    let app: String = client
        .query_one("SHOW application_name", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(app, "pglock-tests");
    // A label at the limit goes through intact.
    drop(client);
    let label = "w".repeat(63);
    let guard = pglock::advisory(fx.name.as_str())
        .label(label.as_str())
        .acquire(&pool)
        .await
        .unwrap();
    let status = pglock::status(&fx.observer, fx.name.as_str())
        .await
        .unwrap();
    assert_eq!(
        status.holders[0].application_name.as_deref(),
        Some(label.as_str())
    );
    guard.release().await.unwrap();
}

fn any_id() -> impl Strategy<Value = pglock::LockId> {
    prop_oneof![
        ".{0,40}".prop_map(|s: String| pglock::LockId::name(format!("pglock-test:prop:{s}"))),
        Just(pglock::LockId::name("")),
        any::<i64>().prop_map(|k| pglock::LockId::key(pglock::LockKey::Big(k))),
        any::<(i32, i32)>().prop_map(|(a, b)| pglock::LockId::key(pglock::LockKey::Pair(a, b))),
    ]
}

fn any_duration() -> impl Strategy<Value = Option<Duration>> {
    prop_oneof![
        Just(None),
        Just(Some(Duration::ZERO)),
        Just(Some(Duration::MAX)),
        (0u64..3_000_000).prop_map(|us| Some(Duration::from_micros(us))),
        any::<u64>().prop_map(|s| Some(Duration::from_secs(s))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Names, raw keys, timeouts, leases, labels, check intervals and safety margins: each combination either
    /// takes the lock (and releases it) or is a typed error; no panic, nothing
    /// left held.
    #[test]
    fn every_input_works_or_is_a_typed_error(
        id in any_id(),
        timeout in any_duration(),
        lease in any_duration(),
        label in proptest::option::of(".{0,80}"),
        check in any_duration(),
        margin in any_duration(),
        shared in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let pool = pool(1).await;
            let observer = connect().await;
            let mut lock = pglock::advisory(id.clone());
            if shared { lock = lock.shared(); }
            // Short waits only: nobody else holds these names.
            if let Some(t) = timeout { lock = lock.timeout(t.min(Duration::from_secs(3600 * 24 * 365))); }
            if let Some(l) = lease { lock = lock.lease(l); }
            if let Some(l) = &label { lock = lock.label(l.as_str()); }
            if let Some(c) = check { lock = lock.check_every(c); }
            if let Some(m) = margin { lock = lock.safety_margin(m); }
            match lock.try_acquire(&pool).await {
                Ok(Some(guard)) => guard.release().await.unwrap(),
                Ok(None) => panic!("nobody holds {id}"),
                Err(e) => assert!(
                    e.is_invalid_argument() || e.is_misuse(),
                    "an unexpected error for {id}: {e:?}"
                ),
            }
            if let Some(name) = id.lock_name().filter(|n| !n.is_empty()) {
                assert!(lock_rows(&observer, name).await.is_empty());
            }
            let client = pool.get().await.unwrap();
            let held: i64 = client
                .query_one("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(held, 0);
        });
    }
}
