//! Every accepted form of `#[pglock::advisory]` compiles.
#![deny(warnings)]

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;

const LOCK: &str = "ui.const-id";

#[derive(Debug)]
pub enum AppError {
    Lock(pglock::Error),
    Io(std::io::Error),
}

impl From<pglock::Error> for AppError {
    fn from(e: pglock::Error) -> Self {
        AppError::Lock(e)
    }
}

impl From<std::io::Error> for AppError {
    fn from(e: std::io::Error) -> Self {
        AppError::Io(e)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type AppResult<T> = Result<T, AppError>;

fn io() -> std::io::Result<u8> {
    Ok(1)
}

// The default pool, default id, Raise.
#[pglock::advisory]
pub async fn bare() -> Result<(), pglock::Error> {
    Ok(())
}

#[pglock::advisory()]
async fn empty_parens() -> AppResult<u8> {
    Ok(io()?)
}

#[pglock::advisory("billing.nightly", timeout = "0s", side_effect = Skip)]
async fn nightly() {}

#[pglock::advisory(LOCK, timeout = "250ms", shared)]
async fn const_id() -> Result<u8, BoxError> {
    Ok(io()?)
}

#[pglock::advisory(42i64, timeout = "1m30s")]
async fn raw_key() -> Result<(), AppError> {
    Ok(())
}

#[pglock::advisory((1, 2), timeout = "1.5s")]
async fn pair_key() -> Result<(), AppError> {
    Ok(())
}

#[pglock::advisory(format!("account:{account}"), timeout = Duration::from_secs(2), pool = pool)]
async fn computed_id(pool: &Pool, account: u64) -> Result<u64, pglock::Error> {
    Ok(account)
}

#[pglock::advisory(name, pool = db, timeout = wait)]
async fn from_parameters(db: Pool, name: String, wait: Duration) -> Result<String, AppError> {
    drop(db);
    Ok(name)
}

#[pglock::advisory(side_effect = Raise, pool = pool.as_ref())]
async fn arc_pool(pool: Arc<Pool>) -> Result<(), AppError> {
    Ok(())
}

#[pglock::advisory(pool = pool)]
async fn arc_pool_directly(pool: Arc<Pool>) -> Result<(), AppError> {
    Ok(())
}

#[pglock::advisory(pool = session, side_effect = Skip)]
async fn on_session(session: &pglock::Session) -> Option<u8> {
    Some(1)
}

#[pglock::advisory(side_effect = Skip, timeout = "100ms")]
async fn skip_result_unit() -> Result<(), AppError> {
    io()?;
    Ok(())
}

#[pglock::advisory(side_effect = Skip)]
async fn skip_result_option() -> Result<Option<String>, BoxError> {
    Ok(Some(String::new()))
}

#[pglock::advisory(side_effect = Skip)]
async fn skip_early_return(flag: bool) -> Option<u8> {
    if flag {
        return None;
    }
    let n = io().ok()?;
    Some(n)
}

#[pglock::advisory(side_effect = Skip)]
async fn skip_explicit_unit() -> () {}

#[pglock::advisory(xact = tx)]
async fn xact_ref(tx: &tokio_postgres::Transaction<'_>) -> Result<(), AppError> {
    Ok(())
}

#[pglock::advisory("ui.xact", xact = tx, shared, timeout = "1s")]
async fn xact_value(tx: tokio_postgres::Transaction<'_>) -> Result<(), BoxError> {
    tx.commit().await?;
    Ok(())
}

#[pglock::advisory(xact = tx, side_effect = Skip)]
async fn xact_deadpool(mut tx: deadpool_postgres::Transaction<'_>) -> Option<()> {
    let inner = tx.transaction().await.ok()?;
    inner.commit().await.ok()?;
    Some(())
}

#[pglock::advisory(xact = tx)]
async fn xact_mut(tx: &mut deadpool_postgres::Transaction<'_>) -> Result<(), AppError> {
    Ok(())
}

#[pglock::advisory("ui.fenced", fencing)]
async fn fenced() -> Result<Option<i64>, AppError> {
    Ok(pglock::held().and_then(|lock| lock.fencing_token()))
}

#[pglock::advisory(fencing, lease = "30s", label = "ui-worker", side_effect = Skip)]
async fn leased_literal() -> Option<u128> {
    pglock::held().map(|lock| lock.acquisition_id())
}

#[pglock::advisory(name, pool = pool, lease = ttl, label = format!("worker-{worker}"), shared)]
async fn leased_expr(pool: &Pool, name: &str, ttl: Duration, worker: u32) -> AppResult<u32> {
    Ok(worker)
}

#[pglock::advisory(name, label = name, lease = Duration::from_millis(1500))]
async fn label_is_borrowed(name: String) -> Result<String, AppError> {
    Ok(name)
}

impl Service {
    #[pglock::advisory("ui::Service::labelled", pool = &self.pool, label = self.label.as_str(), lease = "1m")]
    pub async fn labelled(&self) -> Result<u32, AppError> {
        Ok(self.count)
    }
}

#[pglock::advisory]
async fn impl_trait_return() -> Result<impl std::fmt::Display, AppError> {
    Ok(1)
}

// Generic: the id is explicit (the default would be shared by every instance).
#[pglock::advisory(concat!(module_path!(), "::generic"), pool = pool.as_ref())]
async fn generic<T: std::fmt::Debug + Send, P>(
    pool: P,
    items: Vec<T>,
    extra: impl Into<String>,
) -> Result<String, AppError>
where
    P: AsRef<Pool>,
{
    Ok(format!("{items:?}{}", extra.into()))
}

#[pglock::advisory(r#type)]
async fn r#match(r#type: &str) -> Result<(), AppError> {
    Ok(())
}

#[pglock::advisory]
async fn with_inner_attribute() -> Result<(), AppError> {
    #![allow(unused_variables)]
    let unused = 1;
    Ok(())
}

/// Docs and other attributes are kept.
#[pglock::advisory]
#[allow(clippy::unused_async)]
pub(crate) async fn documented() -> Result<(), AppError> {
    Ok(())
}

pub struct Service {
    pool: Pool,
    count: u32,
    label: String,
}

impl Service {
    // Methods: the id is explicit (the attribute cannot see the type's name).
    #[pglock::advisory("ui::Service::by_ref", pool = &self.pool)]
    pub async fn by_ref(&self) -> Result<u32, AppError> {
        Ok(self.count)
    }

