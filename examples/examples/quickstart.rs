//! The pglock tour: two workers contend for one lock (one wins, one times out, one
//! skips), shared readers share, and a transaction holds a lock until it commits.
//!
//! Run it with `cargo run --example quickstart` (PostgreSQL at `DATABASE_URL`, or
//! at `postgres://postgres:postgres@localhost:5432/postgres`).

use std::time::Duration;

use pglock_examples::{check_server, pool};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let alice = pool("worker-alice", 4);
    let bob = pool("worker-bob", 4);
    check_server(&alice).await;
    let name = format!("quickstart.report-{}", std::process::id());
    println!(
        "Lock name {name:?} is advisory key {}.\n",
        pglock::key_for(&name)?
    );

    // 1. Alice takes the lock; Bob waits at most 300 ms for it.
    println!("1. Two workers want the same lock.");
    let guard = pglock::advisory(name.as_str()).acquire(&alice).await?;
    println!("   alice: acquired it (waited {:?})", guard.wait_time());
    match pglock::advisory(name.as_str())
        .timeout(Duration::from_millis(300))
        .acquire(&bob)
        .await
    {
        Ok(_) => println!("   bob: acquired it too?! (this never happens)"),
        Err(e) if e.is_not_acquired() => {
            let holder = e
                .holder()
                .map(|h| h.application_name.as_str())
                .unwrap_or("someone");
            println!(
                "   bob: gave up after {:?}: held by {holder}",
                e.timeout().unwrap_or_default()
            );
        }
        Err(e) => return Err(e.into()),
    }

    // 2. Bob would rather skip than wait.
    let ran = pglock::advisory(name.as_str())
        .run(&bob, async {
            println!("   bob: doing the report (never printed)")
        })
        .await?;
    if ran.is_none() {
        println!("   bob: skipped the report: alice is doing it");
    }
    let status = pglock::status(&*alice.get().await?, name.as_str()).await?;
    for h in &status.holders {
        println!(
            "   pg_locks: pid {} ({}) holds it in {} mode",
            h.pid,
            h.application_name.as_deref().unwrap_or("?"),
            h.mode
        );
    }
    guard.release().await?;
    println!("   alice: released it");
    let guard = pglock::advisory(name.as_str()).try_acquire(&bob).await?;
    println!(
        "   bob: tried again: {}",
        if guard.is_some() {
            "acquired"
        } else {
            "still busy"
        }
    );
    drop(guard); // dropping a guard releases its lock too

    // 3. Shared locks: readers share, a writer waits for them.
    println!("\n2. Readers share a lock; a writer waits for them.");
    let table = format!("quickstart.table-{}", std::process::id());
    let r1 = pglock::advisory(table.as_str())
        .shared()
        .acquire(&alice)
        .await?;
    let r2 = pglock::advisory(table.as_str())
        .shared()
        .acquire(&bob)
        .await?;
    let readers = pglock::status(&*alice.get().await?, table.as_str())
        .await?
        .holders
        .len();
    println!("   alice and bob read together: {readers} shared holders");
    let writer = pglock::advisory(table.as_str())
        .timeout(Duration::ZERO)
        .acquire(&bob)
        .await;
    println!(
        "   a writer tries meanwhile: {}",
        match writer {
            Ok(_) => "acquired (unexpected)".to_string(),
            Err(e) => format!("not acquired ({e})"),
        }
    );
    drop((r1, r2));
    let w = pglock::advisory(table.as_str())
        .timeout(Duration::from_secs(5))
        .acquire(&bob)
        .await?;
    println!("   readers done; the writer got it");
    w.release().await?;

    // 4. A transaction-level lock lives exactly as long as the transaction.
    println!("\n3. A lock inside a transaction.");
    let mut conn = alice.get().await?;
    let tx = conn.transaction().await?;
    let account = format!("quickstart.account:42-{}", std::process::id());
    let account = account.as_str();
    pglock::advisory(account).xact().acquire_in(&tx).await?;
    println!("   alice: locked {account:?} inside her transaction");
    let busy = pglock::advisory(account).try_acquire(&bob).await?.is_none();
    println!(
        "   bob: {}",
        if busy {
            "cannot take it while the transaction is open"
        } else {
            "took it?!"
        }
    );
    tx.commit().await?;
    let free = pglock::advisory(account).try_acquire(&bob).await?;
    println!(
        "   alice committed; bob: {}",
        if free.is_some() {
            "now takes it"
        } else {
            "still busy?!"
        }
    );
    drop(free);

    println!("\nDone: every lock above is released.");
    Ok(())
}
