//! Erasing one tenant from JetStream: every stream's subjects carry the
//! tenant id, so a purge with a subject filter removes the tenant's
//! messages at once and leaves every other tenant's untouched.
//!
//! [`tenant_filters`] is the one list of where a tenant's messages live; a
//! new stream with tenant subjects belongs in it. The one exception:
//! waiting retries are stored one subject per due second for every tenant
//! (`hookline.retry.<due>.ref`, so that a million of them are not a million
//! subjects in nats-server's memory), with the tenant in a header; erasing
//! reads those headers (headers only, no payloads) and deletes the tenant's
//! retries one by one ([`delete_tenant_retries`]). That read grows with the
//! number of waiting retries (not yet measured at a million), which an
//! erasure, rare and operator-driven, can afford; the retries hold
//! a reference to an event, not the event, and the event is purged first,
//! so a retry the read has not reached yet has nothing left to send.
//! Erasing is idempotent: a
//! purge of subjects that hold nothing purges nothing, so an erasure cut
//! short (a crash, NATS unavailable) is finished by running it again.

use async_nats::jetstream::{
    Context, ErrorCode,
    stream::{ConsumerErrorKind, DeleteMessageErrorKind, PurgeError, PurgeErrorKind},
};
use futures_util::TryStreamExt;
use hookline_domain::ids::TenantId;

use crate::{
    CONFIG_STREAM, DISPATCH_STREAM, EVENTS_STREAM, INTAKE_STREAM, OUTCOMES_STREAM, PARKED_STREAM, REJECTED_STREAM,
    RETRY_REFS, RETRY_STREAM, RETRY_TENANT_HEADER, Source, config_subject, intake_subject, rejected_subject,
    retry_tenant_filter,
};

/// Where one tenant's messages live: a stream and a subject filter that
/// matches exactly the tenant's subjects in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantFilter {
    pub stream: &'static str,
    pub subject: String,
}

/// Every (stream, filter) holding messages of `tenant`, HOOKLINE_CONFIG
/// last: its tombstone (`tenant.deleted`) is kept, everything before it goes.
pub fn tenant_filters(tenant: &TenantId) -> Vec<TenantFilter> {
    let t = tenant.as_str();
    let filter = |stream, subject: String| TenantFilter { stream, subject };
    vec![
        filter(INTAKE_STREAM, intake_subject(t)),
        filter(REJECTED_STREAM, rejected_subject(t)),
        filter(EVENTS_STREAM, format!("hookline.events.{t}.>")),
        filter(DISPATCH_STREAM, format!("hookline.dispatch.{t}.>")),
        filter(RETRY_STREAM, retry_tenant_filter(tenant)),
        filter(PARKED_STREAM, format!("hookline.parked.{t}.>")),
        filter(OUTCOMES_STREAM, format!("hookline.outcomes.{t}.>")),
        filter(CONFIG_STREAM, config_subject(tenant)),
    ]
}

/// What one erasure removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Erased {
    /// Messages purged from every stream.
    pub messages: u64,
    /// Durable consumers of the tenant's parked tasks deleted.
    pub consumers: u64,
}

/// Why an erasure stopped before it was done; running it again resumes it.
#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    #[error("reading stream {stream}: {source}")]
    Stream {
        stream: &'static str,
        #[source]
        source: Source,
    },
    #[error("purging `{subject}` from {stream}: {source}")]
    Purge {
        stream: &'static str,
        subject: String,
        #[source]
        source: Source,
    },
    #[error("deleting consumer {consumer} of {stream}: {source}")]
    Consumer {
        stream: &'static str,
        consumer: String,
        #[source]
        source: Source,
    },
}

