//! `statistics`: N transfers made through the API by 64 clients (every tenth to the tool's recipient,
//! which uploads, downloads and confirms it; the others each to one of 1,000 organisations), then the time to produce the service owner's monthly CSV and the daily summary report
//! (Parquet), each over several runs, with the broker's peak RSS and CPU while they are produced.

use super::Context;
use crate::procwatch::ProcWatch;
use crate::report::ScenarioResult;
use crate::stats::{Errors, Recorder};
use chrono::Datelike;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The key this tool configures on a broker it starts (`BROKER__STATISTICS__API_KEY`).
pub const API_KEY: &str = "broker-bench-statistics-key";
const CLIENTS: u64 = 64;
/// Distinct recipients of the transfers that are not downloaded, so the monthly report has rows.
const RECIPIENT_SPREAD: u64 = 1_000;

pub struct StatisticsOptions {
    pub transfers: u64,
    pub runs: usize,
}

/// The environment a broker this tool starts needs for the scenario: the API key, and a rate limit
/// that lets every run through.
pub fn broker_env() -> Vec<(String, String)> {
    vec![
        ("BROKER__STATISTICS__API_KEY".into(), API_KEY.into()),
        (
            "BROKER__STATISTICS__RATE_LIMIT_REQUESTS".into(),
            "100000".into(),
        ),
    ]
}

/// Makes `n` transfers; every tenth goes to the tool's recipient and is uploaded, downloaded and
/// confirmed, the others to one of [`RECIPIENT_SPREAD`] organisations.
async fn populate(ctx: &Arc<Context>, n: u64) -> anyhow::Result<(Duration, Errors)> {
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(std::sync::Mutex::new(Errors::default()));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (ctx, next, errors) = (ctx.clone(), next.clone(), errors.clone());
        tasks.spawn(async move {
            let body = bytes::Bytes::from(vec![7u8; 1024]);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let outcome = async {
                    let mut body_of =
                        super::initialize_body(&ctx.target.resource, "statistics.bin");
                    if i % 10 != 0 {
                        let org = format!("0192:{:09}", 310_000_000 + i % RECIPIENT_SPREAD);
                        body_of.recipients = Some(vec![org]);
                    }
                    let id = ctx.target.sender.initialize(&body_of).await?;
                    if i % 10 == 0 {
                        let (sender, recipient) = (&ctx.target.sender, &ctx.target.recipient);
                        sender.upload(id, body.clone()).await?;
                        recipient.download(id, None).await?.bytes().await?;
                        recipient.confirm_download(id).await?;
                    }
                    anyhow::Ok(())
                }
                .await;
                if let Err(e) = outcome {
                    let status = e
                        .downcast_ref::<broker_protocol::client::ClientError>()
                        .and_then(|c| c.status());
                    errors.lock().expect("errors").add(status);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let errors = errors.lock().expect("errors").clone();
    Ok((started.elapsed(), errors))
}

pub async fn run(ctx: Arc<Context>, options: &StatisticsOptions) -> anyhow::Result<ScenarioResult> {
    let owner =
        ctx.target.owner.clone().ok_or_else(|| {
            anyhow::anyhow!("the statistics scenario needs a service owner token")
        })?;
    let (took, errors) = populate(&ctx, options.transfers).await?;
    let now = chrono::Utc::now();
    let monthly_path = format!(
        "/statistics/monthly?year={}&month={}&includeEndUser=true&includeVendor=true",
        now.year(),
        now.month()
    );
    let http = reqwest::Client::new();
    let daily_url = format!(
        "{}/broker/api/v1/statistics/generate-and-download-daily-summary",
        ctx.target.url
    );
    let watch = ctx.target.pid().map(ProcWatch::start);
    let (mut monthly, mut daily) = (Recorder::default(), Recorder::default());
    let (mut csv_bytes, mut parquet_bytes, mut reported) = (0, 0, 0u64);
    for _ in 0..options.runs {
        let started = Instant::now();
        let response = owner
            .request(reqwest::Method::GET, &monthly_path)
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == 200,
            "monthly CSV: {}",
            response.status()
        );
        csv_bytes = response.bytes().await?.len();
        monthly.record(started.elapsed());

        let started = Instant::now();
        let response = http
            .post(&daily_url)
            .header("x-api-key", API_KEY)
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == 200,
            "daily summary: {}",
            response.status()
        );
        reported = response
            .headers()
            .get("x-total-filetransfer-count")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        parquet_bytes = response.bytes().await?.len();
        daily.record(started.elapsed());
    }
    let proc = watch.map(ProcWatch::finish);
    let mut figures = std::collections::BTreeMap::new();
    let mut put = |name: &str, value: f64| {
        figures.insert(name.to_string(), value);
    };
    put(
        "transfers_per_sec",
        options.transfers as f64 / took.as_secs_f64(),
    );
    for (name, recorder) in [("monthly_csv_ms", &monthly), ("daily_report_ms", &daily)] {
        if let Some(l) = recorder.latency() {
            put(&format!("{name}_p50"), l.p50);
            put(&format!("{name}_p95"), l.p95);
            put(&format!("{name}_max"), l.max);
        }
    }
    put("monthly_csv_bytes", csv_bytes as f64);
    put("daily_report_bytes", parquet_bytes as f64);
    put("daily_report_transfer_pairs", reported as f64);
    Ok(ScenarioResult {
        scenario: "statistics".into(),
        params: [
            ("transfers".to_string(), json!(options.transfers)),
            ("runs".to_string(), json!(options.runs)),
        ]
        .into(),
        errors: errors.total(),
        errors_by_status: errors.0.clone(),
        peak_rss_mib: proc.map(|p| p.peak_rss_mib),
        cpu_seconds: proc.map(|p| p.cpu_seconds),
        figures,
        ..Default::default()
    })
}
