//! Who is calling: the operator (full access) or one tenant (an API key).
//!
//! With `HOOKLINE_OPERATOR_TOKEN` set, every call to a Hookline gRPC
//! service must carry `authorization: Bearer <token>`. Without it,
//! authentication is off and every caller is the operator: `hookline dev`
//! and services started with `HOOKLINE_ALLOW_UNAUTHENTICATED=true` only.
//! API keys are stored only as SHA-256 hashes in the tenant's aggregate.
//!
//! Every Hookline gRPC service sits behind the one [`Authenticator`]
//! interceptor; methods only check the [`Principal`] against the tenant in
//! the request ([`check_tenant`], [`check_operator`]). It is a crate of its
//! own so that the services share it without depending on one another.

pub mod portal;
pub mod status;

use std::sync::Arc;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hookline_domain::ids::TenantId;
use tonic::{Request, Status, metadata::MetadataMap};

use hookline_tenants::Directory;
pub use status::{Reason, Refusal};

pub const API_KEY_PREFIX: &str = "hlk_";

#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    Operator,
    Tenant(TenantId),
}

/// A new API key and the hash that is stored.
pub fn generate_key() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let key = format!("{API_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash(&key);
    (key, hash)
}

pub fn hash(token: &str) -> String {
    hookline_domain::signing::sha256_hex(token.as_bytes())
}

/// The tonic interceptor; also usable directly.
#[derive(Clone)]
pub struct Authenticator {
    /// SHA-256 of the operator token: compared as hashes, so timing reveals nothing of it.
    operator: Option<Arc<String>>,
    /// SHA-256 of former operator tokens, accepted during a rotation.
    previous: Arc<[String]>,
    directory: Directory,
}

impl Authenticator {
    pub fn new(operator_token: Option<&str>, directory: Directory) -> Self {
        Self {
            operator: operator_token.filter(|t| !t.is_empty()).map(|t| Arc::new(hash(t))),
            previous: Arc::from([]),
            directory,
        }
    }

    /// Also take these former operator tokens, so clients can move to a new
    /// token one by one. Ignored while authentication is off.
    pub fn also_accepting(mut self, previous: &[String]) -> Self {
        self.previous = previous.iter().filter(|t| !t.is_empty()).map(|t| hash(t)).collect();
        self
    }

    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Principal, Status> {
        let Some(operator) = &self.operator else { return Ok(Principal::Operator) };
        let token = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Refusal::new(Reason::MissingToken, "missing `authorization: Bearer <token>`"))?;
        let h = hash(token.trim());
        if &h == operator.as_ref() || self.previous.contains(&h) {
            return Ok(Principal::Operator);
        }
        if token.starts_with(API_KEY_PREFIX)
            && let Some(tenant) = self.directory.tenant_of_key(&h)
        {
            return Ok(Principal::Tenant(tenant));
        }
        Err(Refusal::new(Reason::InvalidToken, "unknown or revoked token").into())
    }
}

impl tonic::service::Interceptor for Authenticator {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let principal = self.authenticate(req.metadata())?;
        req.extensions_mut().insert(principal);
        Ok(req)
    }
}

/// The caller, as the interceptor recorded it.
pub fn principal<T>(req: &Request<T>) -> Result<Principal, Status> {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Refusal::new(Reason::Internal, "unauthenticated route").into())
}

/// The caller may act on `tenant`. Another tenant's id reads as not found,
/// so keys cannot probe which tenants exist.
pub fn check_tenant<T>(req: &Request<T>, tenant: &str) -> Result<(), Status> {
    match principal(req)? {
        Principal::Operator => Ok(()),
        Principal::Tenant(t) if t.as_str() == tenant => Ok(()),
        Principal::Tenant(_) => Err(Refusal::new(Reason::TenantNotFound, format!("tenant `{tenant}` not found"))
            .with("tenant_id", tenant)
            .into()),
    }
}

pub fn check_operator<T>(req: &Request<T>) -> Result<(), Status> {
    match principal(req)? {
        Principal::Operator => Ok(()),
        Principal::Tenant(_) => Err(Refusal::new(Reason::OperatorOnly, "this call needs the operator token").into()),
    }
}
