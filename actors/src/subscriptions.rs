//! The subscription commands and queries (Altinn Events' subscription API): who may subscribe to
//! what, and what a subscriber may see of its subscriptions and their deliveries.

use crate::access::Caller;
use crate::error::{Error, Result};
use crate::ports::notifier::Channel;
use crate::ports::subscriptions::{NewSubscription, SubscriptionApi, SubscriptionRow};
use crate::Broker;
use broker_protocol::events::EventType;
use broker_protocol::scopes::SERVICE_OWNER;
use broker_protocol::subscriptions::{
    alternative_subject, subject_urn, Delivery, Subscription, SubscriptionRequest,
};
use broker_protocol::ErrorCode;

const RESOURCE_PREFIX: &str = "urn:altinn:resource:";

/// The longest endpoint URL a subscription may have (browsers and proxies commonly stop near 2 KiB;
/// every delivery carries it).
pub const MAX_END_POINT_BYTES: usize = 2048;

impl Broker {
    /// Creates a subscription for the caller's organisation. Its endpoint is validated before
    /// anything is delivered; events committed from now on wait for that. The answer carries the
    /// signing secret, the only time it is shown.
    pub async fn create_subscription(
        &self,
        caller: &Caller,
        request: SubscriptionRequest,
        api: SubscriptionApi,
    ) -> Result<Subscription> {
        let org = caller
            .org
            .clone()
            .ok_or(ErrorCode::CallerOrganizationUnknown)?;
        let end_point = request
            .end_point
            .filter(|e| !e.trim().is_empty())
            .ok_or_else(|| Error::field("endPoint", "The EndPoint field is required."))?;
        if end_point.len() > MAX_END_POINT_BYTES {
            return Err(Error::field(
                "endPoint",
                format!("The EndPoint must be at most {MAX_END_POINT_BYTES} bytes long."),
            ));
        }
        if let Some(reason) = self.ports().webhooks.refuse_endpoint(&end_point).await {
            tracing::info!(%end_point, %reason, "subscription endpoint refused");
            return Err(ErrorCode::EndpointNotAllowed.into());
        }
        let resource = request
            .resource_filter
            .filter(|r| !r.trim().is_empty())
            .ok_or_else(|| {
                Error::field("resourceFilter", "The ResourceFilter field is required.")
            })?;
        // Altinn Events takes a resource only as its URN.
        let resource_id = resource.strip_prefix(RESOURCE_PREFIX).ok_or_else(|| {
            Error::field(
                "resourceFilter",
                format!("Resource filter must be a valid urn: {RESOURCE_PREFIX}{{resource id}}."),
            )
        })?;
        let row = self
            .ports()
            .metadata
            .resource(resource_id)
            .await?
            .ok_or(ErrorCode::ResourceNotConfigured)?;
        check_type_filter(request.type_filter.as_deref())?;
        if let Some(source) = &request.source_filter {
            if !(source.starts_with("http://") || source.starts_with("https://")) {
                return Err(Error::field(
                    "sourceFilter",
                    "The SourceFilter must be an absolute URL.",
                ));
            }
        }
        // A service owner sees every event of its own resources; any other organisation only the
        // events addressed to it.
        let owner = caller.has_scope(SERVICE_OWNER) && row.service_owner_id == org;
        let own = |given: Option<String>, own: String| -> Result<Option<String>> {
            match given {
                None if owner => Ok(None),
                None => Ok(Some(own)),
                Some(g) if owner || g == own => Ok(Some(g)),
                Some(_) => Err(ErrorCode::SubscriptionForOtherParty.into()),
            }
        };
        let subject_filter = own(request.subject_filter, subject_urn(&org))?;
        let alternative_subject_filter = own(
            request.alternative_subject_filter,
            alternative_subject(&org),
        )?;
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| Error::Internal(e.to_string()))?;
        let consumer = alternative_subject(&org);
        let new = NewSubscription {
            end_point,
            source_filter: request.source_filter,
            resource_filter: resource_id.to_string(),
            subject_filter,
            alternative_subject_filter,
            type_filter: request.type_filter,
            created_by: consumer.clone(),
            consumer,
            created: self.now(),
            secret: broker_protocol::webhooks::secret_from_key(&key),
            include_subunits: request.include_subunits.unwrap_or(false),
            api,
        };
        let row = self
            .ports()
            .subscriptions
            .create_subscription(new, self.settings().deliveries.max_subscriptions)
            .await?
            .ok_or(ErrorCode::TooManySubscriptions)?;
        self.subscriptions_changed().await;
        let mut answer = wire(&row);
        answer.secret = Some(row.spec.secret);
        Ok(answer)
    }

    /// The caller's subscriptions, oldest first.
    pub async fn subscriptions(&self, caller: &Caller) -> Result<Vec<Subscription>> {
        let org = caller
            .org
            .as_ref()
            .ok_or(ErrorCode::CallerOrganizationUnknown)?;
        let rows = self
            .ports()
            .subscriptions
            .subscriptions_of(&alternative_subject(org))
            .await?;
        // Contact points are listed by their own API.
        Ok(rows
            .iter()
            .filter(|r| Channel::of_endpoint(&r.spec.end_point).is_none())
            .map(wire)
            .collect())
    }

    /// One of the caller's subscriptions (another organisation's is not found).
    pub async fn subscription(&self, caller: &Caller, id: i64) -> Result<Subscription> {
        Ok(wire(&self.own_subscription(caller, id).await?))
    }

    pub async fn delete_subscription(&self, caller: &Caller, id: i64) -> Result<()> {
        self.own_subscription(caller, id).await?;
        self.ports().subscriptions.delete_subscription(id).await?;
        self.subscriptions_changed().await;
        Ok(())
    }

    /// Replaces the signing secret; the old one keeps signing beside it for the overlap period.
    pub async fn rotate_subscription_secret(
        &self,
        caller: &Caller,
        id: i64,
    ) -> Result<Subscription> {
        let row = self.own_subscription(caller, id).await?;
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| Error::Internal(e.to_string()))?;
        let secret = broker_protocol::webhooks::secret_from_key(&key);
        let until = self.now() + self.settings().deliveries.secret_overlap;
        self.ports()
            .subscriptions
            .rotate_secret(id, &secret, until)
            .await?;
        let mut answer = wire(&row);
        answer.secret = Some(secret);
        Ok(answer)
    }

    /// A subscription's deliveries with a sequence above `after`, oldest first.
    pub async fn subscription_deliveries(
        &self,
        caller: &Caller,
        id: i64,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        self.own_subscription(caller, id).await?;
        self.deliveries_of(id, after, limit).await
    }

    /// A subscription's (or contact point's) deliveries, as the API shows them.
    pub(crate) async fn deliveries_of(
        &self,
        id: i64,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        let rows = self.ports().outbox.deliveries(id, after, limit).await?;
        Ok(rows
            .into_iter()
            .map(|d| Delivery {
                sequence: d.sequence,
                event_id: d.event.id,
                type_: d.event.type_,
                resourceinstance: d.event.resourceinstance,
                state: d.state,
                attempts: d.attempts,
                last_status: d.last_status,
                last_latency_ms: d.last_latency_ms,
                last_error: d.last_error,
                last_attempt: d.last_attempt,
                next_attempt: d.next_attempt,
            })
            .collect())
    }

    /// Sends a subscription's dead-lettered deliveries again; how many.
    pub async fn redeliver(&self, caller: &Caller, id: i64) -> Result<u64> {
        self.own_subscription(caller, id).await?;
        let n = self.ports().outbox.redeliver(id, self.now()).await?;
        self.subscriptions_changed().await;
        Ok(n)
    }

    async fn own_subscription(&self, caller: &Caller, id: i64) -> Result<SubscriptionRow> {
        self.own_row(caller, id, false).await
    }

    /// One of the caller's webhook subscriptions, or (`contact_point`) its contact points; anything
    /// else is not found.
    pub(crate) async fn own_row(
        &self,
        caller: &Caller,
        id: i64,
        contact_point: bool,
    ) -> Result<SubscriptionRow> {
        let org = caller
            .org
            .as_ref()
            .ok_or(ErrorCode::CallerOrganizationUnknown)?;
        match self.ports().subscriptions.subscription(id).await? {
            Some(row)
                if row.spec.consumer == alternative_subject(org)
                    && Channel::of_endpoint(&row.spec.end_point).is_some() == contact_point =>
            {
                Ok(row)
            }
            _ if contact_point => Err(ErrorCode::ContactPointNotFound.into()),
            _ => Err(ErrorCode::SubscriptionNotFound.into()),
        }
    }
}

/// A type filter names one of Broker's event types.
pub(crate) fn check_type_filter(filter: Option<&str>) -> Result<()> {
    match filter {
        Some(t) if !EventType::ALL.iter().any(|e| e.type_name() == t) => Err(Error::field(
            "typeFilter",
            format!("'{t}' is not a no.altinn.broker event type."),
        )),
        _ => Ok(()),
    }
}

fn wire(row: &SubscriptionRow) -> Subscription {
    let s = &row.spec;
    Subscription {
        id: row.id,
        end_point: s.end_point.clone(),
        source_filter: s.source_filter.clone(),
        resource_filter: format!("{RESOURCE_PREFIX}{}", s.resource_filter),
        subject_filter: s.subject_filter.clone(),
        alternative_subject_filter: s.alternative_subject_filter.clone(),
        type_filter: s.type_filter.clone(),
        include_subunits: s.include_subunits,
        consumer: s.consumer.clone(),
        created_by: s.created_by.clone(),
        created: s.created,
        validated: row.validated,
        secret: None,
    }
}
