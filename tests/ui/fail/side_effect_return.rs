#[pglock::advisory(side_effect = Return)]
async fn job() -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
