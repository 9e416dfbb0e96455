//! The tenant aggregate. Commands are decided against the current state into
//! config events; events are applied with [`TenantState::evolve`], which
//! cannot fail. The config stream holds the events; everything else (the
//! in-memory index, Postgres projections) is derived from them.

use std::{collections::BTreeMap, sync::Arc};

use serde::{Deserialize, Serialize};

use crate::{
    FieldError,
    endpoint::{AuthHeader, EndpointConfig, EndpointUrl, ExpiringSecret, Layout, Plan, RateLimit, SigningSecret},
    event_type::EventType,
    events::{Email, Timestamp},
    filter::{self, Condition},
    ids::{EndpointId, TenantId},
};

/// A change to a tenant, as recorded on `hookline.config.<tenant_id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ConfigEvent {
    #[serde(rename = "tenant.created")]
    TenantCreated { tenant_id: TenantId, plan: Plan, webhooks_enabled: bool, at: Timestamp },
    #[serde(rename = "tenant.plan_changed")]
    PlanChanged { plan: Plan, at: Timestamp },
    #[serde(rename = "tenant.webhooks_toggled")]
    WebhooksToggled { enabled: bool, at: Timestamp },
    /// Carries the whole operational contact as it is after the change
    /// (its secret sealed like endpoint secrets).
    #[serde(rename = "tenant.contact_changed")]
    ContactChanged { contact: OperationalContact, at: Timestamp },
    #[serde(rename = "endpoint.created")]
    EndpointCreated { endpoint: EndpointConfig, at: Timestamp },
    /// Carries the whole endpoint as it is after the change.
    #[serde(rename = "endpoint.updated")]
    EndpointUpdated { endpoint: EndpointConfig, at: Timestamp },
    #[serde(rename = "endpoint.deleted")]
    EndpointDeleted { endpoint_id: EndpointId, at: Timestamp },
    #[serde(rename = "endpoint.secret_rotated")]
    SecretRotated {
        endpoint_id: EndpointId,
        secret: SigningSecret,
        /// Until when the replaced secret keeps signing (absent: not at all).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous_expires_at: Option<Timestamp>,
        at: Timestamp,
    },
    /// A tenant API key; only its SHA-256 hash is ever stored.
    #[serde(rename = "api_key.created")]
    ApiKeyCreated { key_id: String, name: String, hash: String, at: Timestamp },
    #[serde(rename = "api_key.revoked")]
    ApiKeyRevoked { key_id: String, at: Timestamp },
    /// Hookline (not the tenant) disabled the endpoint, e.g. after `410 Gone`.
    #[serde(rename = "endpoint.disabled")]
    EndpointDisabled { endpoint_id: EndpointId, reason: String, at: Timestamp },
    /// The tenant's whole state as every event before it on the subject made
    /// it; see [`Snapshot`].
    #[serde(rename = "tenant.snapshot")]
    TenantSnapshot { snapshot: Snapshot, at: Timestamp },
    /// The tombstone: the tenant, its endpoints, secrets and API keys are
    /// gone. Every earlier event of the tenant is purged from the stream
    /// after this one is stored; the id may be created again afterwards.
    #[serde(rename = "tenant.deleted")]
    TenantDeleted { at: Timestamp },
}

impl ConfigEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TenantCreated { .. } => "tenant.created",
            Self::PlanChanged { .. } => "tenant.plan_changed",
            Self::WebhooksToggled { .. } => "tenant.webhooks_toggled",
            Self::ContactChanged { .. } => "tenant.contact_changed",
            Self::EndpointCreated { .. } => "endpoint.created",
            Self::EndpointUpdated { .. } => "endpoint.updated",
            Self::EndpointDeleted { .. } => "endpoint.deleted",
            Self::SecretRotated { .. } => "endpoint.secret_rotated",
            Self::EndpointDisabled { .. } => "endpoint.disabled",
            Self::ApiKeyCreated { .. } => "api_key.created",
            Self::ApiKeyRevoked { .. } => "api_key.revoked",
            Self::TenantSnapshot { .. } => "tenant.snapshot",
            Self::TenantDeleted { .. } => "tenant.deleted",
        }
    }
}

/// A tenant as its events made it.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantState {
    pub id: TenantId,
    pub plan: Plan,
    pub webhooks_enabled: bool,
    pub created_at: Timestamp,
    /// Ordered by id, hence by creation time. Shared, not inline: a B-tree
    /// node holds room for eleven values, so inline configs cost every
    /// tenant several KiB however few endpoints it has; and a change to one
    /// endpoint copies the tenant's map, which then copies pointers.
    pub endpoints: BTreeMap<EndpointId, Arc<EndpointConfig>>,
    /// Stream sequence of the last applied event; the OCC token.
    pub version: u64,
    /// Active API keys by id.
    pub api_keys: BTreeMap<String, ApiKey>,
    /// Events applied since the tenant's last snapshot (all of them when it
    /// has none): how much history compaction would remove.
    pub events_since_snapshot: u64,
    /// Who hears about failing and disabled endpoints.
    pub contact: OperationalContact,
}

