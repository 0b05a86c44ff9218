//! A periodic job that must run on one replica only.
//!
//! Two replicas of a service (simulated here as two tasks in one process, each with
//! its own connection pool, as two processes would have) tick every second and try
//! to send the reminder e-mails. `#[pglock::advisory(side_effect = Skip)]` makes
//! sure that at each tick exactly one of them does the work and the other skips it,
//! without any coordinator other than the database they already share.
//!
//! Run it with `cargo run -p pglock-examples --example scheduled_job` (PostgreSQL at
//! `DATABASE_URL`, or at `postgres://postgres:postgres@localhost:5432/postgres`).
//! Start it in two terminals at once and the replicas of both share the work too.

use std::time::Duration;

use deadpool_postgres::Pool;
use pglock_examples::{check_server, pool};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How many times each replica's timer fires.
const TICKS: u32 = 4;

/// One replica of the service.
struct Replica {
    name: &'static str,
    pool: Pool,
}

impl Replica {
    /// The job. The lock id is explicit, as a method's must be (the attribute
    /// cannot see the type's name): `scheduled_job::send_reminders`, the key the
    /// default gave before. `Skip` with a zero timeout (the default for Skip): if another replica holds the lock, return `Ok(None)` at
    /// once without running the body. Connection errors still come back as `Err`.
    #[pglock::advisory("scheduled_job::send_reminders", side_effect = Skip, pool = &self.pool)]
    async fn send_reminders(&self, tick: u32) -> Result<Option<u32>, pglock::Error> {
        // The work takes a while, so the other replica's tick lands meanwhile.
        tokio::time::sleep(Duration::from_millis(400)).await;
        Ok(Some(10 + tick))
    }

    /// The replica's timer loop: returns how many ticks it ran and skipped.
    async fn run(self) -> Result<(u32, u32), BoxError> {
        let (mut ran, mut skipped) = (0, 0);
        let mut timer = tokio::time::interval(Duration::from_secs(1));
        for tick in 1..=TICKS {
            timer.tick().await;
            match self.send_reminders(tick).await? {
                Some(sent) => {
                    ran += 1;
                    println!(
                        "tick {tick}: {} ran the job and sent {sent} reminders",
                        self.name
                    );
                }
                None => {
                    skipped += 1;
                    let holder = self.holder().await?;
                    println!(
                        "tick {tick}: {} skipped the job: {holder} is running it",
                        self.name
                    );
                }
            }
        }
        Ok((ran, skipped))
    }

    /// Who holds the job's lock right now, by `application_name`.
    async fn holder(&self) -> Result<String, BoxError> {
        let client = self.pool.get().await?;
        let status = pglock::status(&client, JOB_LOCK).await?;
        Ok(status
            .holders
            .first()
            .and_then(|h| h.application_name.clone())
            .unwrap_or_else(|| "another replica (it has just finished)".to_string()))
    }
}

/// The default id of `Replica::send_reminders`, spelled out for the status query.
const JOB_LOCK: &str = concat!(module_path!(), "::send_reminders");

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let replicas = [
        Replica {
            name: "replica-a",
            pool: pool("replica-a", 2),
        },
        Replica {
            name: "replica-b",
            pool: pool("replica-b", 2),
        },
    ];
    for r in &replicas {
        check_server(&r.pool).await;
    }
    println!(
        "Two replicas tick every second for {TICKS} s; the job's lock is {JOB_LOCK:?} (key {}).\n",
        pglock::key_for(JOB_LOCK)?
    );

    // Each replica runs on its own task, as it would in its own process.
    let tasks: Vec<_> = replicas
        .into_iter()
        .map(|r| (r.name, tokio::spawn(r.run())))
        .collect();
    let mut total_ran = 0;
    let mut summary = Vec::new();
    for (name, task) in tasks {
        let (ran, skipped) = task.await??;
        total_ran += ran;
        summary.push(format!(
            "{name}: ran the job {ran} times, skipped it {skipped} times"
        ));
    }
    println!("\n{}", summary.join("\n"));
    println!(
        "\nThe job ran {total_ran} times in {TICKS} ticks: once per tick, never twice at once \
         (more only if a tick's work ended before the other replica's tick began)."
    );
    Ok(())
}
