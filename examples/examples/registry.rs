//! The name registry and the lock listing: a few locks held by name, shared, by
//! raw key and awaited, then every advisory lock on the database listed as a
//! table, and the `billing` directory alone.
//!
//! `cargo run -p pglock-examples --example registry` (needs the right to create
//! `public.pglock_names`, as `pglock::install_registry` does).

use std::time::{Duration, SystemTime};

use pglock::{ListedLock, LockFilter};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() -> Result {
    let pool = pglock_examples::pool("pglock-registry-example", 8);
    pglock_examples::check_server(&pool).await;
    let client = pool.get().await?;
    // Once per database (idempotent); it also switches the registry on for this
    // process: every name this process locks from now on is recorded once.
    pglock::install_registry(&client).await?;

    let invoices = pglock::advisory("billing/invoices")
        .label("worker-7")
        .acquire(&pool)
        .await?;
    let report_a = pglock::advisory("billing.reports")
        .shared()
        .acquire(&pool)
        .await?;
    let report_b = pglock::advisory("billing.reports")
        .shared()
        .acquire(&pool)
        .await?;
    let raw = pglock::advisory(42_i64).acquire(&pool).await?;
    let jobs = pglock::advisory("jobs::reindex").acquire(&pool).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // A waiter, queued behind worker-7: from another pool, as another process
    // would (guards of one pool exclude each other in the process, before the
    // server).
    let waiter_pool = pglock_examples::pool("pglock-registry-example", 1);
    let waiter = tokio::spawn(async move {
        pglock::advisory("billing/invoices")
            .timeout(Duration::from_secs(10))
            .acquire(&waiter_pool)
            .await
            .map(drop)
    });
    while !pglock::locks(&client, &LockFilter::all())
        .await?
        .iter()
        .any(|l| !l.granted && l.name.as_deref() == Some("billing/invoices"))
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    println!("every advisory lock on the database:\n");
    print_table(&pglock::locks(&client, &LockFilter::all()).await?);
    println!("\nthe billing directory:\n");
    print_table(&pglock::locks(&client, &LockFilter::directory("billing")).await?);

    invoices.release().await?;
    waiter.await??;
    for guard in [report_a, report_b, raw, jobs] {
        guard.release().await?;
    }
    Ok(())
}

fn print_table(locks: &[ListedLock]) {
    println!(
        "{:<20} {:<9} {:<7} {:>6} {:<23} {:<10} {:>6}  BLOCKED BY",
        "LOCK", "MODE", "STATE", "PID", "LABEL", "CLIENT", "FOR"
    );
    let now = SystemTime::now();
    for lock in locks {
        let since = if lock.granted {
            lock.held_since
        } else {
            lock.wait_start
        };
        let age = since
            .and_then(|t| now.duration_since(t).ok())
            .map_or("?".to_string(), |d| format!("{:.1}s", d.as_secs_f64()));
        println!(
            "{:<20} {:<9} {:<7} {:>6} {:<23} {:<10} {:>6}  {}",
            lock.display_name(),
            lock.mode.to_string(),
            if lock.granted { "held" } else { "waiting" },
            lock.pid.map_or("-".to_string(), |p| p.to_string()),
            lock.label.as_deref().unwrap_or("-"),
            lock.client_addr
                .map_or("local".to_string(), |a| a.to_string()),
            age,
            lock.blocked_by
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
    }
}