/// Where Hookline sends a tenant's operational notices (an endpoint failing
/// for part of the auto-disable window, an endpoint disabled): an e-mail
/// address, a notification URL, or both.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OperationalContact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<EndpointUrl>,
    /// Signs every notice (Standard Webhooks headers, on the POST and on
    /// the e-mail). Made when the first contact is set, kept while one is,
    /// dropped with the last, so removing and setting a contact again gives
    /// a new secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SigningSecret>,
}

impl OperationalContact {
    /// No address to send notices to.
    pub fn is_empty(&self) -> bool {
        self.email.is_none() && self.webhook_url.is_none()
    }

    /// The contact after a change: `None` leaves a field as it is,
    /// `Some(None)` removes it.
    fn patched(&self, email: Option<Option<Email>>, webhook_url: Option<Option<EndpointUrl>>) -> Self {
        let mut next = self.clone();
        if let Some(email) = email {
            next.email = email;
        }
        if let Some(url) = webhook_url {
            next.webhook_url = url;
        }
        next.secret = match (next.is_empty(), next.secret) {
            (true, _) => None,
            (false, Some(secret)) => Some(secret),
            (false, None) => Some(SigningSecret::generate()),
        };
        next
    }
}

/// A tenant API key as stored: its hash, never the key.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub name: String,
    /// Lower-case hex SHA-256 of the key.
    pub hash: String,
    pub created_at: Timestamp,
}

/// A tenant's whole state, written as one event on its own subject so that
/// everything before it on that subject can be purged (compaction): a
/// reader that starts at the snapshot, or skips purged events to reach it,
/// ends with the same tenant as one that read the whole history. Secrets
/// inside serialise as every [`SigningSecret`] and auth header does: sealed
/// under the current master key, so a snapshot also re-seals them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub tenant_id: TenantId,
    pub plan: Plan,
    pub webhooks_enabled: bool,
    pub created_at: Timestamp,
    /// Ordered by id.
    pub endpoints: Vec<EndpointConfig>,
    pub api_keys: Vec<SnapshotApiKey>,
    #[serde(default, skip_serializing_if = "OperationalContact::is_empty")]
    pub contact: OperationalContact,
    /// The stream sequence of the last event it summarises; the snapshot
    /// is appended on condition that this is still the subject's last.
    pub through: u64,
}

/// An API key inside a [`Snapshot`]: its hash, never the key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotApiKey {
    pub key_id: String,
    pub name: String,
    pub hash: String,
    pub created_at: Timestamp,
}

impl TenantState {
    /// The event that replaces this tenant's history: its state now.
    pub fn snapshot(&self) -> ConfigEvent {
        let snapshot = Snapshot {
            tenant_id: self.id.clone(),
            plan: self.plan,
            webhooks_enabled: self.webhooks_enabled,
            created_at: self.created_at.clone(),
            endpoints: self.endpoints.values().map(|e| EndpointConfig::clone(e)).collect(),
            api_keys: self
                .api_keys
                .iter()
                .map(|(key_id, k)| SnapshotApiKey {
                    key_id: key_id.clone(),
                    name: k.name.clone(),
                    hash: k.hash.clone(),
                    created_at: k.created_at.clone(),
                })
                .collect(),
            contact: self.contact.clone(),
            through: self.version,
        };
        ConfigEvent::TenantSnapshot { snapshot, at: Timestamp::now() }
    }

    fn from_snapshot(s: &Snapshot, seq: u64) -> Self {
        TenantState {
            id: s.tenant_id.clone(),
            plan: s.plan,
            webhooks_enabled: s.webhooks_enabled,
            created_at: s.created_at.clone(),
            endpoints: s.endpoints.iter().map(|e| (e.id.clone(), Arc::new(e.clone()))).collect(),
            version: seq,
            api_keys: s
                .api_keys
                .iter()
                .map(|k| {
                    let key = ApiKey { name: k.name.clone(), hash: k.hash.clone(), created_at: k.created_at.clone() };
                    (k.key_id.clone(), key)
                })
                .collect(),
            events_since_snapshot: 0,
            contact: s.contact.clone(),
        }
    }
}

