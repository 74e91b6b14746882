//! Public usage of the Rust client: a sender initializes a transfer and streams a file, the recipient
//! finds it, downloads it and confirms.
//!
//! ```text
//! cargo run --release -- serve &
//! export SENDER=$(cargo run -q --release -- token --data-dir ./broker-data --org 0192:111111111 --scope altinn:broker.write)
//! export RECIPIENT=$(cargo run -q --release -- token --data-dir ./broker-data --org 0192:222222222 --scope altinn:broker.read)
//! cargo run --example send_and_fetch -- http://127.0.0.1:8080 tour-resource ./some-file
//! ```
//! (The resource must be configured first; see the README's tour.)

use anyhow::Context;
use broker_protocol::client::BrokerClient;
use broker_protocol::transfer::FileTransferInitialize;
use futures::StreamExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (url, resource, path) = match (args.next(), args.next(), args.next()) {
        (Some(u), Some(r), Some(p)) => (u, r, p),
        _ => anyhow::bail!(
            "usage: send_and_fetch URL RESOURCE FILE (tokens in $SENDER and $RECIPIENT)"
        ),
    };
    let base = BrokerClient::new(&url);
    let sender = base.with_token(std::env::var("SENDER").context("set $SENDER")?);
    let recipient = base.with_token(std::env::var("RECIPIENT").context("set $RECIPIENT")?);

    let id = sender
        .initialize(&FileTransferInitialize {
            file_name: std::path::Path::new(&path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned()),
            resource_id: Some(resource.clone()),
            senders_file_transfer_reference: Some("example".into()),
            sender: Some("0192:111111111".into()),
            recipients: Some(vec!["0192:222222222".into()]),
            ..Default::default()
        })
        .await?;
    // The body streams from the file: memory stays small whatever its size.
    let file = tokio::fs::File::open(&path).await?;
    sender
        .upload(
            id,
            reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file)),
        )
        .await?;
    println!("sent {id}");

    let waiting = recipient
        .search(&[
            ("resourceId", resource.as_str()),
            ("status", "Published"),
            ("recipientStatus", "Initialized"),
        ])
        .await?;
    println!("{} transfer(s) waiting for the recipient", waiting.len());
    let mut body = recipient.download(id, None).await?.bytes_stream();
    let mut received = 0usize;
    while let Some(chunk) = body.next().await {
        received += chunk?.len();
    }
    recipient.confirm_download(id).await?;
    let overview = recipient.overview(id).await?;
    println!(
        "received {received} bytes, sha256 {}, status {}",
        overview.summary.sha256.unwrap_or_default(),
        overview.summary.file_transfer_status
    );
    Ok(())
}
