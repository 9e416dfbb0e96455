//! Readiness: one answer to "may an orchestrator send this process work?",
//! kept by one watcher task. `/readyz` and gRPC health (`grpc.health.v1`)
//! both read it, so they cannot disagree: while NATS is unreachable, while
//! Postgres is (for the parts that read it), and from the moment a shutdown
//! starts, both say "not serving", and both recover by themselves.
//!
//! Per gRPC service: `IngestService` and `SubscriptionService` need NATS;
//! `DeliveryService` needs NATS and Postgres (its log lives there). The
//! overall service `""` and `/readyz` need everything the process runs.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic_health::{ServingStatus, server::HealthReporter};

/// How often the watcher looks at NATS and Postgres.
const INTERVAL: Duration = Duration::from_millis(500);
/// Longest wait for Postgres to answer `SELECT 1`.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Parts of the service are still being set up.
    Starting,
    Running,
    /// A shutdown began: work in flight finishes, nothing new should come.
    Draining,
}

/// What the watcher last saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub phase: Phase,
    pub nats_connected: bool,
    /// Whether Postgres answered the last ping (`false` until the schema is
    /// ready); `None` for roles without Postgres.
    pub postgres_answers: Option<bool>,
}

/// Why the process, or one of its services, is not serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    Starting,
    Draining,
    NatsDisconnected,
    PostgresUnreachable,
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotReady::Starting => "starting",
            NotReady::Draining => "draining",
            NotReady::NatsDisconnected => "NATS disconnected",
            NotReady::PostgresUnreachable => "Postgres unreachable",
        })
    }
}

impl std::error::Error for NotReady {}

/// What a service needs to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// NATS only (ingest, subscriptions).
    Nats,
    /// NATS and Postgres (the delivery log).
    NatsAndPostgres,
}

impl State {
    /// Whether a service that needs `needs` can serve.
    pub fn check(&self, needs: Needs) -> Result<(), NotReady> {
        match self.phase {
            Phase::Starting => Err(NotReady::Starting),
            Phase::Draining => Err(NotReady::Draining),
            Phase::Running if !self.nats_connected => Err(NotReady::NatsDisconnected),
            Phase::Running if needs == Needs::NatsAndPostgres && self.postgres_answers != Some(true) => {
                Err(NotReady::PostgresUnreachable)
            }
            Phase::Running => Ok(()),
        }
    }

    /// The whole process: everything it runs (what `/readyz` and `""` answer).
    pub fn overall(&self) -> Result<(), NotReady> {
        self.check(if self.postgres_answers.is_some() { Needs::NatsAndPostgres } else { Needs::Nats })
    }
}

fn status(ready: Result<(), NotReady>) -> ServingStatus {
    match ready {
        Ok(()) => ServingStatus::Serving,
        Err(_) => ServingStatus::NotServing,
    }
}

/// The readiness of one process; cheap to clone.
#[derive(Clone)]
pub struct Readiness {
    state: Arc<watch::Sender<State>>,
    /// The health reporter and the services it reports, behind one lock so
    /// that whoever publishes last publishes the latest state.
    health: Arc<Mutex<Health>>,
    nats: async_nats::Client,
    /// Set once the schema is ready; `None` for roles without Postgres.
    postgres: Option<Arc<OnceLock<sqlx::PgPool>>>,
}

struct Health {
    reporter: HealthReporter,
    /// gRPC service names and whether each reads Postgres.
    services: Vec<(&'static str, Needs)>,
}

impl Readiness {
    pub async fn new(
        reporter: HealthReporter,
        nats: async_nats::Client,
        postgres: Option<Arc<OnceLock<sqlx::PgPool>>>,
    ) -> Self {
        let state =
            State { phase: Phase::Starting, nats_connected: false, postgres_answers: postgres.as_ref().map(|_| false) };
        let readiness = Self {
            state: Arc::new(watch::channel(state).0),
            health: Arc::new(Mutex::new(Health { reporter, services: Vec::new() })),
            nats,
            postgres,
        };
        // tonic-health starts `""` as SERVING; it is not, yet.
        readiness.publish().await;
        readiness
    }

    pub fn state(&self) -> State {
        *self.state.borrow()
    }

