//! The `[notify]` section: how e-mail (`[notify.smtp]`) and SMS (`[notify.sms]`) reach contact
//! points. Without a section, contact points of that kind are refused.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    pub smtp: Option<SmtpConfig>,
    pub sms: Option<SmsConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain SMTP (a relay on the same host or a test server).
    None,
    /// STARTTLS after connecting (usually port 587).
    Starttls,
    /// TLS from the first byte (usually port 465).
    Tls,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    #[serde(default = "default_smtp_tls")]
    pub tls: SmtpTls,
    /// The sender address, e.g. `Broker <broker@example.no>`.
    #[serde(default = "default_from")]
    pub from: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The longest one message may take to send.
    #[serde(default = "default_smtp_timeout")]
    pub timeout_secs: u64,
    /// A PEM file of certificate authorities trusted for the server's certificate besides the
    /// public roots (an internal relay signed by the organisation's own CA). Only with `tls` =
    /// `starttls` or `tls`; read at start, which fails if the file is missing or holds no
    /// certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
}

fn default_smtp_port() -> u16 {
    587
}
fn default_smtp_tls() -> SmtpTls {
    SmtpTls::Starttls
}
fn default_from() -> String {
    "Broker <broker@localhost>".into()
}
fn default_smtp_timeout() -> u64 {
    30
}

/// The JSON body posted to the SMS gateway unless `body_template` says otherwise.
pub const DEFAULT_SMS_TEMPLATE: &str = r#"{"to": "{to}", "message": "{message}"}"#;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    /// The gateway's URL; each message is one POST of `body_template`.
    pub url: String,
    /// The JSON body, with `{to}` (the mobile number) and `{message}` (the text) replaced by the
    /// values escaped for a JSON string, so they belong inside quotes.
    #[serde(default = "default_sms_template")]
    pub body_template: String,
    /// Sent as `Authorization: Bearer {token}` when set.
    pub token: Option<String>,
    #[serde(default = "default_sms_timeout")]
    pub timeout_ms: u64,
}

fn default_sms_template() -> String {
    DEFAULT_SMS_TEMPLATE.into()
}
fn default_sms_timeout() -> u64 {
    10_000
}

/// `value` escaped for the inside of a JSON string.
fn json_escaped(value: &str) -> String {
    let quoted = serde_json::to_string(value).expect("a string serializes");
    quoted[1..quoted.len() - 1].to_string()
}

impl SmsConfig {
    /// The gateway's body for one message.
    pub fn body(&self, to: &str, message: &str) -> String {
        self.body_template
            .replace("{to}", &json_escaped(to))
            .replace("{message}", &json_escaped(message))
    }
}

impl NotifyConfig {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(smtp) = &self.smtp {
            if smtp.host.trim().is_empty() {
                return Err("notify.smtp.host must not be empty".into());
            }
            if smtp.from.parse::<lettre::message::Mailbox>().is_err() {
                return Err(format!(
                    "notify.smtp.from {:?} is not an e-mail address",
                    smtp.from
                ));
            }
            if smtp.username.is_some() != smtp.password.is_some() {
                return Err("notify.smtp.username and password go together".into());
            }
            if smtp.timeout_secs == 0 || smtp.timeout_secs > 50 {
                return Err("notify.smtp.timeout_secs must be between 1 and 50".into());
            }
            if smtp.ca_file.is_some() && smtp.tls == SmtpTls::None {
                return Err(
                    "notify.smtp.ca_file is for a TLS connection: set notify.smtp.tls to \"starttls\" or \"tls\""
                        .into(),
                );
            }
        }
        if let Some(sms) = &self.sms {
            if !(sms.url.starts_with("http://") || sms.url.starts_with("https://")) {
                return Err("notify.sms.url must be an http or https URL".into());
            }
            let sample = sms.body("+4799999999", "a \"quoted\" text\nover two lines");
            if serde_json::from_str::<serde_json::Value>(&sample).is_err() {
                return Err(format!(
                    "notify.sms.body_template does not make JSON (with the sample values: {sample})"
                ));
            }
            if sms.timeout_ms == 0 || sms.timeout_ms > 50_000 {
                return Err("notify.sms.timeout_ms must be between 1 and 50000".into());
            }
        }
        Ok(())
    }
}
