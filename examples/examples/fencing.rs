//! Fencing tokens: how storage rejects a holder whose lock has already moved on.
//!
//! A lock alone cannot stop a holder that paused (GC, swap, a frozen VM) past the
//! moment its lock was lost and taken by someone else: when it wakes up it still
//! believes it holds the lock. With `.fencing()`, every acquisition gets a token
//! that is strictly greater than every earlier one; the storage remembers the
//! highest token it has accepted and refuses writes carrying a lower one.
//!
//! Run it with `cargo run -p pglock-examples --example fencing`.

use std::time::Duration;

use pglock_examples::{check_server, pool};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = pool("fencing-example", 4);
    check_server(&pool).await;
    let admin = pool.get().await?;
    pglock::install_fencing(&admin).await?; // once; idempotent
    let table = format!("fencing_example_{}", std::process::id());
    admin
        .batch_execute(&format!(
            "CREATE TABLE {table} (id int PRIMARY KEY, body text, fence bigint NOT NULL)"
        ))
        .await?;
    admin
        .execute(
            &format!("INSERT INTO {table} VALUES (1, 'initial', 0)"),
            &[],
        )
        .await?;
    let name = format!("fencing-example-{}", std::process::id());

    // Worker A takes the lock with a short lease, then "freezes".
    let a = pglock::advisory(name.as_str())
        .fencing()
        .lease(Duration::from_millis(500))
        .acquire(&pool)
        .await?;
    let token_a = a.fencing_token().expect("fencing was asked for");
    println!("worker A holds the lock with token {token_a}, then pauses for 2 s …");
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Meanwhile the server ended A's silent session (its lease expired), and B got in.
    let b = pglock::advisory(name.as_str())
        .fencing()
        .acquire(&pool)
        .await?;
    let token_b = b.fencing_token().expect("fencing was asked for");
    println!("worker B acquired the lock with token {token_b}");
    let write = format!("UPDATE {table} SET body = $1, fence = $2 WHERE id = 1 AND fence <= $2");
    let rows = admin.execute(&write, &[&"written by B", &token_b]).await?;
    println!(
        "B writes with token {token_b}: {}",
        if rows == 1 { "accepted" } else { "rejected" }
    );

    // A wakes up, still believing it holds the lock, and tries to write.
    let rows = admin
        .execute(&write, &[&"written by A (stale!)", &token_a])
        .await?;
    println!(
        "A writes with token {token_a}: {}",
        if rows == 1 {
            "accepted (bad)"
        } else {
            "rejected: a newer holder has written"
        }
    );
    match a.release().await {
        Err(e) if e.is_lost() => println!("A's release confirms it: {e}"),
        other => println!("A's release: {other:?}"),
    }
    b.release().await?;

    let body: String = admin
        .query_one(&format!("SELECT body FROM {table}"), &[])
        .await?
        .get(0);
    println!("the row says: {body:?}");
    admin.batch_execute(&format!("DROP TABLE {table}")).await?;
    Ok(())
}
