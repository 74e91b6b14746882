//! End-user notifications: an organisation's contact points (an e-mail address or a mobile number),
//! and the message each event becomes. A contact point is a subscription whose endpoint is `mailto:`
//! or `sms:` and whose subject filters are the organisation's own, so it rides the same durable
//! deliveries (routing, retries, dead letters, delivery records) as webhooks, and is told only of
//! events addressed to its organisation.

use crate::access::Caller;
use crate::error::{Error, Result};
use crate::ports::notifier::{Channel, Notification};
use crate::ports::subscriptions::{NewSubscription, SubscriptionRow};
use crate::ports::webhooks::WebhookAnswer;
use crate::Broker;
use broker_protocol::events::{CloudEvent, EventType};
use broker_protocol::notifications::{ContactPoint, ContactPointRequest};
use broker_protocol::subscriptions::{alternative_subject, subject_urn, Delivery};
use broker_protocol::transfer::strip_resource_urn;
use broker_protocol::ErrorCode;

/// Contact points one organisation may have: each one is a mailbox or a phone the broker writes to.
pub const MAX_CONTACT_POINTS: usize = 20;

/// A plausible e-mail address: one `@`, a dotted domain, nothing that could break a header.
fn valid_email(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    let printable = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_graphic() && !"<>()[]\\,;:\"@".contains(c))
    };
    address.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && printable(local)
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// `+` and 8 to 15 digits (E.164), or the digits alone.
fn valid_mobile(number: &str) -> bool {
    let digits = number.strip_prefix('+').unwrap_or(number);
    (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

fn wire(row: &SubscriptionRow) -> Option<ContactPoint> {
    let (channel, to) = Channel::of_endpoint(&row.spec.end_point)?;
    let s = &row.spec;
    Some(ContactPoint {
        id: row.id,
        email_address: (channel == Channel::Email).then(|| to.to_string()),
        mobile_number: (channel == Channel::Sms).then(|| to.to_string()),
        resource_filter: (!s.resource_filter.is_empty())
            .then(|| format!("urn:altinn:resource:{}", s.resource_filter)),
        type_filter: s.type_filter.clone(),
        created: s.created,
    })
}

/// What an event says to the organisation it is addressed to: a subject line and a headline.
fn wording(event_type: &str, file: &str, sender: &str) -> (String, String) {
    let kind = EventType::ALL
        .iter()
        .copied()
        .find(|t| t.type_name() == event_type);
    match kind {
        Some(EventType::Published) => (
            format!("New file from {sender}: {file}"),
            format!("{sender} has sent you the file \"{file}\". It is ready to download."),
        ),
        Some(EventType::FileTransferInitialized) => (
            format!("A file is on its way from {sender}: {file}"),
            format!("{sender} has started sending you the file \"{file}\"."),
        ),
        Some(EventType::UploadFailed) => (
            format!("The upload of {file} failed"),
            format!("The file \"{file}\" could not be published."),
        ),
        Some(EventType::FileNeverConfirmedDownloaded) => (
            format!("{file} was removed before it was confirmed"),
            format!("The file \"{file}\" from {sender} expired before its download was confirmed."),
        ),
        Some(EventType::AllConfirmedDownloaded) => (
            format!("Every recipient has downloaded {file}"),
            format!("Every recipient confirmed the download of \"{file}\"."),
        ),
        Some(EventType::DownloadConfirmed) => (
            format!("A recipient has downloaded {file}"),
            format!("A recipient confirmed the download of \"{file}\"."),
        ),
        Some(EventType::FilePurged) => (
            format!("{file} has been removed"),
            format!("The file \"{file}\" has been removed from the broker."),
        ),
        Some(EventType::UploadProcessing) => (
            format!("{file} is being checked"),
            format!("The file \"{file}\" is uploaded and being checked before it is published."),
        ),
        None => (
            format!("File transfer update: {file}"),
            format!("Something happened to the file \"{file}\" ({event_type})."),
        ),
    }
}

impl Broker {
    /// Creates a contact point for the caller's organisation: told of the events addressed to it,
    /// on one resource or all, of one type or all.
    pub async fn create_contact_point(
        &self,
        caller: &Caller,
        request: ContactPointRequest,
    ) -> Result<ContactPoint> {
        let org = caller
            .org
            .clone()
            .ok_or(ErrorCode::CallerOrganizationUnknown)?;
        let trimmed = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let (channel, to) = match (
            trimmed(request.email_address),
            trimmed(request.mobile_number),
        ) {
            (Some(email), None) if valid_email(&email) => (Channel::Email, email),
            (None, Some(mobile)) if valid_mobile(&mobile) => (Channel::Sms, mobile),
            _ => return Err(ErrorCode::InvalidContactPoint.into()),
        };
        if !self.ports().notifier.has(channel) {
            return Err(ErrorCode::NotificationChannelMissing.into());
        }
        let resource_filter = match trimmed(request.resource_filter) {
            Some(resource) => {
                let id = strip_resource_urn(&resource).to_string();
                self.ports()
                    .metadata
                    .resource(&id)
                    .await?
                    .ok_or(ErrorCode::ResourceNotConfigured)?;
                id
            }
            None => String::new(),
        };
        crate::subscriptions::check_type_filter(request.type_filter.as_deref())?;
        let consumer = alternative_subject(&org);
        let new = NewSubscription {
            end_point: format!("{}{to}", channel.scheme()),
            source_filter: None,
            resource_filter,
            subject_filter: Some(subject_urn(&org)),
            alternative_subject_filter: Some(consumer.clone()),
            type_filter: request.type_filter,
            created_by: consumer.clone(),
            consumer,
            created: self.now(),
            // Contact points are not signed; the column is required.
            secret: String::new(),
            include_subunits: false,
            api: crate::ports::subscriptions::SubscriptionApi::Broker,
        };
        let subscriptions = &self.ports().subscriptions;
        let row = subscriptions
            .create_subscription(new, MAX_CONTACT_POINTS)
            .await?
            .ok_or(ErrorCode::TooManyContactPoints)?;
        // Nothing to validate: the address is the organisation's own word.
        subscriptions.mark_validated(row.id).await?;
        self.subscriptions_changed().await;
        wire(&row).ok_or_else(|| Error::Internal("a contact point without its address".into()))
    }

    /// The caller's contact points, oldest first.
    pub async fn contact_points(&self, caller: &Caller) -> Result<Vec<ContactPoint>> {
        let org = caller
            .org
            .as_ref()
            .ok_or(ErrorCode::CallerOrganizationUnknown)?;
        let rows = self
            .ports()
            .subscriptions
            .subscriptions_of(&alternative_subject(org))
            .await?;
        Ok(rows.iter().filter_map(wire).collect())
    }

    /// Removes one of the caller's contact points (another organisation's is not found).
    pub async fn delete_contact_point(&self, caller: &Caller, id: i64) -> Result<()> {
        self.own_contact_point(caller, id).await?;
        self.ports().subscriptions.delete_subscription(id).await?;
        self.subscriptions_changed().await;
        Ok(())
    }

    /// What was sent to one of the caller's contact points: each event's state, attempts, last
    /// status (250 from an SMTP server, the SMS gateway's HTTP status) and error.
    pub async fn contact_point_deliveries(
        &self,
        caller: &Caller,
        id: i64,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        self.own_contact_point(caller, id).await?;
        self.deliveries_of(id, after, limit).await
    }

    async fn own_contact_point(&self, caller: &Caller, id: i64) -> Result<SubscriptionRow> {
        self.own_row(caller, id, true).await
    }

    /// The message `event` becomes for a contact point: its subject, the sender, the resource, the
    /// file's name and a link to the transfer.
    async fn notification_for(
        &self,
        channel: Channel,
        to: &str,
        event: &CloudEvent,
    ) -> Result<Notification> {
        let id: uuid::Uuid = event
            .resourceinstance
            .parse()
            .map_err(|_| Error::Internal("an event about no transfer".into()))?;
        let view = self.view(id).await?;
        let resource = strip_resource_urn(&event.resource);
        let link = format!("{}/{id}", self.settings().event_source);
        let (subject, headline) = wording(&event.type_, &view.file_name, &view.sender_org);
        let body = match channel {
            Channel::Email => format!(
                "{headline}\n\nFile: {}\nSender: {}\nResource: {resource}\nFile transfer: {link}\n",
                view.file_name, view.sender_org
            ),
            Channel::Sms => format!("{headline} ({resource}) {link}"),
        };
        Ok(Notification {
            channel,
            to: to.to_string(),
            subject,
            body,
        })
    }

    /// One attempt at telling the contact point `to` on `channel` of `event`.
    pub(crate) async fn notify(
        &self,
        channel: Channel,
        to: &str,
        event: &CloudEvent,
    ) -> WebhookAnswer {
        let notification = match self.notification_for(channel, to, event).await {
            Ok(n) => n,
            Err(e) => return WebhookAnswer::Failed(format!("could not word the message: {e}")),
        };
        match self.ports().notifier.send(notification).await {
            Ok(status) => WebhookAnswer::Status(status),
            Err(e) => WebhookAnswer::Failed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_that_could_break_a_header_or_are_not_addresses_are_refused() {
        assert!(valid_email("post@example.no"));
        assert!(valid_email("first.last+tag@mail.example.com"));
        for bad in [
            "no-at.example.no",
            "a@b",
            "a@@b.no",
            "@example.no",
            "a@example.no\r\nBcc: x@y.no",
            "a b@example.no",
            "a@.example.no",
            "<a@example.no>",
        ] {
            assert!(!valid_email(bad), "{bad:?}");
        }
        assert!(valid_mobile("+4799999999"));
        assert!(valid_mobile("4799999999"));
        for bad in ["+47 999 99 999", "1234567", "+1234567890123456", "+47abc"] {
            assert!(!valid_mobile(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_published_event_names_the_sender_and_the_file() {
        let (subject, headline) =
            wording("no.altinn.broker.published", "report.pdf", "0192:111111111");
        assert_eq!(subject, "New file from 0192:111111111: report.pdf");
        assert!(headline.contains("ready to download"));
    }
}
