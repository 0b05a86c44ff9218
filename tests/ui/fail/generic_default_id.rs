#[pglock::advisory]
async fn job<T: Send>(item: T) -> Result<T, pglock::Error> {
    Ok(item)
}

fn main() {}
