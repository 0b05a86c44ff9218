#[pglock::advisory(xact = tx, pool = pool)]
async fn job(
    pool: &deadpool_postgres::Pool,
    tx: &tokio_postgres::Transaction<'_>,
) -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
