//! Scratch databases on a Postgres server: one per test (or bench run), so
//! migrations and data never collide.

use std::process::{Command, Stdio};

use anyhow::Context as _;
use sqlx::Connection as _;

/// The local Postgres the tests use: 127.0.0.1:5432, user postgres, trust.
pub const LOCAL_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";

/// Create the database `<prefix>_<random hex>` on `server` (a URL without a
/// database, e.g. [`LOCAL_POSTGRES`]); returns its name.
pub async fn create_database(server: &str, prefix: &str) -> anyhow::Result<String> {
    let name = format!("{prefix}_{:016x}", rand::random::<u64>());
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .with_context(|| format!("connecting to Postgres at {server}"))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await?;
    admin.close().await?;
    Ok(name)
}

/// Drop a database on `server`, disconnecting its sessions.
pub async fn drop_database(server: &str, name: &str) -> anyhow::Result<()> {
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres")).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    Ok(())
}

/// A fresh database, dropped (FORCE) when this handle drops, or by
/// [`close`](Self::close) where an error should be seen.
pub struct TestDb {
    server: String,
    name: String,
    url: String,
    /// Set once [`close`](Self::close) dropped it: nothing left for `Drop`.
    dropped: bool,
}

impl TestDb {
    /// Create `hookline_test_<random hex>` on [`LOCAL_POSTGRES`].
    pub async fn create() -> anyhow::Result<Self> {
        Self::create_on(LOCAL_POSTGRES, "hookline_test").await
    }

    /// Create `<prefix>_<random hex>` on `server` (a URL without a database).
    pub async fn create_on(server: &str, prefix: &str) -> anyhow::Result<Self> {
        let name = create_database(server, prefix).await?;
        Ok(Self { url: format!("{server}/{name}"), server: server.to_owned(), name, dropped: false })
    }

    /// `<server>/<name>`, e.g. `postgres://postgres@127.0.0.1:5432/<name>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A new pool on this database; panics if Postgres is unreachable.
    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.url).await.unwrap_or_else(|e| panic!("connecting to {}: {e}", self.url))
    }

    /// Drop the database now, reporting a failure (`Drop` cannot).
    pub async fn close(mut self) -> anyhow::Result<()> {
        self.dropped = true;
        drop_database(&self.server, &self.name).await
    }
}

impl Drop for TestDb {
    /// Best effort through `psql`: no async runtime needed in a destructor.
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let _ = Command::new("psql")
            .args(["-d", &format!("{}/postgres", self.server), "-qc"])
            .arg(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
