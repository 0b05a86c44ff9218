#[pglock::advisory("job", xact = self.tx)]
async fn job() -> Result<(), pglock::Error> {
    Ok(())
}

#[pglock::advisory("job", xact = tx.inner)]
async fn other(tx: u8) -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
