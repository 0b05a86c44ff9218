//! Metrics (feature `metrics`): acquisitions by outcome, wait and hold times,
//! locks held, losses — read back through a Prometheus exporter.

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use pglock_tests::Fixture;

/// The value of `metric` (a full line prefix, labels included) in `text`.
fn value(text: &str, metric: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(metric))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquisitions_holds_and_losses_are_counted() {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder of this test binary");
    let fx = Fixture::new("metrics").await;
    let pool = pglock_tests::pool(2).await;
    let other = pglock_tests::pool(1).await;

    let guard = pglock::advisory(fx.name.as_str())
        .acquire(&pool)
        .await
        .unwrap();
    let text = handle.render();
    assert_eq!(value(&text, "pglock_locks_held"), 1.0, "{text}");
    // Busy for another source.
    assert!(pglock::advisory(fx.name.as_str())
        .try_acquire(&other)
        .await
        .unwrap()
        .is_none());
    tokio::time::sleep(Duration::from_millis(20)).await;
    guard.release().await.unwrap();
    // An error: an invalid name.
    assert!(pglock::advisory("").acquire(&pool).await.is_err());
    // A loss: the holder's backend is terminated.
    let lost = pglock::advisory(fx.name.as_str())
        .acquire(&pool)
        .await
        .unwrap();
    let pid = lost.backend_pid().unwrap();
    fx.observer
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    assert!(lost.release().await.unwrap_err().is_lost());

    let text = handle.render();
    let acquired = r#"pglock_acquisitions_total{mode="exclusive",outcome="acquired"}"#;
    let busy = r#"pglock_acquisitions_total{mode="exclusive",outcome="busy"}"#;
    let error = r#"pglock_acquisitions_total{mode="exclusive",outcome="error"}"#;
    assert_eq!(value(&text, acquired), 2.0, "{text}");
    assert_eq!(value(&text, busy), 1.0, "{text}");
    assert_eq!(value(&text, error), 1.0, "{text}");
    assert_eq!(value(&text, "pglock_locks_held"), 0.0, "{text}");
    assert!(value(&text, "pglock_losses_total") >= 1.0, "{text}");
    assert!(
        value(&text, r#"pglock_hold_seconds_count{mode="exclusive"}"#) >= 2.0,
        "{text}"
    );
    assert!(text.contains("pglock_wait_seconds"), "{text}");
}
