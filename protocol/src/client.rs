//! A small HTTP client for the Broker API, used by the CLI, the benchmark and the black-box tests.

use crate::events::OutboxEntry;
use crate::problem::ProblemDetails;
use crate::resource::{ResourceConfiguration, ResourceUpdate, ServiceOwnerOverview};
use crate::transfer::{
    FileTransferDetails, FileTransferInitialize, FileTransferInitializeResponse,
    FileTransferOverview,
};
use crate::API_BASE;
use reqwest::{Method, RequestBuilder, Response};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("HTTP {status}: {body}")]
    Status {
        status: u16,
        problem: Option<Box<ProblemDetails>>,
        body: String,
    },
}

impl ClientError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            ClientError::Http(e) => e.status().map(|s| s.as_u16()),
        }
    }

    /// Network trouble and busy or restarting servers are worth another try; refusals are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Http(e) => !e.is_builder(),
            ClientError::Status { status, .. } => *status >= 500 || matches!(status, 408 | 429),
        }
    }

    /// The `BRO-xxxxx` code of a ProblemDetails reply.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Status {
                problem: Some(p), ..
            } => p.code.as_deref(),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct BrokerClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl BrokerClient {
    /// `base_url` is the server root, e.g. `http://127.0.0.1:8080`.
    pub fn new(base_url: &str) -> Self {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .expect("a default reqwest client builds");
        BrokerClient {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            token: None,
        }
    }

    /// The same client (sharing connections) acting with another bearer token.
    pub fn with_token(&self, token: impl Into<String>) -> Self {
        BrokerClient {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    /// The underlying HTTP client (shared connection pool), e.g. to fetch other URLs the same way.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The bearer token this client sends, if any (for requests to URLs the server hands out).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// An API request (`path` below `/broker/api/v1`) carrying the bearer token.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let builder = self
            .http
            .request(method, format!("{}{}{}", self.base, API_BASE, path));
        match &self.token {
            Some(t) => builder.bearer_auth(t),
            None => builder,
        }
    }

    /// The response if it is a success, else its status and body (a ProblemDetails when it is one).
    pub async fn checked(response: Response) -> Result<Response, ClientError> {
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        let problem = serde_json::from_str(&body).ok().map(Box::new);
        Err(ClientError::Status {
            status,
            problem,
            body,
        })
    }

    async fn send(builder: RequestBuilder) -> Result<Response, ClientError> {
        Self::checked(builder.send().await?).await
    }

    pub async fn initialize(&self, body: &FileTransferInitialize) -> Result<Uuid, ClientError> {
        let r = Self::send(self.request(Method::POST, "/filetransfer").json(body)).await?;
        Ok(r.json::<FileTransferInitializeResponse>()
            .await?
            .file_transfer_id)
    }

    /// A binary upload of the whole file in one request.
    pub async fn upload(
        &self,
        id: Uuid,
        body: impl Into<reqwest::Body>,
    ) -> Result<(), ClientError> {
        Self::send(
            self.request(Method::POST, &format!("/filetransfer/{id}/upload"))
                .header("content-type", "application/octet-stream")
                .body(body),
        )
        .await?;
        Ok(())
    }

    pub async fn overview(&self, id: Uuid) -> Result<FileTransferOverview, ClientError> {
        let r = Self::send(self.request(Method::GET, &format!("/filetransfer/{id}"))).await?;
        Ok(r.json().await?)
    }

    pub async fn details(&self, id: Uuid) -> Result<FileTransferDetails, ClientError> {
        let r =
            Self::send(self.request(Method::GET, &format!("/filetransfer/{id}/details"))).await?;
        Ok(r.json().await?)
    }

    /// Search with query parameters such as `[("resourceId", "r"), ("status", "Published")]`.
    pub async fn search(&self, query: &[(&str, &str)]) -> Result<Vec<Uuid>, ClientError> {
        let r = Self::send(self.request(Method::GET, "/filetransfer").query(query)).await?;
        Ok(r.json().await?)
    }

    /// Starts a download (optionally with a `Range` header value); the body streams from the response.
    pub async fn download(&self, id: Uuid, range: Option<&str>) -> Result<Response, ClientError> {
        let mut builder = self.request(Method::GET, &format!("/filetransfer/{id}/download"));
        if let Some(range) = range {
            builder = builder.header("range", range);
        }
        Self::send(builder).await
    }

    pub async fn confirm_download(&self, id: Uuid) -> Result<(), ClientError> {
        Self::send(self.request(Method::POST, &format!("/filetransfer/{id}/confirmdownload")))
            .await?;
        Ok(())
    }

    pub async fn create_service_owner(&self, name: &str) -> Result<(), ClientError> {
        Self::send(
            self.request(Method::POST, "/serviceowner")
                .json(&serde_json::json!({ "name": name })),
        )
        .await?;
        Ok(())
    }

    pub async fn service_owner(&self) -> Result<ServiceOwnerOverview, ClientError> {
        Ok(Self::send(self.request(Method::GET, "/serviceowner"))
            .await?
            .json()
            .await?)
    }

    pub async fn configure_resource(
        &self,
        resource_id: &str,
        update: &ResourceUpdate,
    ) -> Result<(), ClientError> {
        Self::send(
            self.request(Method::PUT, &format!("/resource/{resource_id}"))
                .json(update),
        )
        .await?;
        Ok(())
    }

    pub async fn resource(&self, resource_id: &str) -> Result<ResourceConfiguration, ClientError> {
        let r = Self::send(self.request(Method::GET, &format!("/resource/{resource_id}"))).await?;
        Ok(r.json().await?)
    }

    /// Outbox entries with a sequence number above `after`.
    pub async fn events(&self, after: i64, limit: u32) -> Result<Vec<OutboxEntry>, ClientError> {
        let r = Self::send(
            self.request(Method::GET, "/maintenance/events")
                .query(&[("after", after.to_string()), ("limit", limit.to_string())]),
        )
        .await?;
        Ok(r.json().await?)
    }

    /// Creates an event subscription; the answer carries its signing secret.
    pub async fn create_subscription(
        &self,
        request: &crate::subscriptions::SubscriptionRequest,
    ) -> Result<crate::subscriptions::Subscription, ClientError> {
        let r = Self::send(self.request(Method::POST, "/subscriptions").json(request)).await?;
        Ok(r.json().await?)
    }

    pub async fn subscription(
        &self,
        id: i64,
    ) -> Result<crate::subscriptions::Subscription, ClientError> {
        let r = Self::send(self.request(Method::GET, &format!("/subscriptions/{id}"))).await?;
        Ok(r.json().await?)
    }

    pub async fn subscriptions(
        &self,
    ) -> Result<crate::subscriptions::SubscriptionList, ClientError> {
        let r = Self::send(self.request(Method::GET, "/subscriptions")).await?;
        Ok(r.json().await?)
    }

    pub async fn delete_subscription(&self, id: i64) -> Result<(), ClientError> {
        Self::send(self.request(Method::DELETE, &format!("/subscriptions/{id}"))).await?;
        Ok(())
    }

    /// A subscription's delivery history (the first 1000 deliveries).
    pub async fn deliveries(
        &self,
        id: i64,
    ) -> Result<Vec<crate::subscriptions::Delivery>, ClientError> {
        let path = format!("/subscriptions/{id}/deliveries?limit=1000");
        let r = Self::send(self.request(Method::GET, &path)).await?;
        Ok(r.json().await?)
    }

    /// Queues a subscription's dead-lettered deliveries again; how many.
    pub async fn redeliver(&self, id: i64) -> Result<u64, ClientError> {
        let path = format!("/subscriptions/{id}/redeliver");
        let r = Self::send(self.request(Method::POST, &path)).await?;
        Ok(r.json::<crate::subscriptions::Redelivered>()
            .await?
            .requeued)
    }

    /// Rotates a subscription's signing secret; the answer carries the new one.
    pub async fn rotate_secret(
        &self,
        id: i64,
    ) -> Result<crate::subscriptions::Subscription, ClientError> {
        let path = format!("/subscriptions/{id}/secret");
        Ok(Self::send(self.request(Method::POST, &path))
            .await?
            .json()
            .await?)
    }
}
