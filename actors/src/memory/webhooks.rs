//! A webhook sender that keeps what it was asked to send and answers with a status set by the test.

use crate::ports::webhooks::{WebhookAnswer, WebhookRequest, WebhookSender};
use async_trait::async_trait;
use std::sync::Mutex;

pub struct MemoryWebhooks {
    sent: Mutex<Vec<WebhookRequest>>,
    answer: Mutex<WebhookAnswer>,
}

impl Default for MemoryWebhooks {
    fn default() -> Self {
        MemoryWebhooks {
            sent: Mutex::default(),
            answer: Mutex::new(WebhookAnswer::Status(200)),
        }
    }
}

impl MemoryWebhooks {
    /// What every later request is answered with.
    pub fn answer_with(&self, answer: WebhookAnswer) {
        *self.answer.lock().expect("webhooks") = answer;
    }

    /// Every request sent so far, in order.
    pub fn sent(&self) -> Vec<WebhookRequest> {
        self.sent.lock().expect("webhooks").clone()
    }
}

#[async_trait]
impl WebhookSender for MemoryWebhooks {
    async fn post(&self, request: WebhookRequest) -> WebhookAnswer {
        self.sent.lock().expect("webhooks").push(request);
        self.answer.lock().expect("webhooks").clone()
    }

    async fn refuse_endpoint(&self, url: &str) -> Option<String> {
        let http = url.starts_with("http://") || url.starts_with("https://");
        (!http).then(|| "not an http or https URL".to_string())
    }
}
