#[pglock::advisory(side_effect = Skip)]
async fn count() -> u32 {
    1
}

#[pglock::advisory(side_effect = Skip)]
async fn value() -> Result<u32, pglock::Error> {
    Ok(1)
}

fn main() {}
