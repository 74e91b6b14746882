//! Prometheus metrics (the `metrics` facade with `metrics-exporter-prometheus`'s recorder). The
//! recorder is the process's: counters are recorded where things happen (requests, bytes, scans,
//! deliveries); gauges are read from the ports at each scrape.

use broker_actors::telemetry::Gauges;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the recorder once per process; `None` when another recorder was installed first.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let seconds = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0, 300.0,
            ];
            let mib = 1024.0 * 1024.0;
            let rates: Vec<f64> = [1.0, 4.0, 16.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0]
                .iter()
                .map(|m| m * mib)
                .collect();
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_bytes_per_second".into()), &rates)
                })
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            // A histogram keeps every sample until it is folded into its buckets: without a
            // scraper (or between slow scrapes) that is memory growing with every request.
            // Fold them regularly whoever scrapes.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                })
                .ok()?;
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "broker_http_requests_total",
        "HTTP requests answered, by route, method and status"
    );
    describe_histogram!(
        "broker_http_request_duration_seconds",
        Unit::Seconds,
        "Time to the response head, by route and method"
    );
    describe_counter!(
        "broker_upload_bytes_total",
        Unit::Bytes,
        "Bytes received in upload bodies"
    );
    describe_counter!(
        "broker_download_bytes_total",
        Unit::Bytes,
        "Bytes sent in download bodies"
    );
    describe_histogram!(
        "broker_upload_throughput_bytes_per_second",
        "Throughput of upload bodies of at least 1 MiB"
    );
    describe_histogram!(
        "broker_download_throughput_bytes_per_second",
        "Throughput of download bodies of at least 1 MiB"
    );
    describe_histogram!(
        "broker_scan_duration_seconds",
        Unit::Seconds,
        "A whole file's malware scan"
    );
    describe_counter!("broker_scan_verdicts_total", "Scan verdicts, by verdict");
    describe_counter!(
        "broker_events_total",
        "Events routed to subscriptions, by type"
    );
    describe_counter!(
        "broker_delivery_attempts_total",
        "Webhook delivery attempts, by outcome"
    );
    describe_counter!(
        "broker_deliveries_dead_lettered_total",
        "Deliveries given up after the retry period"
    );
    describe_histogram!(
        "broker_delivery_lag_seconds",
        Unit::Seconds,
        "From an event's transition to its subscriber's 2xx"
    );
    describe_histogram!(
        "broker_delivery_attempt_duration_seconds",
        Unit::Seconds,
        "One delivery attempt"
    );
    describe_gauge!("broker_transfers", "Transfers, by status");
    describe_gauge!(
        "broker_outbox_unrouted",
        "Events not yet routed to subscriptions"
    );
    describe_gauge!(
        "broker_deliveries_pending",
        "Deliveries waiting for an attempt"
    );
    describe_gauge!(
        "broker_deliveries_dead_lettered",
        "Deliveries dead-lettered, waiting for a redeliver"
    );
    describe_gauge!("broker_subscriptions", "Event subscriptions");
    describe_gauge!("broker_jobs_queued", "Durable jobs scheduled");
    describe_gauge!("broker_jobs_due", "Durable jobs due and not running");
    describe_gauge!(
        "broker_jobs_oldest_due_age_seconds",
        Unit::Seconds,
        "How long the oldest due job has waited"
    );
    describe_gauge!(
        "broker_live_supervisors",
        "Transfer supervisors alive in this process"
    );
}

/// Sets the gauges from `g` and renders every series in the text exposition format.
pub fn render(handle: &PrometheusHandle, g: &Gauges) -> String {
    use metrics::gauge;
    for status in broker_protocol::FileTransferStatus::ALL {
        let n = g
            .transfers
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n);
        gauge!("broker_transfers", "status" => status.to_string()).set(n as f64);
    }
    gauge!("broker_outbox_unrouted").set(g.deliveries.unrouted as f64);
    gauge!("broker_deliveries_pending").set(g.deliveries.pending as f64);
    gauge!("broker_deliveries_dead_lettered").set(g.deliveries.dead_lettered as f64);
    gauge!("broker_subscriptions").set(g.subscriptions as f64);
    gauge!("broker_jobs_queued").set(g.jobs.queued as f64);
    gauge!("broker_jobs_due").set(g.jobs.due as f64);
    let age = g
        .jobs
        .oldest_due
        .map_or(0.0, |t| (g.at - t).num_milliseconds().max(0) as f64 / 1e3);
    gauge!("broker_jobs_oldest_due_age_seconds").set(age);
    gauge!("broker_live_supervisors").set(g.live_supervisors as f64);
    handle.run_upkeep();
    handle.render()
}