impl TenantState {
    /// Apply one event. Events that do not fit (e.g. on a missing endpoint)
    /// are ignored: the stream is the truth and was validated on write.
    ///
    /// `tenant.deleted` ends the tenant: the result is `None`, and a later
    /// `tenant.created` starts it afresh.
    pub fn evolve(state: Option<Self>, event: &ConfigEvent, seq: u64) -> Option<Self> {
        let mut s = match (state, event) {
            (_, ConfigEvent::TenantDeleted { .. }) => return None,
            (None, ConfigEvent::TenantCreated { tenant_id, plan, webhooks_enabled, at }) => TenantState {
                id: tenant_id.clone(),
                plan: *plan,
                webhooks_enabled: *webhooks_enabled,
                created_at: at.clone(),
                endpoints: BTreeMap::new(),
                version: seq,
                api_keys: BTreeMap::new(),
                events_since_snapshot: 0,
                contact: OperationalContact::default(),
            },
            (_, ConfigEvent::TenantSnapshot { snapshot, .. }) => return Some(Self::from_snapshot(snapshot, seq)),
            (None, _) => return None,
            (Some(s), _) => s,
        };
        match event {
            // Taken whole above.
            ConfigEvent::TenantCreated { .. }
            | ConfigEvent::TenantSnapshot { .. }
            | ConfigEvent::TenantDeleted { .. } => {}
            ConfigEvent::PlanChanged { plan, .. } => s.plan = *plan,
            ConfigEvent::WebhooksToggled { enabled, .. } => s.webhooks_enabled = *enabled,
            ConfigEvent::ContactChanged { contact, .. } => s.contact = contact.clone(),
            ConfigEvent::EndpointCreated { endpoint, .. } | ConfigEvent::EndpointUpdated { endpoint, .. } => {
                s.endpoints.insert(endpoint.id.clone(), Arc::new(endpoint.clone()));
            }
            ConfigEvent::EndpointDeleted { endpoint_id, .. } => {
                s.endpoints.remove(endpoint_id);
            }
            ConfigEvent::SecretRotated { endpoint_id, secret, previous_expires_at, at } => {
                if let Some(ep) = s.endpoints.get_mut(endpoint_id).map(Arc::make_mut) {
                    // Expired former secrets are dropped here, so the list stays short.
                    ep.previous_secrets.retain(|p| p.expires_at.parsed() > at.parsed());
                    if let Some(expires_at) = previous_expires_at {
                        let old = std::mem::replace(&mut ep.secret, secret.clone());
                        ep.previous_secrets.push(ExpiringSecret { secret: old, expires_at: expires_at.clone() });
                    } else {
                        ep.secret = secret.clone();
                    }
                    ep.updated_at = at.clone();
                }
            }
            ConfigEvent::ApiKeyCreated { key_id, name, hash, at } => {
                s.api_keys
                    .insert(key_id.clone(), ApiKey { name: name.clone(), hash: hash.clone(), created_at: at.clone() });
            }
            ConfigEvent::ApiKeyRevoked { key_id, .. } => {
                s.api_keys.remove(key_id);
            }
            ConfigEvent::EndpointDisabled { endpoint_id, reason, at } => {
                if let Some(ep) = s.endpoints.get_mut(endpoint_id).map(Arc::make_mut) {
                    ep.enabled = false;
                    ep.disabled_reason = Some(reason.clone());
                    ep.updated_at = at.clone();
                }
            }
        }
        s.version = seq;
        s.events_since_snapshot += 1;
        Some(s)
    }

    pub fn endpoint_limit(&self) -> usize {
        self.plan.endpoint_limit()
    }

    /// Enabled endpoints subscribed to `event_type`; none when webhooks are off.
    pub fn resolve(&self, event_type: EventType) -> impl Iterator<Item = &EndpointConfig> {
        self.resolve_all(event_type, false)
    }

    /// As [`Self::resolve`], with disabled subscribers too when `include_disabled`.
    pub fn resolve_all(&self, event_type: EventType, include_disabled: bool) -> impl Iterator<Item = &EndpointConfig> {
        self.endpoints.values().map(|e| &**e).filter(move |e| {
            self.webhooks_enabled && if include_disabled { e.subscribed(event_type) } else { e.wants(event_type) }
        })
    }
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(#[from] FieldError),
    #[error("tenant `{0}` not found")]
    TenantNotFound(TenantId),
    #[error("tenant `{0}` already exists")]
    TenantExists(TenantId),
    #[error("endpoint `{0}` not found")]
    EndpointNotFound(EndpointId),
    #[error("API key `{0}` not found")]
    ApiKeyNotFound(String),
    #[error(
        "plan limit reached: the {plan} plan allows {limit} endpoint(s) and tenant has {limit}; upgrade the plan or delete an endpoint"
    )]
    PlanLimit { plan: &'static str, limit: usize },
    #[error(
        "plan: cannot change to {plan}, which allows {limit} endpoint(s), while the tenant has {count}; delete endpoints first"
    )]
    PlanBelowCount { plan: &'static str, limit: usize, count: usize },
}

/// Changes to an endpoint; `None` leaves a field as it is.
#[derive(Debug, Default, Clone)]
pub struct EndpointPatch {
    pub url: Option<EndpointUrl>,
    /// `Some(None)` removes the e-mail target (back to HTTP).
    pub email: Option<Option<Email>>,
    /// `Some(None)` removes the header.
    pub auth_header: Option<Option<AuthHeader>>,
    pub event_types: Option<Vec<EventType>>,
    pub layout: Option<Layout>,
    pub enabled: Option<bool>,
    pub description: Option<String>,
    /// `Some(None)` removes the limit.
    pub rate_limit: Option<Option<RateLimit>>,
    /// Replaces the conditions; `Some(vec![])` removes them.
    pub filters: Option<Vec<Condition>>,
}

/// Changes to a tenant's [`OperationalContact`]; `None` leaves a field as
/// it is, `Some(None)` removes it.
#[derive(Debug, Default, Clone)]
pub struct ContactPatch {
    pub email: Option<Option<Email>>,
    pub webhook_url: Option<Option<EndpointUrl>>,
}

impl ContactPatch {
    /// The `tenant.contact_changed` event, if the patch changes anything.
    fn decide(self, current: &OperationalContact, at: &Timestamp) -> Option<ConfigEvent> {
        let next = current.patched(self.email, self.webhook_url);
        (next != *current).then(|| ConfigEvent::ContactChanged { contact: next, at: at.clone() })
    }
}

