//! The broker's CPU per request of each kind. One process's /proc cannot split mixed load, so each
//! kind runs alone in a phase of its own (initialize, then upload, search, download and confirm of
//! the transfers the first phase made): the broker's CPU over the phase divided by its requests.

use super::Context;
use crate::procwatch::cpu_seconds;
use crate::stats::Errors;
use broker_protocol::client::ClientError;
use bytes::Bytes;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;

/// Runs `count` requests made by `request(i)` with `concurrency` in flight; returns their answers
/// and the broker's CPU seconds meanwhile.
async fn phase<T, F, Fut>(
    pid: u32,
    concurrency: usize,
    count: usize,
    errors: &mut Errors,
    request: F,
) -> (Vec<T>, f64)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let before = cpu_seconds(pid).unwrap_or(0.0);
    let answers: Vec<_> = futures::stream::iter((0..count).map(request))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let cpu = cpu_seconds(pid).unwrap_or(0.0) - before;
    let mut ok = Vec::with_capacity(count);
    for answer in answers {
        match answer {
            Ok(v) => ok.push(v),
            Err(e) => errors.add(e.status()),
        }
    }
    (ok, cpu)
}

/// `cpu_ms_per_request_<kind>` for each kind, from `count` requests of each.
pub async fn measure(
    ctx: &Arc<Context>,
    pid: u32,
    concurrency: usize,
    count: usize,
    body: &Bytes,
    errors: &mut Errors,
) -> BTreeMap<String, f64> {
    let (sender, recipient) = (&ctx.target.sender, &ctx.target.recipient);
    let resource = ctx.target.resource.as_str();
    let mut figures = BTreeMap::new();
    let mut record = |kind: &str, cpu: f64, requests: usize| {
        if requests > 0 {
            figures.insert(
                format!("cpu_ms_per_request_{kind}"),
                cpu * 1000.0 / requests as f64,
            );
        }
    };
    let init = super::initialize_body(resource, "small.bin");
    let (ids, cpu): (Vec<Uuid>, f64) = phase(pid, concurrency, count, errors, |_| {
        sender.initialize(&init)
    })
    .await;
    record("initialize", cpu, ids.len());
    let (uploaded, cpu) = phase(pid, concurrency, ids.len(), errors, |i| {
        sender.upload(ids[i], body.clone())
    })
    .await;
    record("upload", cpu, uploaded.len());
    let query = [
        ("resourceId", resource),
        ("status", "Published"),
        ("recipientStatus", "Initialized"),
    ];
    let (found, cpu) = phase(pid, concurrency, count, errors, |_| {
        recipient.search(&query)
    })
    .await;
    record("search", cpu, found.len());
    let (downloaded, cpu) = phase(pid, concurrency, ids.len(), errors, |i| {
        let id = ids[i];
        async move {
            let response = recipient.download(id, None).await?;
            response.bytes().await.map_err(ClientError::Http)
        }
    })
    .await;
    record("download", cpu, downloaded.len());
    let (confirmed, cpu) = phase(pid, concurrency, ids.len(), errors, |i| {
        recipient.confirm_download(ids[i])
    })
    .await;
    record("confirm", cpu, confirmed.len());
    figures
}
