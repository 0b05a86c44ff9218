#[pglock::advisory(shared, pool = pool)]
async fn job(pool: &deadpool_postgres::Pool, shared: &str) -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
