//! A witness table for mutual-exclusion tests across processes: each holder of a
//! name counts itself in (`enter`) and out (`leave`) on the server, so a second
//! holder at the same time shows as `inside > 1`, whichever process it is in.

use tokio_postgres::Client;

/// The witness table `table`: a row per lock name with `inside` (holders now)
/// and `total` (critical sections so far).
pub struct Witness {
    table: String,
}

impl Witness {
    /// The witness table of that name, made by [`create`](Witness::create).
    pub fn named(table: &str) -> Witness {
        Witness {
            table: table.to_string(),
        }
    }

    /// (Re)creates the table with a row for each of `names`.
    pub async fn create(client: &Client, table: &str, names: &[String]) -> Witness {
        client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (name text PRIMARY KEY, \
                 inside int NOT NULL DEFAULT 0, total bigint NOT NULL DEFAULT 0)"
            ))
            .await
            .expect("create the witness table");
        for name in names {
            client
                .execute(&format!("INSERT INTO {table} (name) VALUES ($1)"), &[name])
                .await
                .expect("a witness row");
        }
        Witness::named(table)
    }

    /// Counts a holder of `name` in (autocommitted on `client`); answers how many
    /// hold it now, this one included.
    pub async fn enter(&self, client: &Client, name: &str) -> u64 {
        let inside: i32 = client
            .query_one(
                &format!(
                    "UPDATE {} SET inside = inside + 1 WHERE name = $1 RETURNING inside",
                    self.table
                ),
                &[&name],
            )
            .await
            .expect("witness enter")
            .get(0);
        inside as u64
    }

    /// Counts the holder of `name` out, and the critical section done.
    pub async fn leave(&self, client: &Client, name: &str) {
        client
            .execute(
                &format!(
                    "UPDATE {} SET inside = inside - 1, total = total + 1 WHERE name = $1",
                    self.table
                ),
                &[&name],
            )
            .await
            .expect("witness leave");
    }

    /// Critical sections done, over every name, and the most holders inside now.
    pub async fn totals(&self, client: &Client) -> (u64, u64) {
        let row = client
            .query_one(
                &format!(
                    "SELECT sum(total)::int8, max(inside)::int8 FROM {}",
                    self.table
                ),
                &[],
            )
            .await
            .expect("witness totals");
        (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64)
    }

    /// Drops the table.
    pub async fn drop_table(self, client: &Client) {
        client
            .batch_execute(&format!("DROP TABLE {}", self.table))
            .await
            .expect("drop the witness table");
    }
}
