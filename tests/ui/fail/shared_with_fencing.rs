#[pglock::advisory("job", shared, fencing)]
async fn job() -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
