#[pglock::advisory("job", xact = tx, client = db, on_lost = cancel)]
async fn job(tx: &tokio_postgres::Transaction<'_>) -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
