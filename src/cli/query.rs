//! `broker list` (the search endpoint, one line per transfer) and `broker status ID` (the overview).
//! Both answer for whoever the token is for: the sender or a recipient.

use super::{api_error, print_json, ClientArgs};
use broker_protocol::size::human;
use broker_protocol::transfer::FileTransferOverview;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Role {
    Sender,
    Recipient,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Only transfers where the caller has this role.
    #[arg(long, value_enum)]
    pub role: Option<Role>,
    /// The resource to search in (the API searches one resource at a time).
    #[arg(long)]
    pub resource: String,
    /// Only transfers with this status (e.g. Published).
    #[arg(long)]
    pub status: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The fileTransferId.
    pub id: Uuid,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    let client = args.client.client()?;
    let mut query: Vec<(&str, &str)> = vec![("resourceId", &args.resource)];
    if let Some(status) = &args.status {
        query.push(("status", status));
    }
    match args.role {
        Some(Role::Sender) => query.push(("role", "Sender")),
        Some(Role::Recipient) => query.push(("role", "Recipient")),
        None => {}
    }
    let ids = client.search(&query).await.map_err(api_error)?;
    let mut overviews = Vec::with_capacity(ids.len());
    for id in ids {
        overviews.push(client.overview(id).await.map_err(api_error)?);
    }
    if args.client.json {
        return print_json(&overviews);
    }
    for overview in &overviews {
        let s = &overview.summary;
        println!(
            "{}\t{}\t{}\t{}",
            s.file_transfer_id, s.file_transfer_status, s.file_name, s.file_transfer_size
        );
    }
    Ok(())
}

pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let client = args.client.client()?;
    let overview = client.overview(args.id).await.map_err(api_error)?;
    if args.client.json {
        return print_json(&overview);
    }
    print!("{}", describe_overview(&overview));
    Ok(())
}

/// The overview as aligned `label: value` lines.
fn describe_overview(overview: &FileTransferOverview) -> String {
    let s = &overview.summary;
    let time = |t: &chrono::DateTime<chrono::Utc>| t.to_rfc3339();
    let mut lines = vec![
        ("fileTransferId", s.file_transfer_id.to_string()),
        (
            "status",
            format!(
                "{} ({})",
                s.file_transfer_status, s.file_transfer_status_text
            ),
        ),
        ("file", s.file_name.clone()),
        (
            "size",
            format!(
                "{} bytes ({})",
                s.file_transfer_size,
                human(s.file_transfer_size.max(0) as u64)
            ),
        ),
        ("resource", s.resource_id.clone()),
        ("sender", s.sender.clone()),
        (
            "reference",
            s.senders_file_transfer_reference
                .clone()
                .unwrap_or_default(),
        ),
        ("checksum (MD5)", s.checksum.clone().unwrap_or_default()),
        ("sha256", s.sha256.clone().unwrap_or_default()),
        ("created", time(&s.created)),
        ("expires", time(&s.expiration_time)),
        (
            "published",
            overview.published.as_ref().map(time).unwrap_or_default(),
        ),
    ];
    for r in &s.recipients {
        lines.push((
            "recipient",
            format!(
                "{} {} ({})",
                r.recipient,
                r.current_recipient_file_transfer_status_code,
                time(&r.current_recipient_file_transfer_status_changed)
            ),
        ));
    }
    for (key, value) in &s.property_list {
        lines.push(("property", format!("{key}={value}")));
    }
    let width = lines
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0);
    lines
        .iter()
        .map(|(label, value)| {
            format!(
                "{:<width$}  {value}\n",
                format!("{label}:"),
                width = width + 1
            )
        })
        .collect()
}
