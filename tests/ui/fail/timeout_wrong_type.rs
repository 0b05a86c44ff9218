#[pglock::advisory(timeout = 250u64)]
async fn job() -> Result<(), pglock::Error> {
    Ok(())
}

#[pglock::advisory(timeout = millis)]
async fn with_param(millis: u64) -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
