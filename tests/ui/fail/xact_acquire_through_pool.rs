// `.xact().acquire(&pool)`: a transaction-level lock needs a transaction.
async fn demo(pool: &deadpool_postgres::Pool) {
    let _ = pglock::advisory("x").xact().acquire(pool).await;
}

fn main() {}