/// A request to change a tenant, already parsed.
#[derive(Debug, Clone)]
pub enum Command {
    CreateTenant {
        plan: Plan,
        webhooks_enabled: bool,
        contact: ContactPatch,
    },
    UpdateTenant {
        plan: Option<Plan>,
        webhooks_enabled: Option<bool>,
        contact: ContactPatch,
    },
    CreateEndpoint {
        url: EndpointUrl,
        email: Option<Email>,
        auth_header: Option<AuthHeader>,
        event_types: Vec<EventType>,
        layout: Layout,
        enabled: bool,
        description: String,
        rate_limit: Option<RateLimit>,
        filters: Vec<Condition>,
    },
    UpdateEndpoint {
        endpoint_id: EndpointId,
        patch: EndpointPatch,
    },
    DeleteEndpoint {
        endpoint_id: EndpointId,
    },
    /// The old secret keeps signing for `grace` (zero: it stops at once).
    RotateSecret {
        endpoint_id: EndpointId,
        secret: Option<SigningSecret>,
        grace: std::time::Duration,
    },
    DisableEndpoint {
        endpoint_id: EndpointId,
        reason: String,
    },
    /// Write every endpoint again, so its secrets are sealed under the current key.
    Reseal,
    /// `hash` is the SHA-256 of a key generated by the caller.
    CreateApiKey {
        key_id: String,
        name: String,
        hash: String,
    },
    RevokeApiKey {
        key_id: String,
    },
    /// Delete the tenant with everything it holds. `confirm` must repeat
    /// the tenant id: a guard against deleting the wrong tenant.
    DeleteTenant {
        confirm: String,
    },
}

impl Command {
    /// Metric label of the command.
    pub fn name(&self) -> &'static str {
        match self {
            Command::CreateTenant { .. } => "create_tenant",
            Command::UpdateTenant { .. } => "update_tenant",
            Command::CreateEndpoint { .. } => "create_endpoint",
            Command::UpdateEndpoint { .. } => "update_endpoint",
            Command::DeleteEndpoint { .. } => "delete_endpoint",
            Command::RotateSecret { .. } => "rotate_secret",
            Command::DisableEndpoint { .. } => "disable_endpoint",
            Command::CreateApiKey { .. } => "create_api_key",
            Command::Reseal => "reseal",
            Command::RevokeApiKey { .. } => "revoke_api_key",
            Command::DeleteTenant { .. } => "delete_tenant",
        }
    }
}