    /// Report the gRPC service `S` on health from now on.
    pub async fn register<S: NamedService>(&self, needs: Needs) {
        self.health.lock().await.services.push((S::NAME, needs));
        self.publish().await;
    }

    /// Every part has started: serving as soon as NATS (and Postgres) answer.
    pub async fn started(&self) {
        self.state.send_modify(|s| s.phase = Phase::Running);
        self.refresh().await;
        // The phase changed even when NATS and Postgres did not (the watcher
        // may have seen them up already), and gRPC health must follow it.
        self.publish().await;
    }

    /// A shutdown began: not serving from now on, whatever NATS and Postgres say.
    pub async fn drain(&self) {
        self.state.send_modify(|s| s.phase = Phase::Draining);
        self.publish().await;
    }

    /// Look at NATS and Postgres every [`INTERVAL`] until `shutdown`.
    pub async fn watch(self, shutdown: CancellationToken) {
        loop {
            self.refresh().await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(INTERVAL) => {}
            }
        }
    }

    /// Look once; publish if anything changed.
    async fn refresh(&self) {
        let nats_connected = self.nats.connection_state() == async_nats::connection::State::Connected;
        let postgres_answers = match &self.postgres {
            None => None,
            Some(lock) => Some(match lock.get() {
                None => false,
                Some(pool) => {
                    let ping = sqlx::query("SELECT 1").execute(pool);
                    matches!(tokio::time::timeout(PING_TIMEOUT, ping).await, Ok(Ok(_)))
                }
            }),
        };
        let changed = self.state.send_if_modified(|s| {
            let before = *s;
            s.nats_connected = nats_connected;
            s.postgres_answers = postgres_answers;
            *s != before
        });
        if changed {
            let state = self.state();
            match state.overall() {
                Ok(()) => tracing::info!(?state, "ready"),
                Err(why) => tracing::warn!(?state, "not ready: {why}"),
            }
            self.publish().await;
        }
    }

    /// Set every reported service's status from the current state.
    async fn publish(&self) {
        let health = self.health.lock().await;
        let state = self.state();
        health.reporter.set_service_status("", status(state.overall())).await;
        for (name, needs) in &health.services {
            health.reporter.set_service_status(*name, status(state.check(*needs))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(nats_connected: bool, postgres_answers: Option<bool>) -> State {
        State { phase: Phase::Running, nats_connected, postgres_answers }
    }

    #[test]
    fn nats_down_stops_every_service_postgres_down_only_those_that_read_it() {
        let all_up = running(true, Some(true));
        assert_eq!(
            (all_up.check(Needs::Nats), all_up.check(Needs::NatsAndPostgres), all_up.overall()),
            (Ok(()), Ok(()), Ok(()))
        );

        let nats_down = running(false, Some(true));
        assert_eq!(nats_down.check(Needs::Nats), Err(NotReady::NatsDisconnected));
        assert_eq!(nats_down.check(Needs::NatsAndPostgres), Err(NotReady::NatsDisconnected));
        assert_eq!(nats_down.overall(), Err(NotReady::NatsDisconnected));

        let postgres_down = running(true, Some(false));
        assert_eq!(postgres_down.check(Needs::Nats), Ok(()), "ingest and subscriptions do not read Postgres");
        assert_eq!(postgres_down.check(Needs::NatsAndPostgres), Err(NotReady::PostgresUnreachable));
        assert_eq!(postgres_down.overall(), Err(NotReady::PostgresUnreachable));

        let no_postgres = running(true, None);
        assert_eq!(no_postgres.overall(), Ok(()), "a role without Postgres does not wait for it");
    }

    #[test]
    fn starting_and_draining_are_not_serving_whatever_the_dependencies_say() {
        for phase in [Phase::Starting, Phase::Draining] {
            let s = State { phase, nats_connected: true, postgres_answers: Some(true) };
            let why = if phase == Phase::Starting { NotReady::Starting } else { NotReady::Draining };
            assert_eq!(
                (s.check(Needs::Nats), s.check(Needs::NatsAndPostgres), s.overall()),
                (Err(why), Err(why), Err(why))
            );
        }
        assert_eq!(NotReady::Draining.to_string(), "draining");
        assert_eq!(status(Err(NotReady::NatsDisconnected)), ServingStatus::NotServing);
        assert_eq!(status(Ok(())), ServingStatus::Serving);
    }
}