/// Erase `tenant`'s messages from every stream, and the durable consumers
/// of its parked tasks. On HOOKLINE_CONFIG only the messages before
/// `tombstone` (the sequence of its `tenant.deleted`) go, so every process
/// still learns that the tenant is gone and a later `tenant.created` is
/// kept.
pub async fn erase_tenant(js: &Context, tenant: &TenantId, tombstone: u64) -> Result<Erased, EraseError> {
    let mut erased = Erased::default();
    for TenantFilter { stream: name, subject } in tenant_filters(tenant) {
        let stream =
            js.get_stream_no_info(name).await.map_err(|e| EraseError::Stream { stream: name, source: e.into() })?;
        if name == CONFIG_STREAM {
            erased.messages += overwrite_before(&stream, &subject, tombstone).await?;
        }
        let purge = stream.purge().filter(subject.clone());
        let purged = if name == CONFIG_STREAM { purge.sequence(tombstone).await } else { purge.await };
        match purged {
            Ok(r) => erased.messages += r.purged,
            Err(e) if is_missing_purge(&e) => {}
            Err(e) => return Err(EraseError::Purge { stream: name, subject, source: e.into() }),
        }
        if name == RETRY_STREAM {
            erased.messages += delete_tenant_retries(&stream, tenant).await?;
        }
    }
    erased.consumers = delete_parked_consumers(js, tenant).await?;
    Ok(erased)
}

/// Delete each message on `subject` before sequence `before` one by one,
/// which makes the server overwrite it in its files (a purge only drops it
/// from the index: its bytes stay in the block file until NATS compacts or
/// removes the block). Used for the config history, which holds the
/// endpoints' secrets and is short (tens of events per tenant).
async fn overwrite_before<I>(
    stream: &async_nats::jetstream::stream::Stream<I>,
    subject: &str,
    before: u64,
) -> Result<u64, EraseError> {
    let err = |source: Source| EraseError::Purge { stream: CONFIG_STREAM, subject: subject.to_owned(), source };
    let read = HeaderRead { filter: subject, batch: 1_000, memory: false };
    delete_read(stream, read, |seq, _| seq < before).await.map_err(err)
}

/// Delete the tenant's reference-layout retries from HOOKLINE_RETRY: their
/// subjects name the due second only, so they are found by
/// [`RETRY_TENANT_HEADER`], read headers only.
async fn delete_tenant_retries<I>(
    stream: &async_nats::jetstream::stream::Stream<I>,
    tenant: &TenantId,
) -> Result<u64, EraseError> {
    let err = |source: Source| EraseError::Purge { stream: RETRY_STREAM, subject: RETRY_REFS.to_owned(), source };
    let read = HeaderRead { filter: RETRY_REFS, batch: 10_000, memory: true };
    let mine = |_, headers: Option<&async_nats::HeaderMap>| {
        crate::header(headers, RETRY_TENANT_HEADER) == Some(tenant.as_str())
    };
    delete_read(stream, read, mine).await.map_err(err)
}

/// What [`delete_read`] reads: the headers of every message on `filter`, in
/// fetches of `batch`, through a consumer in memory or on disk.
struct HeaderRead<'a> {
    filter: &'a str,
    batch: usize,
    memory: bool,
}

