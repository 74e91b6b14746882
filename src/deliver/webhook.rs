//! The webhook sender: reqwest with rustls, no redirects, a timeout per attempt, and a resolver that
//! drops internal addresses when they are not allowed (checked again at connect time, so a name
//! that resolves differently later still cannot reach inside).

use super::endpoint::{http_target, is_internal};
use async_trait::async_trait;
use broker_actors::ports::webhooks::{WebhookAnswer, WebhookRequest, WebhookSender};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

pub struct HttpWebhooks {
    client: reqwest::Client,
    allow_internal: bool,
}

/// Resolves with the system resolver, keeping only the addresses deliveries may reach.
struct SafeResolver {
    allow_internal: bool,
}

impl Resolve for SafeResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_internal = self.allow_internal;
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| allow_internal || !is_internal(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(
                    format!("{} has no address deliveries may reach", name.as_str()).into(),
                );
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

impl HttpWebhooks {
    /// `per_host`: the most attempts in flight to one host (the fan-out's budget), so also the most
    /// idle connections worth keeping to it.
    pub fn new(
        timeout: Duration,
        per_host: usize,
        allow_internal: bool,
    ) -> anyhow::Result<HttpWebhooks> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(per_host)
            .user_agent(concat!("broker/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(SafeResolver { allow_internal }))
            .build()?;
        Ok(HttpWebhooks {
            client,
            allow_internal,
        })
    }

    /// Why `url` may not be delivered to, from what it says (its resolution is checked on connect).
    fn refuse_literal(&self, url: &str) -> Option<String> {
        let (host, _) = match http_target(url) {
            Ok(target) => target,
            Err(reason) => return Some(reason),
        };
        let internal_name = host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost");
        let internal_ip = host.parse::<IpAddr>().is_ok_and(is_internal);
        (!self.allow_internal && (internal_name || internal_ip))
            .then(|| format!("{host} is an internal address"))
    }
}

#[async_trait]
impl WebhookSender for HttpWebhooks {
    async fn post(&self, request: WebhookRequest) -> WebhookAnswer {
        if let Some(reason) = self.refuse_literal(&request.url) {
            return WebhookAnswer::Failed(reason);
        }
        let mut builder = self
            .client
            .post(&request.url)
            .header(reqwest::header::CONTENT_TYPE, request.content_type)
            .body(request.body);
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        match builder.send().await {
            Ok(response) => WebhookAnswer::Status(response.status().as_u16()),
            Err(e) => WebhookAnswer::Failed(error_chain(&e)),
        }
    }

    async fn refuse_endpoint(&self, url: &str) -> Option<String> {
        if let Some(reason) = self.refuse_literal(url) {
            return Some(reason);
        }
        if self.allow_internal {
            return None;
        }
        let (host, port) = http_target(url).ok()?;
        let resolved: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(addrs) => addrs.collect(),
            // A name that does not resolve yet may later; deliveries are checked on connect.
            Err(_) => return None,
        };
        resolved
            .iter()
            .any(|a| is_internal(a.ip()))
            .then(|| format!("{host} resolves to an internal address"))
    }
}

/// An error with its causes, as operators need it in the delivery history.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
