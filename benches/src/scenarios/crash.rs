//! `crash`: C clients run lifecycles while the broker is SIGKILLed K times at random moments and
//! started again on the same data dir. Every client logs each response it was given (an
//! acknowledgement); after each restart every acknowledgement since the last check is checked
//! against what the broker now says, and at the end all of them again:
//! - initialize: the transfer exists;
//! - upload: it is Published (or later), its stored size and SHA-256 are the bytes sent, and it
//!   downloads as exactly those bytes;
//! - download: the recipient has started downloading (or confirmed);
//! - confirm: the recipient has confirmed and the transfer is AllConfirmedDownloaded (or Purged).
//!
//! Beside those, no transfer may be half-applied: any transfer that says it has a file (Published
//! or AllConfirmedDownloaded) must hold exactly the bytes its upload sent, acknowledged or not.

use crate::payload::fill_random;
use crate::report::ScenarioResult;
use crate::target::{Target, TargetSpec};
use broker_protocol::client::BrokerClient;
use broker_protocol::{FileTransferStatus, RecipientStatus};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;
use sha2::Digest;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Sizes the clients' files take in turn: inline-small, mid, and past the default inline limit.
const SIZES: [usize; 3] = [1 << 10, 16 << 10, 200 << 10];
/// Requests in flight while checking.
const CHECK_CONCURRENCY: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Fact {
    Initialized,
    Uploaded,
    Downloaded,
    Confirmed,
}

#[derive(Default)]
struct Log {
    acknowledged: Vec<(Uuid, Fact)>,
    /// What each upload sent (recorded before it was sent): size and SHA-256 (hex).
    sent: HashMap<Uuid, (u64, String)>,
}

pub struct CrashOptions {
    pub clients: usize,
    pub kills: usize,
    /// The broker runs between `min_uptime` and `max_uptime` (uniformly) before each kill.
    pub min_uptime: Duration,
    pub max_uptime: Duration,
}

#[derive(Default, Debug)]
struct Tally {
    checked: u64,
    lost: u64,
    half_applied: u64,
    problems: Vec<String>,
}

