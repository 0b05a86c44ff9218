#[pglock::advisory(lease = "30 seconds")]
async fn job() -> Result<(), pglock::Error> {
    Ok(())
}

#[pglock::advisory(lease = "0s")]
async fn zero() -> Result<(), pglock::Error> {
    Ok(())
}

#[pglock::advisory(lease = 30)]
async fn no_unit() -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
