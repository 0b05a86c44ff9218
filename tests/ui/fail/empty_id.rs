#[pglock::advisory("")]
async fn job() -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
