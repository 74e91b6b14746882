//! What the metrics endpoint reads at each scrape: the state of the queues and of the transfers, as
//! the ports hold it (counters of what happened are recorded where it happens).

use crate::error::Result;
use crate::ports::jobs::JobBacklog;
use crate::ports::outbox::DeliveryBacklog;
use crate::Broker;
use broker_protocol::time::Timestamp;
use broker_protocol::FileTransferStatus;

#[derive(Debug, Clone)]
pub struct Gauges {
    pub at: Timestamp,
    pub transfers: Vec<(FileTransferStatus, u64)>,
    pub deliveries: DeliveryBacklog,
    pub jobs: JobBacklog,
    pub subscriptions: u64,
    pub live_supervisors: usize,
}

impl Broker {
    pub async fn gauges(&self) -> Result<Gauges> {
        let ports = self.ports();
        let at = self.now();
        Ok(Gauges {
            at,
            transfers: ports.metadata.transfer_counts().await?,
            deliveries: ports.outbox.delivery_backlog().await?,
            jobs: ports.jobs.backlog(at).await?,
            subscriptions: ports.subscriptions.all_subscriptions().await?.len() as u64,
            live_supervisors: self.live_supervisors(),
        })
    }
}