/// Read the headers of every message `read` names and delete, a fetch at a
/// time, those `pick` chooses by sequence and headers; how many it deleted.
/// The read goes on until the consumer has nothing pending: one that
/// stopped at a quiet moment would leave messages behind and say nothing.
/// Messages stored after the consumer was made count as pending too, so
/// the read ends once it has caught up with the writers, who store nothing
/// more for a deleted tenant. Holds one fetch's sequences at a time, so a
/// million waiting retries cost a fetch's worth of memory.
async fn delete_read<I>(
    stream: &async_nats::jetstream::stream::Stream<I>,
    read: HeaderRead<'_>,
    pick: impl Fn(u64, Option<&async_nats::HeaderMap>) -> bool,
) -> Result<u64, Source> {
    use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
    use futures_util::StreamExt;
    let mut consumer = stream
        .create_consumer(pull::Config {
            filter_subject: read.filter.to_owned(),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            headers_only: true,
            memory_storage: read.memory,
            inactive_threshold: std::time::Duration::from_secs(60),
            ..Default::default()
        })
        .await?;
    let (mut deleted, mut idle) = (0, 0);
    loop {
        let mut batch =
            consumer.fetch().max_messages(read.batch).expires(std::time::Duration::from_secs(1)).messages().await?;
        let (mut picked, mut fetched) = (Vec::new(), 0);
        while let Some(msg) = batch.next().await {
            let msg = msg?;
            fetched += 1;
            let seq = crate::stream_sequence(msg.reply.as_deref()).ok_or("a message without its stream sequence")?;
            if pick(seq, msg.headers.as_ref()) {
                picked.push(seq);
            }
        }
        for seq in picked {
            match stream.delete_message(seq).await {
                Ok(_) => deleted += 1,
                // Gone already: moved by the retry mover, or erased by a
                // concurrent erasure.
                Err(e) if matches!(e.kind(), DeleteMessageErrorKind::JetStream(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let pending = consumer.info().await?.num_pending;
        if pending == 0 {
            break;
        }
        idle = if fetched == 0 { idle + 1 } else { 0 };
        if idle == 30 {
            return Err(format!("{pending} messages on {} still unread after 30 empty fetches", read.filter).into());
        }
    }
    // An ephemeral consumer goes by itself after its inactive threshold;
    // deleting it now only saves the server that wait.
    let name = consumer.cached_info().name.clone();
    let _ = stream.delete_consumer(&name).await;
    Ok(deleted)
}

/// The sweeper makes one durable consumer per parked endpoint; those of
/// the tenant's endpoints are found by their filter subject.
async fn delete_parked_consumers(js: &Context, tenant: &TenantId) -> Result<u64, EraseError> {
    let err = |source: Source| EraseError::Stream { stream: PARKED_STREAM, source };
    let stream = js.get_stream_no_info(PARKED_STREAM).await.map_err(|e| err(e.into()))?;
    let prefix = format!("hookline.parked.{}.", tenant.as_str());
    let infos: Vec<_> = stream.consumers().try_collect().await.map_err(|e| err(e.into()))?;
    let mut deleted = 0;
    for info in infos.into_iter().filter(|i| i.config.filter_subject.starts_with(&prefix)) {
        match stream.delete_consumer(&info.name).await {
            Ok(_) => deleted += 1,
            // The sweeper deletes drained consumers too: one gone already is done.
            Err(e) if matches!(e.kind(), ConsumerErrorKind::JetStream(j) if j.error_code() == ErrorCode::CONSUMER_NOT_FOUND) =>
                {}
            Err(e) => {
                return Err(EraseError::Consumer { stream: PARKED_STREAM, consumer: info.name, source: e.into() });
            }
        }
    }
    Ok(deleted)
}

/// A stream that does not exist holds nothing to erase.
fn is_missing_purge(e: &PurgeError) -> bool {
    matches!(e.kind(), PurgeErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_filter_names_only_the_tenants_subjects_and_config_comes_last() {
        let tenant = TenantId::parse("salon-1").unwrap();
        let filters = tenant_filters(&tenant);
        for f in &filters {
            let tokens: Vec<&str> = f.subject.split('.').collect();
            assert!(tokens.contains(&"salon-1"), "{f:?} names the tenant");
            assert!(!f.subject.contains("salon-1*"), "{f:?} is not a prefix match");
        }
        assert_eq!(filters.last().map(|f| f.stream), Some(CONFIG_STREAM));
        let streams: std::collections::BTreeSet<&str> = filters.iter().map(|f| f.stream).collect();
        let all: std::collections::BTreeSet<&str> = crate::ALL_STREAMS.into_iter().collect();
        assert_eq!(streams, all, "every stream with tenant subjects is erased");
    }
}