impl Tally {
    fn lose(&mut self, what: String) {
        self.lost += 1;
        if self.problems.len() < 20 {
            self.problems.push(what);
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the clients share: where they log, and the switches that pause and stop them.
struct Shared {
    log: Mutex<Log>,
    stop: AtomicBool,
    /// Set while the acknowledgements are checked: clients finish their request and wait.
    paused: AtomicBool,
    /// Clients inside a lifecycle.
    busy: AtomicU64,
}

/// Runs lifecycles until stopped; acknowledgements go to the shared log.
async fn client(
    sender: BrokerClient,
    recipient: BrokerClient,
    resource: String,
    seed: u64,
    shared: Arc<Shared>,
) {
    let mut state = seed | 1;
    let mut turn = 0usize;
    let log = &shared.log;
    while !shared.stop.load(Ordering::Relaxed) {
        if shared.paused.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        shared.busy.fetch_add(1, Ordering::SeqCst);
        if shared.paused.load(Ordering::SeqCst) {
            shared.busy.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        turn += 1;
        let mut body = vec![0u8; SIZES[turn % SIZES.len()]];
        fill_random(&mut body, &mut state);
        let going_on = || {
            if shared.paused.load(Ordering::SeqCst) {
                Err(anyhow::anyhow!("paused"))
            } else {
                Ok(())
            }
        };
        let result: anyhow::Result<()> = async {
            let init = super::initialize_body(&resource, "crash.bin");
            let id = sender.initialize(&init).await?;
            let ack = |fact| log.lock().unwrap().acknowledged.push((id, fact));
            ack(Fact::Initialized);
            let sum = sha256_hex(&body);
            log.lock()
                .unwrap()
                .sent
                .insert(id, (body.len() as u64, sum.clone()));
            going_on()?;
            sender.upload(id, Bytes::from(body.clone())).await?;
            ack(Fact::Uploaded);
            going_on()?;
            let response = recipient.download(id, None).await?;
            let received = response.bytes().await?;
            if sha256_hex(&received) == sum {
                ack(Fact::Downloaded);
            }
            going_on()?;
            recipient.confirm_download(id).await?;
            ack(Fact::Confirmed);
            Ok(())
        }
        .await;
        shared.busy.fetch_sub(1, Ordering::SeqCst);
        if result.is_err() {
            // The broker is down or restarting: wait a little, then start a new lifecycle.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Asks until the broker answers (it may still be recovering); a 404 is an answer.
async fn overview(
    sender: &BrokerClient,
    id: Uuid,
) -> Option<broker_protocol::transfer::FileTransferOverview> {
    for _ in 0..100 {
        match sender.overview(id).await {
            Ok(o) if o.summary.file_transfer_status == FileTransferStatus::UploadProcessing => {}
            Ok(o) => return Some(o),
            Err(e) if e.status() == Some(404) => return None,
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

async fn downloads_intact(recipient: &BrokerClient, id: Uuid, sum: &str) -> bool {
    for _ in 0..20 {
        if let Ok(response) = recipient.download(id, None).await {
            if let Ok(bytes) = response.bytes().await {
                return sha256_hex(&bytes) == sum;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Checks the acknowledgements `facts` (and that none of their transfers is half-applied); with
/// `download`, every transfer that has a file is downloaded too (else its stored size and SHA-256
/// are compared).
async fn check(
    target: &Target,
    facts: &[(Uuid, Fact)],
    sent: &HashMap<Uuid, (u64, String)>,
    download: bool,
) -> Tally {
    let mut by_id: HashMap<Uuid, Vec<Fact>> = HashMap::new();
    for (id, fact) in facts {
        by_id.entry(*id).or_default().push(*fact);
    }
    let (sender, recipient) = (&target.sender, &target.recipient);
    let checks = futures::stream::iter(by_id.into_iter().map(|(id, facts)| async move {
        let mut tally = Tally::default();
        let found = overview(sender, id).await;
        tally.checked += facts.len() as u64;
        let Some(o) = found else {
            for fact in facts {
                tally.lose(format!("{id}: {fact:?} acknowledged, transfer gone"));
            }
            return tally;
        };
        let status = o.summary.file_transfer_status;
        let recipient_status = o
            .summary
            .recipients
            .first()
            .map(|r| r.current_recipient_file_transfer_status_code);
        let has_file = matches!(
            status,
            FileTransferStatus::Published | FileTransferStatus::AllConfirmedDownloaded
        );
        let sent_file = sent.get(&id);
        // A transfer that says it has a file holds exactly the bytes sent, acknowledged or not.
        let intact = if has_file {
            let intact = match sent_file {
                Some((size, sum)) => {
                    o.summary.file_transfer_size as u64 == *size
                        && o.summary
                            .sha256
                            .as_deref()
                            .is_none_or(|s| s.eq_ignore_ascii_case(sum))
                        && (!download || downloads_intact(recipient, id, sum).await)
                }
                None => false,
            };
            if !intact {
                tally.half_applied += 1;
                tally
                    .problems
                    .push(format!("{id}: {status:?} without the bytes sent"));
            }
            intact
        } else {
            false
        };
        for fact in facts {
            let held = match fact {
                Fact::Initialized => true,
                Fact::Uploaded => intact || status == FileTransferStatus::Purged,
                Fact::Downloaded => {
                    recipient_status.is_some_and(|s| s != RecipientStatus::Initialized)
                }
                Fact::Confirmed => {
                    recipient_status == Some(RecipientStatus::DownloadConfirmed)
                        && matches!(
                            status,
                            FileTransferStatus::AllConfirmedDownloaded | FileTransferStatus::Purged
                        )
                }
            };
            if !held {
                tally.lose(format!(
                    "{id}: {fact:?} acknowledged, now {status:?} / {recipient_status:?}"
                ));
            }
        }
        tally
    }))
    .buffer_unordered(CHECK_CONCURRENCY);
    checks
        .fold(Tally::default(), |mut all, one| async move {
            all.checked += one.checked;
            all.lost += one.lost;
            all.half_applied += one.half_applied;
            all.problems.extend(one.problems);
            all
        })
        .await
}

pub async fn run(
    spec: &TargetSpec,
    resource: &str,
    options: &CrashOptions,
) -> anyhow::Result<ScenarioResult> {
    let mut target = Target::start(spec, resource).await?;
    eprintln!(
        "crash: {} clients, the broker SIGKILLed {} times ...",
        options.clients, options.kills
    );
    let shared = Arc::new(Shared {
        log: Mutex::new(Log::default()),
        stop: AtomicBool::new(false),
        paused: AtomicBool::new(false),
        busy: AtomicU64::new(0),
    });
    let clients: Vec<_> = (0..options.clients)
        .map(|i| {
            tokio::spawn(client(
                target.sender.clone(),
                target.recipient.clone(),
                target.resource.clone(),
                0x9E37_79B9_7F4A_7C15u64.wrapping_mul(i as u64 + 1),
                shared.clone(),
            ))
        })
        .collect();
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut total = Tally::default();
    let mut checked_up_to = 0;
    let mut restarts = vec![];
    let started = Instant::now();
    for kill in 1..=options.kills {
        let mut draw = [0u8; 8];
        fill_random(&mut draw, &mut rng);
        let span = options.max_uptime.saturating_sub(options.min_uptime);
        let uptime =
            options.min_uptime + span.mul_f64(u64::from_le_bytes(draw) as f64 / u64::MAX as f64);
        tokio::time::sleep(uptime).await;
        let restart = target.kill_and_restart().await?;
        restarts.push(restart.as_secs_f64() * 1000.0);
        // The clients pause while what they were told is checked, so each check covers one round.
        shared.paused.store(true, Ordering::SeqCst);
        while shared.busy.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // What was acknowledged before the kill (and since the last check) must all be there.
        let (facts, sent) = {
            let log = shared.log.lock().unwrap();
            (log.acknowledged[checked_up_to..].to_vec(), log.sent.clone())
        };
        checked_up_to += facts.len();
        let tally = check(&target, &facts, &sent, true).await;
        shared.paused.store(false, Ordering::SeqCst);
        eprintln!(
            "  kill {kill}: after {:.0} ms up, listening again in {:.0} ms; {} acknowledgements checked, {} lost, {} half-applied",
            uptime.as_secs_f64() * 1000.0,
            restart.as_secs_f64() * 1000.0,
            tally.checked,
            tally.lost,
            tally.half_applied
        );
        total.checked += tally.checked;
        total.lost += tally.lost;
        total.half_applied += tally.half_applied;
        total.problems.extend(tally.problems);
    }
    shared.stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await?;
    }
    // At the end, everything ever acknowledged once more (each file was downloaded in its round:
    // now its stored size and SHA-256 are compared).
    let (facts, sent) = {
        let log = shared.log.lock().unwrap();
        (log.acknowledged.clone(), log.sent.clone())
    };
    let last = check(&target, &facts, &sent, false).await;
    total.checked += last.checked;
    total.lost += last.lost;
    total.half_applied += last.half_applied;
    total.problems.extend(last.problems);
    for problem in total.problems.iter().take(20) {
        eprintln!("  LOST: {problem}");
    }
    let acknowledged = facts.len() as u64;
    println!(
        "crash: {} kills; acknowledged {acknowledged}, checked {}, lost {}, half-applied {}",
        options.kills, total.checked, total.lost, total.half_applied
    );
    let count = |f: Fact| facts.iter().filter(|(_, x)| *x == f).count() as f64;
    Ok(ScenarioResult {
        scenario: "crash".into(),
        figures: [
            ("acknowledged".to_string(), acknowledged as f64),
            ("acknowledged_uploads".to_string(), count(Fact::Uploaded)),
            ("acknowledged_confirms".to_string(), count(Fact::Confirmed)),
            ("checked".to_string(), total.checked as f64),
            ("lost".to_string(), total.lost as f64),
            ("half_applied".to_string(), total.half_applied as f64),
            ("kills".to_string(), options.kills as f64),
            (
                "restart_ms_max".to_string(),
                restarts.iter().copied().fold(0.0, f64::max),
            ),
            ("seconds".to_string(), started.elapsed().as_secs_f64()),
        ]
        .into(),
        params: [
            ("clients".to_string(), json!(options.clients)),
            ("kills".to_string(), json!(options.kills)),
        ]
        .into(),
        // A lost acknowledgement or a half-applied transfer fails the run.
        errors: total.lost + total.half_applied,
        ..Default::default()
    })
}
