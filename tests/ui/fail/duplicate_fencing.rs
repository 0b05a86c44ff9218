#[pglock::advisory("ledger", fencing, timeout = "1s", fencing)]
async fn job() -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
