//! Postgres projections. The JetStream streams are the truth; every table
//! here is derived from them by a projector that stores its stream offset in
//! the same transaction as the rows it writes, so a redelivered event
//! changes nothing and a dropped table is rebuilt on the next start.

mod config;
mod erase;
pub mod health;
pub mod janitor;
pub mod notices;
mod outcomes;
pub mod projector;
pub mod queries;
pub mod stats;

use std::time::Duration;

use sqlx::{
    Connection, PgPool,
    postgres::{PgConnectOptions, PgConnection, PgPoolOptions},
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Tables that are projections; if one is missing its projector starts over.
pub const PROJECTION_TABLES: [&str; 7] =
    ["tenants", "endpoints", "deliveries", "attempts", "endpoint_stats_hourly", "endpoint_health", "deleted_tenants"];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Postgres: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("HOOKLINE_DATABASE_URL: {0}")]
    Url(#[source] sqlx::Error),
    #[error("NATS: {0}")]
    Bus(#[source] hookline_bus::Source),
    /// A projected message without the reply subject its sequence is read from.
    #[error("NATS: no stream sequence in {reply:?}")]
    NoSequence { reply: Option<async_nats::Subject> },
}

/// Connect, creating the database when it does not exist, and bring the
/// schema up to date.
pub async fn connect(url: &str) -> Result<PgPool, StoreError> {
    let pool = lazy(url)?;
    prepare(&pool, url).await?;
    Ok(pool)
}

/// A pool that connects on first use, so a service can start (and deliver
/// webhooks) while Postgres is down; pair it with [`prepare`].
pub fn lazy(url: &str) -> Result<PgPool, StoreError> {
    let options: PgConnectOptions = url.parse().map_err(StoreError::Url)?;
    Ok(PgPoolOptions::new().max_connections(8).acquire_timeout(Duration::from_secs(5)).connect_lazy_with(options))
}

/// Create the database if missing and bring the schema up to date.
pub async fn prepare(pool: &PgPool, url: &str) -> Result<(), StoreError> {
    let options: PgConnectOptions = url.parse().map_err(StoreError::Url)?;
    let db = options.get_database().unwrap_or("postgres").to_owned();
    if let Err(e) = PgConnection::connect_with(&options).await {
        let missing = matches!(&e, sqlx::Error::Database(d) if d.code().as_deref() == Some("3D000"));
        if !missing {
            return Err(e.into());
        }
        let mut admin = PgConnection::connect_with(&options.clone().database("postgres")).await?;
        let quoted = format!("\"{}\"", db.replace('"', "\"\""));
        let created = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}"))).execute(&mut admin).await;
        match created {
            Ok(_) => tracing::info!(database = %db, "created database"),
            // Another process won the race.
            Err(sqlx::Error::Database(d)) if d.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e.into()),
        }
    }
    ensure_schema(pool).await
}

/// Run migrations; re-apply them (they are idempotent) when a projection
/// table was dropped, and reset the offsets so projectors rebuild it.
pub async fn ensure_schema(pool: &PgPool) -> Result<(), StoreError> {
    MIGRATOR.run(pool).await?;
    let mut missing = false;
    for table in PROJECTION_TABLES {
        let exists: Option<String> =
            sqlx::query_scalar("SELECT to_regclass($1)::text").bind(table).fetch_one(pool).await?;
        missing |= exists.is_none();
    }
    if missing {
        tracing::warn!("projection tables missing: re-creating them and rebuilding from the streams");
        for migration in MIGRATOR.iter() {
            sqlx::raw_sql(migration.sql.clone()).execute(pool).await?;
        }
        reset_projections(pool).await?;
    }
    Ok(())
}

/// Empty every projection and its offset in one transaction. Running
/// projectors notice the moved offset and rebuild from sequence 1.
///
/// The offsets table is locked first, as a projector's batch writes its
/// offset row before it touches the projections: the reset waits for a
/// batch in flight (its first one included, whose offset row is not yet
/// visible) and holds off the next one. In the other order a batch and the
/// reset would each wait for the other (a deadlock Postgres breaks by
/// failing one of them).
pub async fn reset_projections(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("LOCK TABLE projector_offsets IN EXCLUSIVE MODE").execute(&mut *tx).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("TRUNCATE {}", PROJECTION_TABLES.join(", ")))).execute(&mut *tx).await?;
    sqlx::query("UPDATE projector_offsets SET last_seq = 0, updated_at = now()").execute(&mut *tx).await?;
    tx.commit().await?;
    tracing::warn!("projections reset; rebuilding from the streams");
    Ok(())
}
