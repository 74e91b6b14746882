//! Which subscriptions an event goes to: a pure match of the event against a subscription's filters.

use crate::ports::subscriptions::NewSubscription;
use broker_protocol::events::CloudEvent;

/// Whether `event` goes to a subscription with these filters: its resource (or any, when empty), and
/// each filter that is set; only events from the subscription's creation on. The forwarding subscription takes every
/// event.
pub fn matches(s: &NewSubscription, event: &CloudEvent) -> bool {
    if s.consumer == super::FORWARD_CONSUMER {
        return event.time >= s.created;
    }
    let resource = event
        .resource
        .strip_prefix("urn:altinn:resource:")
        .unwrap_or(&event.resource);
    let alternative = event
        .alternativesubject
        .clone()
        .unwrap_or_else(|| broker_protocol::subscriptions::alternative_subject(&event.subject));
    // An empty resource filter is a contact point's "every resource" (its subject filters still
    // name its own organisation); a webhook subscription always names its resource.
    event.time >= s.created
        && (s.resource_filter.is_empty() || resource == s.resource_filter)
        && s.subject_filter
            .as_ref()
            .is_none_or(|f| *f == event.subject)
        && s.alternative_subject_filter
            .as_ref()
            .is_none_or(|f| *f == alternative)
        && s.type_filter.as_ref().is_none_or(|f| *f == event.type_)
        && s.source_filter
            .as_ref()
            .is_none_or(|f| event.source.starts_with(f.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use broker_protocol::events::{EventRole, EventType};

    fn t(s: i64) -> broker_protocol::time::Timestamp {
        chrono::DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn subscription() -> NewSubscription {
        NewSubscription {
            end_point: "http://127.0.0.1:1/hook".into(),
            source_filter: None,
            resource_filter: "r".into(),
            subject_filter: Some("urn:altinn:organization:identifier-no:222222222".into()),
            alternative_subject_filter: Some("/organisation/222222222".into()),
            type_filter: None,
            consumer: "/organisation/222222222".into(),
            created_by: "/organisation/222222222".into(),
            created: t(0),
            secret: "whsec_x".into(),
            include_subunits: false,
            api: crate::ports::subscriptions::SubscriptionApi::Broker,
        }
    }

    fn event(party: &str, at: i64) -> CloudEvent {
        CloudEvent::new(
            EventType::Published,
            uuid::Uuid::new_v4(),
            "r",
            party,
            EventRole::Recipient,
            "http://b/broker/api/v1/filetransfer",
            t(at),
        )
    }

    #[test]
    fn a_party_subscription_gets_its_own_events_only() {
        let s = subscription();
        assert!(matches(&s, &event("0192:222222222", 1)));
        assert!(!matches(&s, &event("0192:333333333", 1)));
    }

    #[test]
    fn events_from_before_the_subscription_are_not_delivered() {
        assert!(!matches(&subscription(), &event("0192:222222222", -1)));
    }

    #[test]
    fn each_set_filter_narrows_the_match() {
        let e = event("0192:222222222", 1);
        let mut s = subscription();
        s.type_filter = Some("no.altinn.broker.filepurged".into());
        assert!(!matches(&s, &e));
        s.type_filter = Some("no.altinn.broker.published".into());
        assert!(matches(&s, &e));
        s.resource_filter = "other".into();
        assert!(!matches(&s, &e));
        let mut s = subscription();
        s.source_filter = Some("http://elsewhere".into());
        assert!(!matches(&s, &e));
        s.source_filter = Some("http://b/broker".into());
        assert!(matches(&s, &e));
    }

    #[test]
    fn a_subscription_without_subject_filters_gets_every_party_s_events() {
        let mut s = subscription();
        s.subject_filter = None;
        s.alternative_subject_filter = None;
        assert!(matches(&s, &event("0192:333333333", 1)));
    }
}