/// Decide which events a command produces against the tenant's state.
pub fn decide(
    tenant_id: &TenantId,
    state: Option<&TenantState>,
    cmd: Command,
) -> Result<Vec<ConfigEvent>, ConfigError> {
    let at = Timestamp::now();
    let Some(state) = state else {
        return match cmd {
            Command::CreateTenant { plan, webhooks_enabled, contact } => {
                let contact = contact.decide(&OperationalContact::default(), &at);
                let created = ConfigEvent::TenantCreated { tenant_id: tenant_id.clone(), plan, webhooks_enabled, at };
                Ok(std::iter::once(created).chain(contact).collect())
            }
            Command::DeleteTenant { confirm } => {
                check_confirmation(tenant_id, &confirm)?;
                Err(ConfigError::TenantNotFound(tenant_id.clone()))
            }
            _ => Err(ConfigError::TenantNotFound(tenant_id.clone())),
        };
    };
    let endpoint = |id: &EndpointId| state.endpoints.get(id).ok_or_else(|| ConfigError::EndpointNotFound(id.clone()));
    match cmd {
        Command::CreateTenant { .. } => Err(ConfigError::TenantExists(tenant_id.clone())),
        Command::UpdateTenant { plan, webhooks_enabled, contact } => {
            let mut events = Vec::new();
            if let Some(plan) = plan.filter(|p| *p != state.plan) {
                let count = state.endpoints.len();
                if count > plan.endpoint_limit() {
                    return Err(ConfigError::PlanBelowCount {
                        plan: plan.as_str(),
                        limit: plan.endpoint_limit(),
                        count,
                    });
                }
                events.push(ConfigEvent::PlanChanged { plan, at: at.clone() });
            }
            if let Some(enabled) = webhooks_enabled.filter(|e| *e != state.webhooks_enabled) {
                events.push(ConfigEvent::WebhooksToggled { enabled, at: at.clone() });
            }
            events.extend(contact.decide(&state.contact, &at));
            Ok(events)
        }
        Command::CreateEndpoint {
            url,
            email,
            auth_header,
            event_types,
            layout,
            enabled,
            description,
            rate_limit,
            filters,
        } => {
            filter::check_against_schemas(&filters, &event_types)?;
            let limit = state.endpoint_limit();
            if state.endpoints.len() >= limit {
                return Err(ConfigError::PlanLimit { plan: state.plan.as_str(), limit });
            }
            let endpoint = EndpointConfig {
                id: EndpointId::generate(),
                url,
                email,
                auth_header,
                event_types,
                layout,
                enabled,
                description,
                rate_limit,
                filters,
                secret: SigningSecret::generate(),
                previous_secrets: Vec::new(),
                created_at: at.clone(),
                updated_at: at.clone(),
                disabled_reason: None,
            };
            Ok(vec![ConfigEvent::EndpointCreated { endpoint, at }])
        }
        Command::UpdateEndpoint { endpoint_id, patch } => {
            let mut ep = EndpointConfig::clone(endpoint(&endpoint_id)?);
            let before = ep.clone();
            if let Some(url) = patch.url {
                ep.url = url;
            }
            if let Some(email) = patch.email {
                ep.email = email;
            }
            if let Some(h) = patch.auth_header {
                ep.auth_header = h;
            }
            if let Some(t) = patch.event_types {
                ep.event_types = t;
            }
            if let Some(l) = patch.layout {
                ep.layout = l;
            }
            if let Some(r) = patch.rate_limit {
                ep.rate_limit = r;
            }
            // A new type list is held to the filters kept, and new filters
            // to the types, so the saved pair always fits the schemas.
            if patch.filters.is_some() || ep.event_types != before.event_types {
                if let Some(f) = patch.filters {
                    ep.filters = f;
                }
                filter::check_against_schemas(&ep.filters, &ep.event_types)?;
            }
            if let Some(e) = patch.enabled {
                if e {
                    ep.disabled_reason = None;
                }
                ep.enabled = e;
            }
            if let Some(d) = patch.description {
                ep.description = d;
            }
            if ep == before {
                return Ok(vec![]);
            }
            ep.updated_at = at.clone();
            Ok(vec![ConfigEvent::EndpointUpdated { endpoint: ep, at }])
        }
        Command::DeleteEndpoint { endpoint_id } => {
            endpoint(&endpoint_id)?;
            Ok(vec![ConfigEvent::EndpointDeleted { endpoint_id, at }])
        }
        Command::RotateSecret { endpoint_id, secret, grace } => {
            endpoint(&endpoint_id)?;
            let secret = secret.unwrap_or_else(SigningSecret::generate);
            let previous_expires_at = (!grace.is_zero()).then(|| {
                let until = chrono::Utc::now() + chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::days(7));
                Timestamp::from_utc(until)
            });
            Ok(vec![ConfigEvent::SecretRotated { endpoint_id, secret, previous_expires_at, at }])
        }
        Command::DisableEndpoint { endpoint_id, reason } => {
            let ep = endpoint(&endpoint_id)?;
            if !ep.enabled {
                return Ok(vec![]);
            }
            Ok(vec![ConfigEvent::EndpointDisabled { endpoint_id, reason, at }])
        }
        Command::Reseal => Ok(state
            .endpoints
            .values()
            .map(|e| ConfigEvent::EndpointUpdated { endpoint: EndpointConfig::clone(e), at: at.clone() })
            .collect()),
        Command::CreateApiKey { key_id, name, hash } => {
            if name.chars().count() > 100 {
                return Err(FieldError::new("name", "must be at most 100 characters").into());
            }
            Ok(vec![ConfigEvent::ApiKeyCreated { key_id, name, hash, at }])
        }
        Command::RevokeApiKey { key_id } => {
            if !state.api_keys.contains_key(&key_id) {
                return Err(ConfigError::ApiKeyNotFound(key_id));
            }
            Ok(vec![ConfigEvent::ApiKeyRevoked { key_id, at }])
        }
        Command::DeleteTenant { confirm } => {
            check_confirmation(tenant_id, &confirm)?;
            Ok(vec![ConfigEvent::TenantDeleted { at }])
        }
    }
}

