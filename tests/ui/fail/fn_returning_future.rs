#[pglock::advisory("job")]
fn job() -> impl std::future::Future<Output = Result<(), pglock::Error>> {
    async { Ok(()) }
}

fn main() {}
