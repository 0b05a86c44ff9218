#[pglock::advisory(shared = true)]
async fn job() -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
