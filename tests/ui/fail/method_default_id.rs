pub struct Billing {
    pool: deadpool_postgres::Pool,
}

impl Billing {
    #[pglock::advisory(pool = &self.pool)]
    async fn run(&self) -> Result<(), pglock::Error> {
        Ok(())
    }
}

fn main() {}
