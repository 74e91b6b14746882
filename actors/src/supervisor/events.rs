//! The events a transition emits, made from what they share.

use crate::state::Audience;
use broker_protocol::events::{CloudEvent, EventRole, EventType};
use broker_protocol::time::Timestamp;
use uuid::Uuid;

/// What every event of one transition shares.
pub(super) struct EventOrigin<'a> {
    pub(super) id: Uuid,
    pub(super) resource_id: &'a str,
    pub(super) sender: &'a str,
    pub(super) source: &'a str,
    pub(super) at: Timestamp,
}

impl EventOrigin<'_> {
    pub(super) fn event(&self, event_type: EventType, audience: &Audience) -> CloudEvent {
        let (party, role) = match audience {
            Audience::Sender => (self.sender, EventRole::Sender),
            Audience::Recipient(r) => (r.as_str(), EventRole::Recipient),
        };
        CloudEvent::new(
            event_type,
            self.id,
            self.resource_id,
            party,
            role,
            self.source,
            self.at,
        )
    }
}
