#[pglock::advisory("job", on_lost = stop)]
async fn job() -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
