//! The notifier: e-mail through an SMTP server (lettre, rustls; the public roots and, with
//! `ca_file`, the operator's own authorities) and SMS through an HTTP gateway
//! (reqwest), as `[notify.smtp]` and `[notify.sms]` configure them. One message per call; the
//! deliveries' retries are the outbox's.

use crate::config::{NotifyConfig, SmsConfig, SmtpConfig, SmtpTls};
use anyhow::Context;
use async_trait::async_trait;
use broker_actors::ports::notifier::{Channel, Notification, Notifier};
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::path::Path;
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

/// The certificate authorities of `notify.smtp.ca_file`, checked at start: the file must be readable
/// and hold at least one PEM certificate.
fn extra_roots(path: &Path) -> anyhow::Result<Certificate> {
    let shown = path.display();
    let pem = std::fs::read(path)
        .with_context(|| format!("notify.smtp.ca_file {shown} cannot be read"))?;
    let marker = b"-----BEGIN CERTIFICATE-----";
    if !pem.windows(marker.len()).any(|w| w == marker) {
        anyhow::bail!(
            "notify.smtp.ca_file {shown} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        );
    }
    Certificate::from_pem(&pem)
        .with_context(|| format!("notify.smtp.ca_file {shown} is not a valid PEM certificate file"))
}

/// TLS with rustls: the public roots, and the extra authorities of `ca_file` if set.
fn tls_parameters(config: &SmtpConfig) -> anyhow::Result<TlsParameters> {
    let mut builder = TlsParameters::builder(config.host.clone());
    if let Some(path) = &config.ca_file {
        builder = builder.add_root_certificate(extra_roots(path)?);
    }
    builder
        .build_rustls()
        .with_context(|| match &config.ca_file {
            Some(path) => format!(
                "notify.smtp.ca_file {}: its certificates cannot be trusted",
                path.display()
            ),
            None => "the SMTP client's TLS settings cannot be built".into(),
        })
}

fn smtp(config: &SmtpConfig) -> anyhow::Result<Smtp> {
    type Transport = AsyncSmtpTransport<Tokio1Executor>;
    let mut builder =
        match config.tls {
            SmtpTls::None => Transport::builder_dangerous(&config.host),
            SmtpTls::Starttls => Transport::builder_dangerous(&config.host)
                .tls(Tls::Required(tls_parameters(config)?)),
            SmtpTls::Tls => Transport::builder_dangerous(&config.host)
                .tls(Tls::Wrapper(tls_parameters(config)?)),
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
