#[pglock::advisory(side_effect = Ignore)]
async fn job() -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
