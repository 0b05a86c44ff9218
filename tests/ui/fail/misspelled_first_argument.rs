#[pglock::advisory(sharde)]
async fn job() -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
