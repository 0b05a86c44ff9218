#[pglock::advisory(timeout = "2 seconds")]
async fn job() -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
