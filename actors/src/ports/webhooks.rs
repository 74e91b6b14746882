//! Sending one webhook request: the HTTP client, and the endpoint-safety rules it enforces when it
//! connects (which addresses it may reach, no redirects), are the adapter's.

use async_trait::async_trait;
use bytes::Bytes;

/// One POST to a subscriber's endpoint.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    pub url: String,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

/// What the endpoint answered: its status, or why there was no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookAnswer {
    Status(u16),
    /// No answer (refused, timed out, reset, or an address the sender may not reach).
    Failed(String),
}

impl WebhookAnswer {
    pub fn is_success(&self) -> bool {
        matches!(self, WebhookAnswer::Status(s) if (200..300).contains(s))
    }
}

#[async_trait]
pub trait WebhookSender: Send + Sync + 'static {
    async fn post(&self, request: WebhookRequest) -> WebhookAnswer;
    /// Why the sender will not deliver to `url` (not http(s), or an address it may not reach);
    /// `None` when it will.
    async fn refuse_endpoint(&self, url: &str) -> Option<String>;
}
