#[pglock::advisory]
fn job() -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
