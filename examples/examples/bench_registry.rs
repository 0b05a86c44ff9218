//! Benchmark: what the name registry costs an acquisition. Acquire + release
//! cycles through a one-connection pool (the registry records names of locks
//! taken through pools), with the registry switched off and on, in one
//! interleaved run:
//!
//! - **same name**: one name, already recorded — the steady state (the registry
//!   only looks the name up in memory);
//! - **new name**: a name never used before on every cycle — the worst case, where
//!   every acquisition pipelines its one registry write.
//!
//! Run it with `cargo run --release -p pglock-examples --example bench_registry
//! [-- CYCLES [ROUNDS]]` (defaults 500 and 25) against PostgreSQL at `DATABASE_URL`
//! or `postgres://postgres:postgres@localhost:5432/postgres`. It needs the right to
//! create `public.pglock_names` (it calls `pglock::install_registry`), and deletes
//! the rows it wrote at the end.
//!
//! In each round the four variants run cycle by cycle in a rotating order, each
//! cycle timed on its own, so drift and other work on the machine hit them alike;
//! the switch is flipped between cycles, outside the timed part (by the same
//! round trip before every cycle). The table gives,
//! per variant, the median over rounds of the mean cycle time and, for the
//! registry-on variants, the median and range over rounds of the ratio of means
//! against the same cycle with the registry off. No assertions on speed; see
//! BENCHMARKS.md for the figures.

use std::time::{Duration, Instant};

use tokio_postgres::NoTls;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const PREFIX: &str = "pglock-bench-registry";

#[derive(Clone, Copy)]
struct Variant {
    label: &'static str,
    registry: bool,
    new_name: bool,
    /// The index of the registry-off variant it is compared with.
    baseline: Option<usize>,
}

const VARIANTS: [Variant; 4] = [
    Variant {
        label: "same name, registry off",
        registry: false,
        new_name: false,
        baseline: None,
    },
    Variant {
        label: "same name, registry on (recorded once)",
        registry: true,
        new_name: false,
        baseline: Some(0),
    },
    Variant {
        label: "new name every cycle, registry off",
        registry: false,
        new_name: true,
        baseline: None,
    },
    Variant {
        label: "new name every cycle, registry on (one write each)",
        registry: true,
        new_name: true,
        baseline: Some(2),
    },
];

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result {
    let mut args = std::env::args().skip(1);
    let cycles: usize = args.next().map_or(Ok(500), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(25), |a| a.parse())?;
    let url = pglock_examples::database_url();
    let connect = || async {
        let (client, conn) = tokio_postgres::connect(&url, NoTls).await?;
        tokio::spawn(conn);
        Ok::<_, tokio_postgres::Error>(client)
    };
    let admin = match connect().await {
        Ok(client) => client,
        Err(e) => {
            eprintln!("Cannot reach PostgreSQL at {url}: {e}");
            std::process::exit(1);
        }
    };
    pglock::install_registry(&admin).await?;
    let pool = pglock_examples::pool("pglock-bench-registry", 1);
    let run = std::process::id();
    let same = format!("{PREFIX}:{run}:same");
    let mut fresh = 0u64;
    let mut new_name = || {
        fresh += 1;
        format!("{PREFIX}:{run}:new:{fresh}")
    };
    eprintln!("bench_registry: {cycles} cycles x {rounds} rounds per variant (+1 warm-up)");

    // totals[variant][round] = (sum of cycle times, cycles)
    let mut totals = vec![Vec::with_capacity(rounds); VARIANTS.len()];
    for round in 0..=rounds {
        let mut sums = [Duration::ZERO; VARIANTS.len()];
        for cycle in 0..cycles {
            for i in 0..VARIANTS.len() {
                let v = VARIANTS[(i + cycle + round) % VARIANTS.len()];
                // The same round trip before every cycle, whichever the variant.
                pglock::enable_registry(&admin).await?;
                if !v.registry {
                    pglock::disable_registry();
                }
                let name = if v.new_name { new_name() } else { same.clone() };
                let lock = pglock::advisory(name);
                let started = Instant::now();
                lock.acquire(&pool).await?.release().await?;
                sums[(i + cycle + round) % VARIANTS.len()] += started.elapsed();
            }
        }
        if round > 0 {
            for (v, sum) in sums.iter().enumerate() {
                totals[v].push(sum.as_secs_f64() * 1e6 / cycles as f64);
            }
            eprint!("\rround {round}/{rounds}   ");
        }
    }
    eprintln!();
    pglock::disable_registry();

    println!("| variant | mean µs (median over rounds) | ratio of means vs registry off | range over rounds |");
    println!("|---|---:|---:|---:|");
    for (v, variant) in VARIANTS.iter().enumerate() {
        let mean = median(totals[v].clone());
        let ratio = match variant.baseline {
            Some(b) => {
                let ratios: Vec<f64> = totals[v]
                    .iter()
                    .zip(&totals[b])
                    .map(|(x, y)| x / y)
                    .collect();
                let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = ratios.iter().copied().fold(0.0, f64::max);
                format!("**{:.3}** | {lo:.3}–{hi:.3}", median(ratios))
            }
            None => "— | —".to_string(),
        };
        println!("| {} | {mean:.1} | {ratio} |", variant.label);
    }

    let deleted = admin
        .execute(
            "DELETE FROM public.pglock_names WHERE name LIKE $1",
            &[&format!("{PREFIX}:{run}:%")],
        )
        .await?;
    eprintln!("deleted the {deleted} registry rows this run wrote");
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n % 2 {
        1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}
