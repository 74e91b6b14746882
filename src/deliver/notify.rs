//! The notifier: e-mail through an SMTP server (lettre, rustls) and SMS through an HTTP gateway
//! (reqwest), as `[notify.smtp]` and `[notify.sms]` configure them. One message per call; the
//! deliveries' retries are the outbox's.

use crate::config::{NotifyConfig, SmsConfig, SmtpConfig, SmtpTls};
use async_trait::async_trait;
use broker_actors::ports::notifier::{Channel, Notification, Notifier};
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

struct Sms {
    config: SmsConfig,
    client: reqwest::Client,
}

pub struct Notifiers {
    smtp: Option<Smtp>,
    sms: Option<Sms>,
}

fn smtp(config: &SmtpConfig) -> anyhow::Result<Smtp> {
    type Transport = AsyncSmtpTransport<Tokio1Executor>;
    let mut builder = match config.tls {
        SmtpTls::None => Transport::builder_dangerous(&config.host),
        SmtpTls::Starttls => Transport::starttls_relay(&config.host)?,
        SmtpTls::Tls => Transport::relay(&config.host)?,
    }
    .port(config.port)
    .timeout(Some(Duration::from_secs(config.timeout_secs)));
    if let (Some(user), Some(password)) = (&config.username, &config.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    Ok(Smtp {
        transport: builder.build(),
        from: config.from.parse()?,
    })
}

impl Notifiers {
    pub fn new(config: &NotifyConfig) -> anyhow::Result<Notifiers> {
        let sms = match &config.sms {
            Some(c) => Some(Sms {
                client: reqwest::Client::builder()
                    .timeout(Duration::from_millis(c.timeout_ms))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()?,
                config: c.clone(),
            }),
            None => None,
        };
        Ok(Notifiers {
            smtp: config.smtp.as_ref().map(smtp).transpose()?,
            sms,
        })
    }
}

impl Smtp {
    async fn send(&self, n: &Notification) -> Result<u16, String> {
        let to: Mailbox = n.to.parse().map_err(|e| format!("not an address: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&n.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(n.body.clone())
            .map_err(|e| format!("could not build the message: {e}"))?;
        match self.transport.send(message).await {
            // A positive completion reply to the message's data.
            Ok(_) => Ok(250),
            Err(e) => Err(format!("SMTP: {e}")),
        }
    }
}

impl Sms {
    async fn send(&self, n: &Notification) -> Result<u16, String> {
        let mut request = self
            .client
            .post(&self.config.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(self.config.body(&n.to, &n.body));
        if let Some(token) = &self.config.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("SMS gateway: {e}"))?;
        Ok(response.status().as_u16())
    }
}

#[async_trait]
impl Notifier for Notifiers {
    fn has(&self, channel: Channel) -> bool {
        match channel {
            Channel::Email => self.smtp.is_some(),
            Channel::Sms => self.sms.is_some(),
        }
    }

    async fn send(&self, notification: Notification) -> Result<u16, String> {
        match notification.channel {
            Channel::Email => match &self.smtp {
                Some(smtp) => smtp.send(&notification).await,
                None => Err("no SMTP server is configured (notify.smtp)".into()),
            },
            Channel::Sms => match &self.sms {
                Some(sms) => sms.send(&notification).await,
                None => Err("no SMS gateway is configured (notify.sms)".into()),
            },
        }
    }
}
