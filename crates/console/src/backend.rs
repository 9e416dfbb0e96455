//! The console's gRPC clients of subscriptions and delivery.
//!
//! Every call carries the console's own credential, the operator token; a
//! tenant session is scoped by the console (its pages name only its own
//! tenant, and the services answer NOT_FOUND for ids of another tenant).
//! Channels connect lazily, so the console starts, and answers 503 pages,
//! while the services are still coming up.

use hookline_proto::{
    delivery::v1::delivery_service_client::DeliveryServiceClient,
    subscriptions::v1::subscription_service_client::SubscriptionServiceClient,
};
use tonic::{metadata::MetadataValue, transport::Channel};

/// Where the services are, and how to reach them.
#[derive(Debug, Clone, Default)]
pub struct BackendSettings {
    /// gRPC URL of SubscriptionService.
    pub subscriptions_url: String,
    /// gRPC URL of DeliveryService.
    pub delivery_url: String,
    /// PEM CA certificates trusted for `https://` URLs besides the web roots.
    pub tls_ca: Option<Vec<u8>>,
    /// PEM certificate and key presented to services that require one.
    pub tls_identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// Why the clients could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{setting}: `{url}` is not a gRPC URL")]
    Url {
        setting: &'static str,
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("HOOKLINE_OPERATOR_TOKEN: not a valid header value")]
    Token,
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Bearer {
    pub fn new(token: Option<&str>) -> Result<Self, BackendError> {
        token.map(|t| format!("Bearer {t}").parse().map_err(|_| BackendError::Token)).transpose().map(Self)
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

pub type Authed = tonic::service::interceptor::InterceptedService<Channel, Bearer>;

/// Cheap to clone: the channels are shared.
#[derive(Clone)]
pub struct Backend {
    subscriptions: Channel,
    delivery: Channel,
    operator: Bearer,
}

impl Backend {
    pub fn new(settings: &BackendSettings, operator_token: Option<&str>) -> Result<Self, BackendError> {
        let identity = settings.tls_identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice()));
        let channel = |url: &str, setting: &'static str| {
            hookline_proto::endpoint(url, settings.tls_ca.as_deref(), identity)
                .map(|e| e.connect_timeout(std::time::Duration::from_secs(5)).connect_lazy())
                .map_err(|source| BackendError::Url { setting, url: url.to_owned(), source })
        };
        Ok(Self {
            subscriptions: channel(&settings.subscriptions_url, "HOOKLINE_SUBSCRIPTIONS_URL")?,
            delivery: channel(&settings.delivery_url, "HOOKLINE_DELIVERY_URL")?,
            operator: Bearer::new(operator_token)?,
        })
    }

    /// SubscriptionService as the operator.
    pub fn subscriptions(&self) -> SubscriptionServiceClient<Authed> {
        SubscriptionServiceClient::with_interceptor(self.subscriptions.clone(), self.operator.clone())
    }

    /// SubscriptionService with another credential (checking a tenant's API key).
    pub fn subscriptions_as(&self, bearer: Bearer) -> SubscriptionServiceClient<Authed> {
        SubscriptionServiceClient::with_interceptor(self.subscriptions.clone(), bearer)
    }

    /// DeliveryService as the operator.
    pub fn delivery(&self) -> DeliveryServiceClient<Authed> {
        DeliveryServiceClient::with_interceptor(self.delivery.clone(), self.operator.clone())
    }
}
