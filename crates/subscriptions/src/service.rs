//! The gRPC `SubscriptionService`: parses requests into commands at the edge.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hookline_auth::{
    self as auth, Reason, Refusal,
    portal::{PortalKeys, PortalLinkError, PortalToken},
};
use hookline_domain::{
    FieldError, catalog,
    config::{Command, ConfigError, ContactPatch, EndpointPatch, TenantState},
    endpoint::{self, AuthHeader, EndpointConfig, EndpointUrl, Layout, Plan, Secret, SigningSecret},
    event_type::EventType,
    events::{Email, Payload},
    filter::{self, Condition, OperatorKind},
    ids::{EndpointId, TenantId},
    ssrf::AddressPolicy,
};
use hookline_proto::subscriptions::v1::{self as pb, subscription_service_server::SubscriptionService};
use hookline_tenants::{Commands, Directory, Error, directory::WaitReason};
use tonic::{Request, Response, Status};

use crate::status;

#[derive(Clone)]
pub struct SubscriptionsApi {
    commands: Commands,
    directory: Directory,
    /// Endpoint URLs must resolve to addresses deliveries may reach.
    policy: std::sync::Arc<AddressPolicy>,
    /// Where their host names are resolved (`HOOKLINE_DNS_SERVERS`).
    dns: hookline_dns::Resolver,
    /// Signs and checks portal links.
    portal: PortalKeys,
}

impl SubscriptionsApi {
    pub fn new(
        commands: Commands,
        directory: Directory,
        policy: AddressPolicy,
        dns: hookline_dns::Resolver,
        portal: PortalKeys,
    ) -> Self {
        Self { commands, directory, policy: policy.into(), dns, portal }
    }

    /// See [`crate::target::check_target`].
    async fn check_target(&self, url: &EndpointUrl) -> Result<(), Status> {
        crate::target::check_target(url.as_str(), &self.policy, &self.dns).await.map_err(invalid)
    }

    /// The contact fields of CreateTenant and UpdateTenant: `None` leaves a
    /// field as it is, `""` removes it. The URL is checked as endpoint URLs
    /// are, since notices are sent the way webhooks are.
    async fn contact(&self, email: Option<&str>, webhook_url: Option<&str>) -> Result<ContactPatch, Status> {
        const EMAIL: &str = "operational_email";
        const URL: &str = "operational_webhook_url";
        let email = email
            .map(|e| if e.is_empty() { Ok(None) } else { Email::parse(e).map(Some) })
            .transpose()
            .map_err(|e| invalid(FieldError::new(EMAIL, e.rule)))?;
        let webhook_url = match webhook_url {
            None => None,
            Some("") => Some(None),
            Some(u) => {
                let parsed = EndpointUrl::parse(u).map_err(|e| invalid(e.under(URL)))?;
                crate::target::check_target(parsed.as_str(), &self.policy, &self.dns)
                    .await
                    .map_err(|e| invalid(FieldError::new(URL, e.rule)))?;
                Some(Some(parsed))
            }
        };
        Ok(ContactPatch { email, webhook_url })
    }
}

/// `ListTenants` page sizes.
const DEFAULT_TENANT_PAGE: usize = 50;
const MAX_TENANT_PAGE: usize = 500;
/// Portal link lifetimes.
const DEFAULT_PORTAL_TTL: u32 = 3600;
const MAX_PORTAL_TTL: u32 = 7 * 24 * 3600;

fn invalid(e: FieldError) -> Status {
    status(Error::from(ConfigError::Invalid(e)))
}

fn tenant_id(s: &str) -> Result<TenantId, Status> {
    TenantId::parse(s).map_err(|e| invalid(e.under("tenant_id")))
}

fn endpoint_id(s: &str) -> Result<EndpointId, Status> {
    EndpointId::parse(s).map_err(|e| invalid(e.under("endpoint_id")))
}

/// The opaque `ListTenants` page token: the last id of the page before.
fn tenant_page_token(last: &TenantId) -> String {
    URL_SAFE_NO_PAD.encode(last.as_str())
}

