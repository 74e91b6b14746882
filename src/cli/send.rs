//! `broker send FILE …`: initialize a transfer, upload the file with tus (one upload, or parallel parts
//! joined by a final POST), resume where the server stands after a network error or a rerun, wait until
//! the transfer is Published and check the server's MD5 and SHA-256 against the file's.

use super::digest::digest_file;
use super::progress::Progress;
use super::send_state::{FileIdentity, SendState, StateStore, UploadPart};
use super::{api_error, print_json, tus_error, ClientArgs, TransferReport};
use anyhow::Context;
use broker_protocol::client::BrokerClient;
use broker_protocol::rate::RateLimiter;
use broker_protocol::size::{parse_positive_size, split_ranges};
use broker_protocol::transfer::{FileTransferInitialize, FileTransferOverview};
use broker_protocol::tus::{is_not_found, TusClient};
use broker_protocol::FileTransferStatus;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Parts smaller than this are not worth a connection of their own.
const MIN_PART_SIZE: u64 = 1 << 20;

#[derive(clap::Args, Debug)]
pub struct SendArgs {
    /// The file to send.
    pub file: PathBuf,
    /// The resource the transfer belongs to.
    #[arg(long)]
    pub resource: String,
    /// The sending organisation, e.g. 0192:111111111.
    #[arg(long)]
    pub sender: String,
    /// A recipient organisation (repeat for several).
    #[arg(long = "recipient", required = true)]
    pub recipients: Vec<String>,
    /// A property KEY=VALUE (repeat for several).
    #[arg(long = "property", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
    /// The sender's reference (default: the file name).
    #[arg(long)]
    pub reference: Option<String>,
    /// Upload in this many parts at once (joined by the server).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub parallel: u64,
    /// Bytes per PATCH request, e.g. 8MiB.
    #[arg(long, default_value = "8MiB", value_parser = parse_positive_size)]
    pub chunk_size: u64,
    /// Cap on the upload rate over all parts, in bytes per second (e.g. 10MiB).
    #[arg(long, value_parser = parse_positive_size)]
    pub limit_rate: Option<u64>,
    /// Where unfinished sends are remembered (default $XDG_STATE_HOME/broker).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// How long to wait, in seconds, for the server to publish the uploaded file.
    #[arg(long, default_value_t = 600)]
    pub publish_timeout: u64,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn parse_property(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    let client = args.client.client()?;
    let file = FileIdentity::of(&args.file)?;
    let store = StateStore::new(args.state_dir.clone())?;
    let server = client.base_url().to_string();
    let _held = store.lock(&server, &file)?;
    store.remove_stale(&server, &file);

    let mut state = match store.load(&server, &file)? {
        Some(state) => state,
        None => start_transfer(&args, &client, &file, &store).await?,
    };
    let id = state.file_transfer_id;
    let status = match client.overview(id).await {
        Ok(overview) => overview.summary.file_transfer_status,
        // The server forgot the transfer (e.g. it was purged): nothing to resume.
        Err(e) if e.status() == Some(404) => {
            store.remove(&state)?;
            state = start_transfer(&args, &client, &file, &store).await?;
            FileTransferStatus::Initialized
        }
        Err(e) => return Err(api_error(e)),
    };
    let id = state.file_transfer_id;
    let (resumed_from, transferred) = match status {
        FileTransferStatus::Initialized | FileTransferStatus::UploadStarted => {
            upload(&args, &client, &mut state, &store).await?
        }
        FileTransferStatus::UploadProcessing
        | FileTransferStatus::Published
        | FileTransferStatus::AllConfirmedDownloaded => (file.size, 0),
        other => {
            store.remove(&state)?;
            anyhow::bail!(
                "the earlier transfer {id} of this file is {other}; its state was dropped, so a new run starts a new transfer"
            );
        }
    };

    let overview = match wait_published(&client, id, args.publish_timeout).await {
        Ok(overview) => overview,
        Err(e) => {
            if e.is::<Unpublishable>() {
                store.remove(&state)?;
            }
            return Err(e);
        }
    };
    verify(&overview, &state)?;
    store.remove(&state)?;
    if args.client.json {
        print_json(&TransferReport {
            file_transfer_id: id,
            path: file.path.clone(),
            bytes_total: file.size,
            bytes_transferred: transferred,
            resumed_from,
            sha256: state.sha256.clone(),
        })
    } else {
        println!("{id}");
        Ok(())
    }
}

/// Hashes the file, initializes the transfer and records it before any byte is uploaded.
async fn start_transfer(
    args: &SendArgs,
    client: &BrokerClient,
    file: &FileIdentity,
    store: &StateStore,
) -> anyhow::Result<SendState> {
    let digests = digest_file(&file.path).await?;
    anyhow::ensure!(
        FileIdentity::of(&args.file)? == *file,
        "{} changed while it was read",
        file.path.display()
    );
    let name = args
        .file
        .file_name()
        .or_else(|| file.path.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .context("the file has no name")?;
    let properties: BTreeMap<String, String> = args.properties.iter().cloned().collect();
    let body = FileTransferInitialize {
        file_name: Some(name.clone()),
        resource_id: Some(args.resource.clone()),
        senders_file_transfer_reference: Some(args.reference.clone().unwrap_or(name)),
        sender: Some(args.sender.clone()),
        recipients: Some(args.recipients.clone()),
        property_list: (!properties.is_empty()).then_some(properties),
        checksum: Some(digests.md5.clone()),
        disable_virus_scan: None,
    };
    let id = client.initialize(&body).await.map_err(api_error)?;
    let part_count = args.parallel.min((file.size / MIN_PART_SIZE).max(1));
    let parts: Vec<UploadPart> = split_ranges(file.size, part_count)
        .into_iter()
        .map(|(start, len)| UploadPart {
            start,
            len,
            location: None,
        })
        .collect();
    let state = SendState {
        server: client.base_url().to_string(),
        file: file.clone(),
        md5: digests.md5,
        sha256: digests.sha256,
        file_transfer_id: id,
        concatenated: parts.len() > 1,
        parts,
    };
    store.save(&state)?;
    Ok(state)
}

/// Creates the uploads that do not exist yet, sends what the server lacks of each, and joins the parts.
/// Returns (bytes the server had when this run started, bytes this run sent).
async fn upload(
    args: &SendArgs,
    client: &BrokerClient,
    state: &mut SendState,
    store: &StateStore,
) -> anyhow::Result<(u64, u64)> {
    let tus = TusClient::new(client).map_err(tus_error)?;
    let collection = tus.upload_url(state.file_transfer_id);
    let mut offsets = Vec::with_capacity(state.parts.len());
    for i in 0..state.parts.len() {
        // A plain upload lives at the collection URL itself, and may exist before we recorded it.
        let known = match state.parts[i].location.clone() {
            Some(location) => Some(location),
            None if !state.concatenated => Some(collection.clone()),
            None => None,
        };
        let offset = match known {
            Some(location) => match tus.offset(&location).await {
                Ok(o) => {
                    state.parts[i].location = Some(location);
                    Some(o.offset)
                }
                Err(e) if is_not_found(&e) => None,
                Err(e) => return Err(tus_error(e)),
            },
            None => None,
        };
        let offset = match offset {
            Some(offset) => offset,
            None => {
                let part = &mut state.parts[i];
                let location = tus
                    .create(&collection, part.len, state.concatenated)
                    .await
                    .map_err(tus_error)?;
                part.location = Some(location);
                store.save(state)?;
                0
            }
        };
        offsets.push(offset);
    }
    let resumed_from: u64 = offsets.iter().sum();

    let progress = Progress::start(state.file.size, resumed_from);
    let mut tus = tus.with_progress(progress.callback());
    if let Some(rate) = args.limit_rate {
        tus = tus.with_rate_limit(Arc::new(RateLimiter::new(rate)));
    }
    let locations: Vec<String> = state
        .parts
        .iter()
        .map(|p| p.location.clone().expect("every part was created above"))
        .collect();
    let uploads =
        state
            .parts
            .iter()
            .zip(&offsets)
            .zip(&locations)
            .map(|((part, &offset), location)| {
                tus.upload_range(
                    location,
                    &state.file.path,
                    part.start,
                    part.len,
                    offset,
                    args.chunk_size,
                )
            });
    let sent: u64 = futures::future::try_join_all(uploads)
        .await
        .map_err(tus_error)?
        .into_iter()
        .sum();
    drop(progress);

    if state.concatenated {
        if let Err(e) = tus.concatenate(&collection, &locations).await {
            // The join may have happened even though its answer was lost.
            let joined = client
                .overview(state.file_transfer_id)
                .await
                .is_ok_and(|o| o.summary.file_transfer_status > FileTransferStatus::UploadStarted);
            if !joined {
                return Err(tus_error(e)).context("joining the parts failed");
            }
        }
    }
    Ok((resumed_from, sent))
}

/// The transfer failed or was removed on the server: it cannot be resumed.
#[derive(Debug, thiserror::Error)]
#[error("the transfer {id} is {status}: {text}")]
struct Unpublishable {
    id: Uuid,
    status: FileTransferStatus,
    text: String,
}

async fn wait_published(
    client: &BrokerClient,
    id: Uuid,
    timeout_secs: u64,
) -> anyhow::Result<FileTransferOverview> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout_secs);
    loop {
        let overview = client.overview(id).await.map_err(api_error)?;
        let status = overview.summary.file_transfer_status;
        match status {
            FileTransferStatus::Published | FileTransferStatus::AllConfirmedDownloaded => {
                return Ok(overview)
            }
            FileTransferStatus::Failed
            | FileTransferStatus::Cancelled
            | FileTransferStatus::Purged => {
                return Err(Unpublishable {
                    id,
                    status,
                    text: overview.summary.file_transfer_status_text,
                }
                .into())
            }
            _ if tokio::time::Instant::now() >= deadline => anyhow::bail!(
                "the transfer {id} was not published within {timeout_secs} s (it is {status}); run again to keep waiting"
            ),
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// The server's digests of what it stored must be the file's.
fn verify(overview: &FileTransferOverview, state: &SendState) -> anyhow::Result<()> {
    let summary = &overview.summary;
    let same = |theirs: &Option<String>, ours: &str| {
        theirs
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(ours))
    };
    anyhow::ensure!(
        same(&summary.sha256, &state.sha256),
        "the server stored SHA-256 {}, the file has {}",
        summary.sha256.as_deref().unwrap_or("(none)"),
        state.sha256
    );
    anyhow::ensure!(
        same(&summary.checksum, &state.md5),
        "the server stored MD5 {}, the file has {}",
        summary.checksum.as_deref().unwrap_or("(none)"),
        state.md5
    );
    Ok(())
}
