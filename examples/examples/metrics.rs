//! pglock's metrics (feature `metrics`) exposed as Prometheus text: install an
//! exporter's recorder once, take some locks, and render what a scrape would see.
//! A service would serve `handle.render()` on its `/metrics` endpoint, or use the
//! exporter's own HTTP listener.
//!
//! `cargo run -p pglock-examples --example metrics`

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let handle = PrometheusBuilder::new().install_recorder()?;
    let pool = pglock_examples::pool("pglock-metrics-example", 2);
    pglock_examples::check_server(&pool).await;
    let name = format!("metrics-example:{}", std::process::id());
    for _ in 0..3 {
        let guard = pglock::advisory(name.as_str()).acquire(&pool).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
        guard.release().await?;
    }
    let busy = pglock::advisory(name.as_str()).acquire(&pool).await?;
    let other = pglock_examples::pool("pglock-metrics-example-other", 1);
    assert!(pglock::advisory(name.as_str())
        .try_acquire(&other)
        .await?
        .is_none());
    busy.release().await?;
    println!("{}", handle.render());
    Ok(())
}