    #[pglock::advisory("ui::Service::by_mut", pool = &self.pool, side_effect = Skip)]
    pub async fn by_mut(&mut self) -> Option<u32> {
        self.count += 1;
        Some(self.count)
    }

    #[pglock::advisory(id = "ui::Service::by_value", pool = self.pool.clone())]
    pub async fn by_value(self) -> Result<Self, AppError> {
        Ok(self)
    }

    #[pglock::advisory(self.label.as_str(), pool = &self.pool)]
    pub async fn boxed(self: Box<Self>) -> Result<u32, AppError> {
        Ok(self.count)
    }
}

pub trait Job {
    fn run(&self) -> impl std::future::Future<Output = Result<(), AppError>> + Send;
}

impl Job for Service {
    #[pglock::advisory("ui::Service::run", pool = &self.pool)]
    async fn run(&self) -> Result<(), AppError> {
        Ok(())
    }
}

fn _generic_is_callable(pool: Arc<Pool>) {
    drop(generic(pool, vec![1u8], "x"));
}

fn main() {
    // Building futures runs nothing; this only has to compile.
    drop(bare());
    drop(empty_parens());
    drop(nightly());
    drop(const_id());
    drop(raw_key());
    drop(pair_key());
    drop(skip_result_unit());
    drop(skip_result_option());
    drop(skip_early_return(true));
    drop(skip_explicit_unit());
    drop(impl_trait_return());
    drop(with_inner_attribute());
    drop(documented());
    drop(fenced());
    drop(leased_literal());
    let _ = (
        computed_id,
        from_parameters,
        arc_pool,
        arc_pool_directly,
        on_session,
        xact_ref,
        xact_value,
        xact_deadpool,
        xact_mut,
        r#match,
        leased_expr,
        label_is_borrowed,
        Service::labelled,
        AppError::Io,
        AppError::Lock,
        Service::by_ref,
        Service::by_mut,
        Service::by_value,
        Service::boxed,
        <Service as Job>::run,
    );
}