/// A tenant is deleted only when the caller typed its id a second time.
fn check_confirmation(tenant_id: &TenantId, confirm: &str) -> Result<(), ConfigError> {
    if confirm != tenant_id.as_str() {
        return Err(FieldError::new("confirm", format!("must repeat the tenant id `{tenant_id}` to delete it")).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(events: &[ConfigEvent]) -> Option<TenantState> {
        events.iter().enumerate().fold(None, |s, (i, e)| TenantState::evolve(s, e, i as u64 + 1))
    }

    fn create_endpoint() -> Command {
        Command::CreateEndpoint {
            url: EndpointUrl::parse("https://erp.example.com/h").unwrap(),
            email: None,
            auth_header: None,
            event_types: vec![],
            layout: Layout::Envelope,
            enabled: true,
            description: String::new(),
            rate_limit: None,
            filters: Vec::new(),
        }
    }

    #[test]
    fn plan_limit_holds_and_downgrade_below_count_is_refused() {
        let t = TenantId::parse("acme").unwrap();
        let mut events = decide(
            &t,
            None,
            Command::CreateTenant { plan: Plan::Basic, webhooks_enabled: true, contact: ContactPatch::default() },
        )
        .unwrap();
        let s = given(&events).unwrap();
        events.extend(decide(&t, Some(&s), create_endpoint()).unwrap());
        let s = given(&events).unwrap();
        assert_eq!(s.endpoints.len(), 1);
        assert!(matches!(decide(&t, Some(&s), create_endpoint()), Err(ConfigError::PlanLimit { limit: 1, .. })));

        let mut events = decide(
            &t,
            None,
            Command::CreateTenant { plan: Plan::Business, webhooks_enabled: true, contact: ContactPatch::default() },
        )
        .unwrap();
        for _ in 0..2 {
            let s = given(&events).unwrap();
            events.extend(decide(&t, Some(&s), create_endpoint()).unwrap());
        }
        let s = given(&events).unwrap();
        let err = decide(
            &t,
            Some(&s),
            Command::UpdateTenant { plan: Some(Plan::Basic), webhooks_enabled: None, contact: ContactPatch::default() },
        )
        .unwrap_err();
        assert!(err.to_string().contains("allows 1 endpoint(s), while the tenant has 2"), "{err}");
    }

    fn run(events: &mut Vec<ConfigEvent>, t: &TenantId, cmd: Command) {
        let s = given(events);
        events.extend(decide(t, s.as_ref(), cmd).unwrap());
    }

    /// The state a history made, without the fields that say where it was read.
    fn content(s: &TenantState) -> TenantState {
        TenantState { version: 0, events_since_snapshot: 0, ..s.clone() }
    }

    #[test]
    fn a_snapshot_makes_the_same_tenant_as_its_history_and_keeps_secrets_sealed() {
        use base64::Engine;
        let key = |b: u8| base64::engine::general_purpose::STANDARD.encode([b; 32]);
        crate::seal::install(crate::seal::Keyring::parse(&key(9), &[&key(7)], "HOOKLINE_MASTER_KEY").unwrap());
        let t = TenantId::parse("acme").unwrap();
        let mut events = Vec::new();
        run(
            &mut events,
            &t,
            Command::CreateTenant { plan: Plan::Enterprise, webhooks_enabled: false, contact: ContactPatch::default() },
        );
        for _ in 0..4 {
            run(&mut events, &t, create_endpoint());
        }
        let ids: Vec<EndpointId> = given(&events).unwrap().endpoints.keys().cloned().collect();
        run(&mut events, &t, Command::DeleteEndpoint { endpoint_id: ids[0].clone() });
        let patch = EndpointPatch {
            auth_header: Some(Some(AuthHeader::parse("Authorization", "Bearer erp-token-42").unwrap())),
            ..Default::default()
        };
        run(&mut events, &t, Command::UpdateEndpoint { endpoint_id: ids[1].clone(), patch });
        let grace = std::time::Duration::from_secs(3600);
        run(&mut events, &t, Command::RotateSecret { endpoint_id: ids[1].clone(), secret: None, grace });
        run(&mut events, &t, Command::DisableEndpoint { endpoint_id: ids[2].clone(), reason: "410 Gone".into() });
        let hash = "ab".repeat(32);
        run(&mut events, &t, Command::CreateApiKey { key_id: "k1".into(), name: "erp".into(), hash: hash.clone() });
        run(&mut events, &t, Command::CreateApiKey { key_id: "k2".into(), name: "old".into(), hash: "cd".repeat(32) });
        run(&mut events, &t, Command::RevokeApiKey { key_id: "k2".into() });
        let contact = ContactPatch {
            email: Some(Some(Email::parse("ops@acme.example").unwrap())),
            webhook_url: Some(Some(EndpointUrl::parse("https://ops.acme.example/notices").unwrap())),
        };
        run(
            &mut events,
            &t,
            Command::UpdateTenant { plan: Some(Plan::Business), webhooks_enabled: Some(true), contact },
        );
        let before = given(&events).unwrap();
        assert_eq!(before.events_since_snapshot, events.len() as u64);

        let snapshot = before.snapshot();
        let stored = serde_json::to_string(&snapshot).unwrap();
        let ep = &before.endpoints[&ids[1]];
        let notice_secret = before.contact.secret.as_ref().expect("a contact has a secret").expose();
        for clear in [ep.secret.expose(), ep.previous_secrets[0].secret.expose(), "erp-token-42", notice_secret] {
            assert!(!stored.contains(clear), "a secret is in clear in the snapshot");
        }
        assert!(stored.contains("sealed:v1:"), "{stored}");
        let read: ConfigEvent = serde_json::from_str(&stored).unwrap();
        assert_eq!(read.kind(), "tenant.snapshot");

        // Read from the snapshot alone (history purged), or over a stale state.
        let seq = events.len() as u64 + 1;
        let fresh = TenantState::evolve(None, &read, seq).unwrap();
        let stale = given(&events[..3]);
        let over_stale = TenantState::evolve(stale, &read, seq).unwrap();
        assert_eq!(content(&fresh), content(&before));
        assert_eq!(fresh, over_stale);
        assert_eq!((fresh.version, fresh.events_since_snapshot), (seq, 0));
        assert_eq!(fresh.endpoints[&ids[1]].secret.key(), ep.secret.key());
        assert_eq!(fresh.api_keys.keys().collect::<Vec<_>>(), ["k1"]);

        // The tail after a snapshot applies on top of it.
        let tail = decide(&t, Some(&fresh), Command::DeleteEndpoint { endpoint_id: ids[3].clone() }).unwrap();
        let after = TenantState::evolve(Some(fresh), &tail[0], seq + 1).unwrap();
        assert_eq!(after.endpoints.len(), 2);
        assert_eq!(after.events_since_snapshot, 1);
    }

    #[test]
    fn a_deleted_tenant_has_no_state_needs_its_id_confirmed_and_can_be_created_again() {
        let t = TenantId::parse("acme").unwrap();
        let mut events = decide(
            &t,
            None,
            Command::CreateTenant { plan: Plan::Basic, webhooks_enabled: true, contact: ContactPatch::default() },
        )
        .unwrap();
        let s = given(&events).unwrap();
        events.extend(decide(&t, Some(&s), create_endpoint()).unwrap());
        let s = given(&events).unwrap();
        let refused = decide(&t, Some(&s), Command::DeleteTenant { confirm: "acm".into() }).unwrap_err();
        assert!(refused.to_string().starts_with("confirm: must repeat the tenant id `acme`"), "{refused}");
        events.extend(decide(&t, Some(&s), Command::DeleteTenant { confirm: "acme".into() }).unwrap());
        assert_eq!(events.last().map(ConfigEvent::kind), Some("tenant.deleted"));
        assert_eq!(given(&events), None);
        assert_eq!(
            decide(&t, None, Command::DeleteTenant { confirm: "acme".into() }),
            Err(ConfigError::TenantNotFound(t.clone()))
        );
        events.extend(
            decide(
                &t,
                None,
                Command::CreateTenant {
                    plan: Plan::Business,
                    webhooks_enabled: false,
                    contact: ContactPatch::default(),
                },
            )
            .unwrap(),
        );
        let again = given(&events).unwrap();
        assert!(again.endpoints.is_empty(), "nothing of the deleted tenant comes back");
        assert_eq!(again.plan, Plan::Business);
    }

    #[test]
    fn endpoints_stored_before_filters_read_with_none_and_a_type_change_is_held_to_the_filter() {
        use crate::filter::{Condition, OperatorKind};
        let t = TenantId::parse("acme").unwrap();
        let mut events = Vec::new();
        run(
            &mut events,
            &t,
            Command::CreateTenant { plan: Plan::Basic, webhooks_enabled: true, contact: ContactPatch::default() },
        );
        run(&mut events, &t, create_endpoint());
        let mut stored = serde_json::to_value(&events[1]).unwrap();
        assert!(stored["endpoint"].get("filters").is_none(), "no filter, no key: {stored}");
        stored["endpoint"].as_object_mut().unwrap().remove("filters");
        let read: ConfigEvent = serde_json::from_value(stored).unwrap();
        assert_eq!(read, events[1]);

        let s = given(&events).unwrap();
        let id = s.endpoints.keys().next().unwrap().clone();
        let channel = Condition::parse("channel", OperatorKind::Equals, &[r#""widget""#.into()]).unwrap();
        let patch = |types: Option<Vec<EventType>>, filters: Option<Vec<Condition>>| EndpointPatch {
            event_types: types,
            filters,
            ..Default::default()
        };
        let update = |patch| Command::UpdateEndpoint { endpoint_id: id.clone(), patch };
        let booked = vec![EventType::AppointmentBookingCreated];
        run(&mut events, &t, update(patch(Some(booked), Some(vec![channel.clone()]))));
        let s = given(&events).unwrap();
        assert_eq!(s.endpoints[&id].filters, [channel]);
        let refused = decide(&t, Some(&s), update(patch(Some(vec![EventType::CustomerDeleted]), None))).unwrap_err();
        assert!(refused.to_string().starts_with("filters[0].path: `channel` is not a field of `customer.deleted`"));
        run(&mut events, &t, update(patch(None, Some(vec![]))));
        assert!(given(&events).unwrap().endpoints[&id].filters.is_empty(), "an empty list removes the filter");
    }

    #[test]
    fn the_notice_secret_is_made_with_the_first_contact_kept_while_one_is_set_and_dropped_with_the_last() {
        let t = TenantId::parse("acme").unwrap();
        let email = || Some(Some(Email::parse("ops@acme.example").unwrap()));
        let url = |u: &str| Some(Some(EndpointUrl::parse(u).unwrap()));
        let create = Command::CreateTenant {
            plan: Plan::Basic,
            webhooks_enabled: true,
            contact: ContactPatch { email: email(), webhook_url: None },
        };
        let mut events = decide(&t, None, create).unwrap();
        assert_eq!(
            events.iter().map(ConfigEvent::kind).collect::<Vec<_>>(),
            ["tenant.created", "tenant.contact_changed"]
        );
        let first = given(&events).unwrap().contact.secret.expect("a secret with the first contact");
        let update = |contact| Command::UpdateTenant { plan: None, webhooks_enabled: None, contact };
        run(&mut events, &t, update(ContactPatch { email: None, webhook_url: url("https://ops.acme.example/n") }));
        let s = given(&events).unwrap();
        assert_eq!(s.contact.secret.as_ref().map(SigningSecret::expose), Some(first.expose()), "the secret is kept");
        assert_eq!(s.contact.webhook_url.as_ref().map(EndpointUrl::as_str), Some("https://ops.acme.example/n"));
        // The same contact again changes nothing.
        assert!(decide(&t, Some(&s), update(ContactPatch { email: email(), webhook_url: None })).unwrap().is_empty());
        run(&mut events, &t, update(ContactPatch { email: Some(None), webhook_url: Some(None) }));
        let s = given(&events).unwrap();
        assert_eq!(s.contact, OperationalContact::default(), "no contact, no secret");
        run(&mut events, &t, update(ContactPatch { email: email(), webhook_url: None }));
        let again = given(&events).unwrap().contact.secret.unwrap();
        assert_ne!(again.expose(), first.expose(), "setting a contact again makes a new secret");
    }

    #[test]
    fn webhooks_off_resolves_nothing() {
        let t = TenantId::parse("acme").unwrap();
        let mut events = decide(
            &t,
            None,
            Command::CreateTenant { plan: Plan::Basic, webhooks_enabled: false, contact: ContactPatch::default() },
        )
        .unwrap();
        let s = given(&events).unwrap();
        events.extend(decide(&t, Some(&s), create_endpoint()).unwrap());
        let s = given(&events).unwrap();
        assert_eq!(s.resolve(EventType::CustomerCreated).count(), 0);
        events.extend(
            decide(
                &t,
                Some(&s),
                Command::UpdateTenant { plan: None, webhooks_enabled: Some(true), contact: ContactPatch::default() },
            )
            .unwrap(),
        );
        assert_eq!(given(&events).unwrap().resolve(EventType::CustomerCreated).count(), 1);
    }

    /// Config events as the stream has held them: their times read into
    /// [`Timestamp`] and print back as the very text they were stored as.
    #[test]
    fn stored_config_events_read_and_print_back_byte_for_byte() {
        for stored in [
            r#"{"type":"tenant.created","tenant_id":"acme","plan":"basic","webhooks_enabled":true,"at":"2026-11-29T10:00:00.123Z"}"#,
            r#"{"type":"tenant.plan_changed","plan":"business","at":"2026-11-29T10:00:01.000Z"}"#,
            r#"{"type":"endpoint.deleted","endpoint_id":"ep_01KB0000000000000000000000","at":"2026-11-29T11:00:02+01:00"}"#,
            r#"{"type":"api_key.created","key_id":"key_0123456789abcdef","name":"erp","hash":"ab12","at":"2026-11-29T10:00:03.5Z"}"#,
            r#"{"type":"endpoint.disabled","endpoint_id":"ep_01KB0000000000000000000000","reason":"410 Gone","at":"2026-11-29T10:00:04.000Z"}"#,
            r#"{"type":"tenant.deleted","at":"2026-11-29T10:00:05.000Z"}"#,
        ] {
            let event: ConfigEvent = serde_json::from_str(stored).unwrap();
            assert_eq!(serde_json::to_string(&event).unwrap(), stored);
        }
        // Events with secrets print them sealed under whatever key a test
        // installed, so only their times are compared.
        let secret = format!("whsec_{}", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3");
        let rotated = format!(
            r#"{{"type":"endpoint.secret_rotated","endpoint_id":"ep_01KB0000000000000000000000","secret":"{secret}","previous_expires_at":"2026-12-06T10:00:00.000Z","at":"2026-11-29T10:00:06.000Z"}}"#
        );
        let created = format!(
            r#"{{"type":"endpoint.created","endpoint":{{"id":"ep_01KB0000000000000000000000","url":"https://erp.example.com/h","event_types":[],"layout":"envelope","enabled":true,"description":"","secret":"{secret}","previous_secrets":[{{"secret":"{secret}","expires_at":"2026-12-01T00:00:00.000Z"}}],"created_at":"2026-11-29T10:00:07.000Z","updated_at":"2026-11-29T10:00:08.000Z"}},"at":"2026-11-29T10:00:08.000Z"}}"#
        );
        for stored in [rotated, created] {
            let event: ConfigEvent = serde_json::from_str(&stored).unwrap();
            let times = |v: &serde_json::Value| {
                let mut found = Vec::new();
                for key in ["at", "previous_expires_at"] {
                    found.push(v[key].clone());
                }
                for key in ["created_at", "updated_at"] {
                    found.push(v["endpoint"][key].clone());
                }
                found.push(v["endpoint"]["previous_secrets"][0]["expires_at"].clone());
                found
            };
            let printed = serde_json::to_value(&event).unwrap();
            assert_eq!(times(&printed), times(&serde_json::from_str(&stored).unwrap()));
        }
        let bad = r#"{"type":"tenant.plan_changed","plan":"business","at":"noon"}"#;
        let e = serde_json::from_str::<ConfigEvent>(bad).unwrap_err().to_string();
        assert!(e.contains("must be an RFC 3339 date-time"), "{e}");
    }

    #[test]
    fn a_former_secret_signs_until_its_time_whatever_offset_wrote_it() {
        let t = TenantId::parse("acme").unwrap();
        let create =
            Command::CreateTenant { plan: Plan::Basic, webhooks_enabled: true, contact: ContactPatch::default() };
        let mut events = decide(&t, None, create).unwrap();
        events.extend(decide(&t, given(&events).as_ref(), create_endpoint()).unwrap());
        let id = given(&events).unwrap().endpoints.keys().next().unwrap().clone();
        let rotate = Command::RotateSecret {
            endpoint_id: id.clone(),
            secret: None,
            grace: std::time::Duration::from_secs(3600),
        };
        events.extend(decide(&t, given(&events).as_ref(), rotate).unwrap());
        let ep = given(&events).unwrap().endpoints[&id].clone();
        let now = chrono::Utc::now();
        assert_eq!(ep.signing_secrets(now).len(), 2);
        assert_eq!(ep.signing_secrets(now + chrono::TimeDelta::hours(2)).len(), 1);
        // The same instant written with another offset is still in force.
        let mut shifted = EndpointConfig::clone(&ep);
        let expires = shifted.previous_secrets[0].expires_at.parsed();
        let text = expires.with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap()).to_rfc3339();
        shifted.previous_secrets[0].expires_at = text.parse().unwrap();
        assert_eq!(shifted.signing_secrets(now).len(), 2);
    }
}
