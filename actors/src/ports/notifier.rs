//! Sending one end-user notification: an e-mail through SMTP or a text through an SMS gateway. The
//! deliveries' durability and retries are the outbox's; an adapter sends once and says how it went.

use async_trait::async_trait;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Email,
    Sms,
}

impl Channel {
    /// The endpoint scheme a contact point is stored under (`mailto:` or `sms:`).
    pub fn scheme(self) -> &'static str {
        match self {
            Channel::Email => "mailto:",
            Channel::Sms => "sms:",
        }
    }

    /// The channel and address of a stored endpoint, when it is a contact point's.
    pub fn of_endpoint(endpoint: &str) -> Option<(Channel, &str)> {
        [Channel::Email, Channel::Sms]
            .into_iter()
            .find_map(|c| endpoint.strip_prefix(c.scheme()).map(|to| (c, to)))
    }
}

/// One message to one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub channel: Channel,
    pub to: String,
    /// The e-mail's subject (unused by SMS).
    pub subject: String,
    pub body: String,
}

#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// Whether the operator configured this channel.
    fn has(&self, channel: Channel) -> bool;
    /// Sends the message: `Ok` with the server's answer (250 when an SMTP server took it, the SMS
    /// gateway's HTTP status, delivered only when 2xx), or why there was no answer.
    async fn send(&self, notification: Notification) -> Result<u16, String>;
}