fn tenant_after(token: &str) -> Result<Option<TenantId>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || invalid(FieldError::new("page_token", "must be a `next_page_token` of ListTenants"));
    let text = URL_SAFE_NO_PAD.decode(token).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(bad)?;
    TenantId::parse(&text).map(Some).map_err(|_| bad())
}

fn rfc3339(unix_seconds: u64) -> String {
    let at = i64::try_from(unix_seconds).ok().and_then(|s| chrono::DateTime::from_timestamp(s, 0)).unwrap_or_default();
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn plan(p: i32) -> Result<Plan, Status> {
    match pb::Plan::try_from(p) {
        Ok(pb::Plan::Basic) => Ok(Plan::Basic),
        Ok(pb::Plan::Professional) => Ok(Plan::Professional),
        Ok(pb::Plan::Business) => Ok(Plan::Business),
        Ok(pb::Plan::Enterprise) => Ok(Plan::Enterprise),
        _ => Err(invalid(FieldError::new(
            "plan",
            "must be PLAN_BASIC, PLAN_PROFESSIONAL, PLAN_BUSINESS or PLAN_ENTERPRISE",
        ))),
    }
}

fn plan_to_pb(p: Plan) -> pb::Plan {
    match p {
        Plan::Basic => pb::Plan::Basic,
        Plan::Professional => pb::Plan::Professional,
        Plan::Business => pb::Plan::Business,
        Plan::Enterprise => pb::Plan::Enterprise,
    }
}

fn layout(l: i32) -> Result<Layout, Status> {
    match pb::PayloadLayout::try_from(l) {
        Ok(pb::PayloadLayout::Unspecified | pb::PayloadLayout::Envelope) => Ok(Layout::Envelope),
        Ok(pb::PayloadLayout::Flat) => Ok(Layout::Flat),
        Err(_) => Err(invalid(FieldError::new("layout", "must be PAYLOAD_LAYOUT_ENVELOPE or PAYLOAD_LAYOUT_FLAT"))),
    }
}

fn layout_to_pb(l: Layout) -> pb::PayloadLayout {
    match l {
        Layout::Envelope => pb::PayloadLayout::Envelope,
        Layout::Flat => pb::PayloadLayout::Flat,
    }
}

fn url(s: &str) -> Result<EndpointUrl, Status> {
    EndpointUrl::parse(s).map_err(|e| invalid(e.under("url")))
}

fn auth_header(h: &pb::AuthHeader) -> Result<AuthHeader, Status> {
    AuthHeader::parse(&h.name, &h.value).map_err(invalid)
}

fn event_types(names: &[String]) -> Result<Vec<EventType>, Status> {
    endpoint::parse_event_types(names).map_err(invalid)
}

fn email(s: &str) -> Result<Option<Email>, Status> {
    if s.is_empty() { Ok(None) } else { Email::parse(s).map(Some).map_err(invalid) }
}

fn description(s: &str) -> Result<String, Status> {
    endpoint::parse_description(s).map_err(invalid)
}

fn rate_limit(per_second: u32) -> Result<Option<endpoint::RateLimit>, Status> {
    endpoint::RateLimit::parse(per_second).map_err(invalid)
}

/// A request's filter conditions; errors name `filters[n].<field>`.
fn filters(conditions: &[pb::FilterCondition]) -> Result<Vec<Condition>, Status> {
    let parts = conditions.iter().map(|c| {
        let kind = match pb::FilterOperator::try_from(c.operator) {
            Ok(pb::FilterOperator::Equals) => OperatorKind::Equals,
            Ok(pb::FilterOperator::In) => OperatorKind::In,
            Ok(pb::FilterOperator::Exists) => OperatorKind::Exists,
            _ => {
                return Err(FieldError::new(
                    "operator",
                    "must be FILTER_OPERATOR_EQUALS, FILTER_OPERATOR_IN or FILTER_OPERATOR_EXISTS",
                ));
            }
        };
        Ok((c.path.as_str(), kind, c.values.as_slice()))
    });
    filter::parse_conditions(parts).map_err(invalid)
}

fn filter_to_pb(c: &Condition) -> pb::FilterCondition {
    let operator = match c.operator() {
        filter::Operator::Equals { .. } => pb::FilterOperator::Equals,
        filter::Operator::In { .. } => pb::FilterOperator::In,
        filter::Operator::Exists => pb::FilterOperator::Exists,
    };
    pb::FilterCondition {
        path: c.path().to_owned(),
        operator: operator.into(),
        values: c.operator().values().iter().map(filter::Scalar::to_json).collect(),
    }
}

pub fn tenant_to_pb(t: &TenantState) -> pb::Tenant {
    pb::Tenant {
        id: t.id.to_string(),
        plan: plan_to_pb(t.plan).into(),
        webhooks_enabled: t.webhooks_enabled,
        endpoint_limit: t.endpoint_limit() as u32,
        endpoint_count: t.endpoints.len() as u32,
        created_at: t.created_at.to_string(),
        version: t.version,
        operational_email: t.contact.email.as_ref().map(|e| e.as_str().to_owned()).unwrap_or_default(),
        operational_webhook_url: t.contact.webhook_url.as_ref().map(|u| u.redacted().into_owned()).unwrap_or_default(),
    }
}

/// The API view of an endpoint: the auth header value is always masked,
/// and so are the URL's query values (`GetEndpoint` can reveal them).
pub fn endpoint_to_pb(tenant: &TenantId, e: &EndpointConfig) -> pb::Endpoint {
    pb::Endpoint {
        id: e.id.to_string(),
        tenant_id: tenant.to_string(),
        url: e.url.redacted().into_owned(),
        auth_header: e
            .auth_header
            .as_ref()
            .map(|h| pb::AuthHeader { name: h.name().to_owned(), value: Secret::MASK.into() }),
        event_types: e.event_types.iter().map(|t| t.as_str().to_owned()).collect(),
        layout: layout_to_pb(e.layout).into(),
        enabled: e.enabled,
        description: e.description.clone(),
        created_at: e.created_at.to_string(),
        updated_at: e.updated_at.to_string(),
        disabled_reason: e.disabled_reason.clone().unwrap_or_default(),
        email: e.email.as_ref().map(|m| m.as_str().to_owned()).unwrap_or_default(),
        rate_limit: e.rate_limit.map_or(0, endpoint::RateLimit::per_second),
        filters: e.filters.iter().map(filter_to_pb).collect(),
    }
}

impl SubscriptionsApi {
    /// The tenant as the stream has it now (a change acknowledged a moment
    /// ago through another replica included).
    async fn tenant(&self, id: &TenantId) -> Result<std::sync::Arc<TenantState>, Status> {
        self.directory.sync_tenant(id, WaitReason::Read).await.map_err(status)?;
        self.directory.tenant(id).ok_or_else(|| status(ConfigError::TenantNotFound(id.clone()).into()))
    }

    async fn endpoint(&self, tenant: &TenantId, id: &EndpointId) -> Result<std::sync::Arc<EndpointConfig>, Status> {
        let t = self.tenant(tenant).await?;
        t.endpoints.get(id).cloned().ok_or_else(|| status(ConfigError::EndpointNotFound(id.clone()).into()))
    }

    /// The tenant for `Resolve`: as of at least `min_seq` (the config
    /// sequence ingest stamped on the event), waiting up to
    /// [`hookline_tenants::directory::SYNC_WAIT`] for this replica to apply it, else
    /// UNAVAILABLE (fan-out retries). Without a sequence (events stored
    /// before ingest stamped them), a tenant missing here is looked up on
    /// the stream first. `NOT_FOUND` therefore always means the tenant does
    /// not exist, never that this replica lags.
    async fn resolve_tenant(&self, id: &TenantId, min_seq: u64) -> Result<std::sync::Arc<TenantState>, Status> {
        use hookline_tenants::directory::SYNC_WAIT;
        if min_seq > 0 {
            self.directory.reach(id, min_seq, SYNC_WAIT, WaitReason::Resolve).await.map_err(status)?;
        }
        if let Some(t) = self.directory.tenant(id) {
            return Ok(t);
        }
        if min_seq == 0 {
            self.directory.sync_tenant(id, WaitReason::Resolve).await.map_err(status)?;
        }
        self.directory.tenant(id).ok_or_else(|| status(ConfigError::TenantNotFound(id.clone()).into()))
    }

    async fn run(&self, tenant: &TenantId, cmd: Command) -> Result<std::sync::Arc<TenantState>, Status> {
        self.commands.execute(tenant, cmd).await.map_err(status)
    }
}

#[tonic::async_trait]
impl SubscriptionService for SubscriptionsApi {
    async fn create_tenant(&self, req: Request<pb::CreateTenantRequest>) -> Result<Response<pb::Tenant>, Status> {
        auth::check_operator(&req)?;
        let r = req.into_inner();
        let id = tenant_id(&r.tenant_id)?;
        let (email, url) = (Some(r.operational_email.as_str()), Some(r.operational_webhook_url.as_str()));
        let contact = self.contact(email.filter(|e| !e.is_empty()), url.filter(|u| !u.is_empty())).await?;
        let cmd = Command::CreateTenant { plan: plan(r.plan)?, webhooks_enabled: r.webhooks_enabled, contact };
        let t = self.run(&id, cmd).await?;
        Ok(Response::new(tenant_to_pb(&t)))
    }

    async fn get_tenant(&self, req: Request<pb::GetTenantRequest>) -> Result<Response<pb::Tenant>, Status> {
        auth::check_tenant(&req, &req.get_ref().tenant_id)?;
        let id = tenant_id(&req.get_ref().tenant_id)?;
        let t = self.tenant(&id).await?;
        Ok(Response::new(tenant_to_pb(&t)))
    }

    async fn update_tenant(&self, req: Request<pb::UpdateTenantRequest>) -> Result<Response<pb::Tenant>, Status> {
        auth::check_tenant(&req, &req.get_ref().tenant_id)?;
        if req.get_ref().plan.is_some() {
            // Plans are billing: only the operator changes them.
            auth::check_operator(&req)?;
        }
        let r = req.into_inner();
        let id = tenant_id(&r.tenant_id)?;
        let contact = self.contact(r.operational_email.as_deref(), r.operational_webhook_url.as_deref()).await?;
        let cmd = Command::UpdateTenant {
            plan: r.plan.map(plan).transpose()?,
            webhooks_enabled: r.webhooks_enabled,
            contact,
        };
        let t = self.run(&id, cmd).await?;
        Ok(Response::new(tenant_to_pb(&t)))
    }

    async fn get_tenant_notice_secret(
        &self,
        req: Request<pb::GetTenantNoticeSecretRequest>,
    ) -> Result<Response<pb::TenantNoticeSecret>, Status> {
        auth::check_tenant(&req, &req.get_ref().tenant_id)?;
        let id = tenant_id(&req.get_ref().tenant_id)?;
        let t = self.tenant(&id).await?;
        let Some(secret) = &t.contact.secret else {
            let why = format!("tenant `{id}` has no operational contact, so no notice secret");
            return Err(Refusal::new(Reason::NoticeSecretNotFound, why).with("tenant_id", &id).into());
        };
        Ok(Response::new(pb::TenantNoticeSecret { tenant_id: id.to_string(), secret: secret.expose().to_owned() }))
    }

    async fn delete_tenant(
        &self,
        req: Request<pb::DeleteTenantRequest>,
    ) -> Result<Response<pb::DeleteTenantResponse>, Status> {
        auth::check_operator(&req)?;
        let r = req.into_inner();
        let id = tenant_id(&r.tenant_id)?;
        let deletion = self.commands.delete_tenant(&id, r.confirm).await.map_err(status)?;
        Ok(Response::new(pb::DeleteTenantResponse {
            tenant_id: id.to_string(),
            endpoints: deletion.tenant.as_ref().map_or(0, |t| t.endpoints.len() as u32),
            already_deleted: deletion.tenant.is_none(),
            messages_erased: deletion.erased.messages,
            version: deletion.tombstone,
        }))
    }

    async fn create_endpoint(&self, req: Request<pb::CreateEndpointRequest>) -> Result<Response<pb::Endpoint>, Status> {
        auth::check_tenant(&req, &req.get_ref().tenant_id)?;
        let r = req.into_inner();
        let id = tenant_id(&r.tenant_id)?;
        let target = url(&r.url)?;
        self.check_target(&target).await?;
        let cmd = Command::CreateEndpoint {
            email: email(&r.email)?,
            url: target,
            auth_header: r.auth_header.as_ref().map(auth_header).transpose()?,
            event_types: event_types(&r.event_types)?,
            layout: layout(r.layout)?,
            enabled: !r.disabled,
            description: description(&r.description)?,
            rate_limit: rate_limit(r.rate_limit)?,
            filters: filters(&r.filters)?,
        };
        let before = self.tenant(&id).await.ok();
        let t = self.run(&id, cmd).await?;
        let created = t
            .endpoints
            .values()
            .filter(|e| before.as_ref().is_none_or(|b| !b.endpoints.contains_key(&e.id)))
            .max_by(|a, b| a.id.cmp(&b.id))
            .ok_or_else(|| Refusal::new(Reason::Internal, "created endpoint not found in index"))?;
        tracing::info!(tenant = %id, endpoint = %created.id, "endpoint created");
        Ok(Response::new(endpoint_to_pb(&id, created)))
    }

    async fn get_endpoint(&self, req: Request<pb::GetEndpointRequest>) -> Result<Response<pb::Endpoint>, Status> {
        auth::check_tenant(&req, &req.get_ref().tenant_id)?;
        let r = req.get_ref();
        let (t, e) = (tenant_id(&r.tenant_id)?, endpoint_id(&r.endpoint_id)?);
        let endpoint = self.endpoint(&t, &e).await?;
        let mut view = endpoint_to_pb(&t, &endpoint);
        if r.reveal_url {
            view.url = endpoint.url.as_str().to_owned();
        }
        Ok(Response::new(view))
    }

    async fn list_endpoints(
        &self,
        req: Request<pb::ListEndpointsRequest>,
    ) -> Result<Response<pb::ListEndpointsResponse>, Status> {
        auth::check_tenant(&req, &req.get_ref().tenant_id)?;
        let t = tenant_id(&req.get_ref().tenant_id)?;
        let tenant = self.tenant(&t).await?;
        let endpoints = tenant.endpoints.values().map(|e| endpoint_to_pb(&t, e)).collect();
        Ok(Response::new(pb::ListEndpointsResponse { endpoints }))
    }

    async fn update_endpoint(&self, req: Request<pb::UpdateEndpointRequest>) -> Result<Response<pb::Endpoint>, Status> {
        auth::check_tenant(&req, &req.get_ref().tenant_id)?;
        let r = req.into_inner();
        let (t, e) = (tenant_id(&r.tenant_id)?, endpoint_id(&r.endpoint_id)?);
        if r.clear_auth_header && r.auth_header.is_some() {
            return Err(invalid(FieldError::new("clear_auth_header", "cannot be set together with auth_header")));
        }
        // A client that read the endpoint and sends its URL back unchanged
        // sends the masked form: that keeps the stored URL, tokens and all.
        let current_url = self.endpoint(&t, &e).await.ok().map(|ep| ep.url.clone());
        let unchanged = |given: &str| current_url.as_ref().is_some_and(|u| u.redacted() == given);
        let patch = EndpointPatch {
            url: match r.url.as_deref().filter(|u| !unchanged(u)).map(url).transpose()? {
                Some(u) => {
                    self.check_target(&u).await?;
                    Some(u)
                }
                None => None,
            },
            email: r.email.as_deref().map(email).transpose()?,
            auth_header: if r.clear_auth_header {
                Some(None)
            } else {
                r.auth_header.as_ref().map(auth_header).transpose()?.map(Some)
            },
            event_types: r.event_types.as_ref().map(|l| event_types(&l.event_types)).transpose()?,
            layout: r.layout.map(layout).transpose()?,
            enabled: r.enabled,
            description: r.description.as_deref().map(description).transpose()?,
            rate_limit: r.rate_limit.map(rate_limit).transpose()?,
            filters: r.filters.as_ref().map(|l| filters(&l.conditions)).transpose()?,
        };
        let tenant = self.run(&t, Command::UpdateEndpoint { endpoint_id: e.clone(), patch }).await?;
        let ep = tenant.endpoints.get(&e).ok_or_else(|| status(ConfigError::EndpointNotFound(e.clone()).into()))?;
        Ok(Response::new(endpoint_to_pb(&t, ep)))
    }

    async fn delete_endpoint(
        &self,
        req: Request<pb::DeleteEndpointRequest>,
    ) -> Result<Response<pb::DeleteEndpointResponse>, Status> {
        auth::check_tenant(&req, &req.get_ref().tenant_id)?;
        let r = req.get_ref();
        let (t, e) = (tenant_id(&r.tenant_id)?, endpoint_id(&r.endpoint_id)?);
        self.run(&t, Command::DeleteEndpoint { endpoint_id: e }).await?;
        Ok(Response::new(pb::DeleteEndpointResponse {}))
    }

    async fn get_endpoint_secret(
        &self,
        req: Request<pb::GetEndpointSecretRequest>,
    ) -> Result<Response<pb::EndpointSecret>, Status> {
        auth::check_tenant(&req, &req.get_ref().tenant_id)?;
        let r = req.get_ref();
        let (t, e) = (tenant_id(&r.tenant_id)?, endpoint_id(&r.endpoint_id)?);
        let ep = self.endpoint(&t, &e).await?;
        Ok(Response::new(pb::EndpointSecret { endpoint_id: e.to_string(), secret: ep.secret.expose().to_owned() }))
    }

    async fn rotate_endpoint_secret(
        &self,
        req: Request<pb::RotateEndpointSecretRequest>,
    ) -> Result<Response<pb::EndpointSecret>, Status> {
        auth::check_tenant(&req, &req.get_ref().tenant_id)?;
        let r = req.into_inner();
        let (t, e) = (tenant_id(&r.tenant_id)?, endpoint_id(&r.endpoint_id)?);
        let secret = if r.secret.is_empty() { None } else { Some(SigningSecret::parse(&r.secret).map_err(invalid)?) };
        let grace = match r.grace_period_seconds {
            None => std::time::Duration::from_secs(24 * 3600),
            Some(s) if s <= 7 * 24 * 3600 => std::time::Duration::from_secs(s.into()),
            Some(_) => return Err(invalid(FieldError::new("grace_period_seconds", "must be at most 604800 (7 days)"))),
        };
        let tenant = self.run(&t, Command::RotateSecret { endpoint_id: e.clone(), secret, grace }).await?;
        let ep = tenant.endpoints.get(&e).ok_or_else(|| status(ConfigError::EndpointNotFound(e.clone()).into()))?;
        tracing::info!(tenant = %t, endpoint = %e, "signing secret rotated");
        Ok(Response::new(pb::EndpointSecret { endpoint_id: e.to_string(), secret: ep.secret.expose().to_owned() }))
    }

    async fn resolve(&self, req: Request<pb::ResolveRequest>) -> Result<Response<pb::ResolveResponse>, Status> {
        auth::check_operator(&req)?;
        let started = std::time::Instant::now();
        let _observe = Observe(started);
        if let Some(tp) = req.metadata().get(hookline_telemetry::trace::TRACEPARENT).and_then(|v| v.to_str().ok()) {
            let trace = hookline_telemetry::trace::TraceParent::continue_or_start(Some(tp));
            let r = req.get_ref();
            tracing::debug!(trace_id = %trace.trace_id(), tenant = %r.tenant_id, event_type = %r.event_type, "resolve");
        }
        let r = req.get_ref();
        let t = tenant_id(&r.tenant_id)?;
        let event_type = EventType::parse(&r.event_type).map_err(|e| invalid(e.under("event_type")))?;
        let tenant = self.resolve_tenant(&t, r.min_config_sequence).await?;
        let endpoints = tenant
            .resolve_all(event_type, r.include_disabled)
            .map(|e| pb::ResolvedEndpoint {
                enabled: e.enabled,
                endpoint_id: e.id.to_string(),
                url: e.url.redacted().into_owned(),
                layout: layout_to_pb(e.layout).into(),
                email: e.email.as_ref().map(|m| m.as_str().to_owned()).unwrap_or_default(),
                filtered: !e.filters.is_empty(),
            })
            .collect();
        Ok(Response::new(pb::ResolveResponse { webhooks_enabled: tenant.webhooks_enabled, endpoints }))
    }

    async fn create_api_key(
        &self,
        req: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreatedApiKey>, Status> {
        auth::check_operator(&req)?;
        let r = req.into_inner();
        let t = tenant_id(&r.tenant_id)?;
        let (key, hash) = auth::generate_key();
        let key_id = format!("key_{}", &auth::hash(&key)[..16]);
        let cmd = Command::CreateApiKey { key_id: key_id.clone(), name: r.name.clone(), hash };
        let tenant = self.run(&t, cmd).await?;
        let created_at = tenant.api_keys.get(&key_id).map(|k| k.created_at.to_string()).unwrap_or_default();
        tracing::info!(tenant = %t, key_id, "API key created");
        Ok(Response::new(pb::CreatedApiKey { key_id, name: r.name, key, created_at }))
    }

    async fn list_api_keys(
        &self,
        req: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        auth::check_operator(&req)?;
        let t = tenant_id(&req.get_ref().tenant_id)?;
        let tenant = self.tenant(&t).await?;
        let mut keys: Vec<pb::ApiKey> = tenant
            .api_keys
            .iter()
            .map(|(id, k)| pb::ApiKey {
                key_id: id.clone(),
                name: k.name.clone(),
                created_at: k.created_at.to_string(),
            })
            .collect();
        keys.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(Response::new(pb::ListApiKeysResponse { keys }))
    }

    async fn revoke_api_key(
        &self,
        req: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        auth::check_operator(&req)?;
        let r = req.into_inner();
        let t = tenant_id(&r.tenant_id)?;
        self.run(&t, Command::RevokeApiKey { key_id: r.key_id.clone() }).await?;
        tracing::info!(tenant = %t, key_id = r.key_id, "API key revoked");
        Ok(Response::new(pb::RevokeApiKeyResponse {}))
    }

    async fn reseal_secrets(
        &self,
        req: Request<pb::ResealSecretsRequest>,
    ) -> Result<Response<pb::ResealSecretsResponse>, Status> {
        auth::check_operator(&req)?;
        let (mut tenants, mut endpoints) = (0, 0);
        for id in self.directory.tenant_ids() {
            let tenant = self.run(&id, Command::Reseal).await?;
            tenants += 1;
            endpoints += tenant.endpoints.len() as u32;
        }
        tracing::info!(tenants, endpoints, "secrets re-sealed under the current master key");
        Ok(Response::new(pb::ResealSecretsResponse { tenants, endpoints }))
    }

    async fn compact_config(
        &self,
        req: Request<pb::CompactConfigRequest>,
    ) -> Result<Response<pb::CompactConfigResponse>, Status> {
        auth::check_operator(&req)?;
        let min_events = u64::from(req.into_inner().min_events);
        let r = self.commands.compact_all(min_events).await;
        tracing::info!(min_events, tenants = r.tenants, purged = r.purged, failed = r.failed, "config compacted");
        Ok(Response::new(pb::CompactConfigResponse { tenants: r.tenants, purged: r.purged, failed: r.failed }))
    }

    async fn list_event_types(
        &self,
        req: Request<pb::ListEventTypesRequest>,
    ) -> Result<Response<pb::ListEventTypesResponse>, Status> {
        auth::principal(&req)?;
        let event_types = EventType::ALL
            .into_iter()
            .map(|t| pb::EventTypeInfo {
                name: t.as_str().to_owned(),
                group: catalog::group(t).title().to_owned(),
                description: catalog::description(t).to_owned(),
                json_schema: Payload::json_schema(t).to_string(),
                example: catalog::example_event(t).to_string(),
            })
            .collect();
        Ok(Response::new(pb::ListEventTypesResponse { event_types }))
    }

    async fn list_tenants(
        &self,
        req: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        auth::check_operator(&req)?;
        let r = req.into_inner();
        let size = match r.page_size as usize {
            0 => DEFAULT_TENANT_PAGE,
            n if n > MAX_TENANT_PAGE => {
                return Err(invalid(FieldError::new("page_size", format!("must be at most {MAX_TENANT_PAGE}"))));
            }
            n => n,
        };
        let after = tenant_after(&r.page_token)?;
        // Tenants created a moment ago through another replica are listed too.
        self.directory.catch_up().await.map_err(status)?;
        let page = self.directory.find_tenants(&r.query, after.as_ref(), size);
        let next_page_token =
            page.tenants.last().filter(|_| page.more).map(|t| tenant_page_token(&t.id)).unwrap_or_default();
        Ok(Response::new(pb::ListTenantsResponse {
            tenants: page.tenants.iter().map(|t| tenant_to_pb(t)).collect(),
            next_page_token,
            total_matching: u32::try_from(page.total).unwrap_or(u32::MAX),
        }))
    }

    async fn create_portal_link(
        &self,
        req: Request<pb::CreatePortalLinkRequest>,
    ) -> Result<Response<pb::PortalLink>, Status> {
        auth::check_operator(&req)?;
        let r = req.into_inner();
        let id = tenant_id(&r.tenant_id)?;
        let ttl = match r.ttl_seconds {
            0 => DEFAULT_PORTAL_TTL,
            n if n > MAX_PORTAL_TTL => {
                return Err(invalid(FieldError::new(
                    "ttl_seconds",
                    format!("must be at most {MAX_PORTAL_TTL} (7 days)"),
                )));
            }
            n => n,
        };
        self.tenant(&id).await?;
        let (token, expires_at) = self.portal.mint(&id, std::time::Duration::from_secs(ttl.into()));
        tracing::info!(tenant = %id, ttl_seconds = ttl, "portal link created");
        Ok(Response::new(pb::PortalLink {
            token: token.to_string(),
            tenant_id: id.to_string(),
            expires_at: rfc3339(expires_at),
        }))
    }

    async fn redeem_portal_link(
        &self,
        req: Request<pb::RedeemPortalLinkRequest>,
    ) -> Result<Response<pb::PortalSession>, Status> {
        auth::check_operator(&req)?;
        let refused = |why: String| {
            tracing::info!(why, "portal link refused");
            Status::from(Refusal::new(Reason::InvalidPortalLink, why))
        };
        let token = PortalToken::parse(&req.get_ref().token).map_err(|e| refused(e.to_string()))?;
        let grant = self.portal.verify(&token).map_err(|e| match e {
            PortalLinkError::Expired { expired_at } => {
                refused(format!("portal link expired at {}", rfc3339(expired_at)))
            }
            e => refused(e.to_string()),
        })?;
        match self.tenant(&grant.tenant).await {
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::NotFound => {
                return Err(refused(format!("portal link: tenant `{}` does not exist", grant.tenant)));
            }
            Err(s) => return Err(s),
        }
        Ok(Response::new(pb::PortalSession {
            tenant_id: grant.tenant.to_string(),
            expires_at: rfc3339(grant.expires_at),
        }))
    }
}

/// Records `Resolve` latency when dropped, whatever the outcome.
struct Observe(std::time::Instant);

impl Drop for Observe {
    fn drop(&mut self) {
        hookline_telemetry::metrics().resolve_duration.observe(self.0.elapsed().as_secs_f64());
    }
}
