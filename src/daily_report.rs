//! The daily summary report file (spec 7.5): the rows as a Parquet file with the original's columns,
//! kept under the data dir's `reports/` (written whole, synced, then renamed into place).

use base64::Engine;
use broker_actors::ports::DailyRow;
use broker_protocol::time::Timestamp;
use md5::{Digest, Md5};
use parquet::data_type::{ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The report's columns, in the original's order.
const SCHEMA: &str = "message daily_summary {
    REQUIRED BYTE_ARRAY date (UTF8);
    REQUIRED INT32 year;
    REQUIRED INT32 month;
    REQUIRED INT32 day;
    REQUIRED BYTE_ARRAY service_owner_id_pk (UTF8);
    REQUIRED BYTE_ARRAY service_owner_name (UTF8);
    REQUIRED BYTE_ARRAY file_sender_id (UTF8);
    REQUIRED BYTE_ARRAY resource_id (UTF8);
    REQUIRED BYTE_ARRAY altinn_resource_service (UTF8);
    REQUIRED BYTE_ARRAY recipient_type (UTF8);
    REQUIRED BYTE_ARRAY altinn_version (UTF8);
    REQUIRED INT64 filetransfercount;
    REQUIRED INT64 databasestoragebytes;
    REQUIRED INT64 filestoragebytes;
}";

/// A generated report and what its answer tells about it.
#[derive(Debug, Clone)]
pub struct DailyReport {
    pub file_name: String,
    /// The file (shared, so storing it and sending it copy nothing).
    pub bytes: bytes::Bytes,
    /// Base64 of the file's MD5.
    pub hash: String,
    pub service_owner_count: usize,
    pub total_file_transfers: u64,
    pub generated_at: Timestamp,
    pub environment: String,
}

/// Builds the report of `rows`, generated at `now` in `environment`.
pub fn build(rows: &[DailyRow], environment: &str, now: Timestamp) -> Result<DailyReport, String> {
    let bytes = parquet_file(rows).map_err(|e| format!("could not write the Parquet file: {e}"))?;
    let owners: std::collections::HashSet<&str> =
        rows.iter().map(|r| r.service_owner_id.as_str()).collect();
    Ok(DailyReport {
        file_name: format!(
            "{}_daily_summary_report_A3_{environment}.parquet",
            now.format("%Y%m%d_%H%M%S")
        ),
        hash: base64::engine::general_purpose::STANDARD.encode(Md5::digest(&bytes)),
        service_owner_count: owners.len(),
        total_file_transfers: rows.iter().map(|r| r.file_transfers).sum(),
        generated_at: now,
        environment: environment.to_string(),
        bytes: bytes.into(),
    })
}

/// Writes the report under `{data_dir}/reports/` and returns its path.
pub async fn store(data_dir: &Path, report: &DailyReport) -> std::io::Result<PathBuf> {
    let dir = data_dir.join("reports");
    let path = dir.join(&report.file_name);
    let partial = dir.join(format!(".{}.partial", report.file_name));
    let bytes = report.bytes.clone();
    let (written, target) = (partial.clone(), path.clone());
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        std::fs::create_dir_all(&dir)?;
        let mut file = std::fs::File::create(&written)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&written, &target)?;
        std::fs::File::open(&dir)?.sync_all()
    })
    .await
    .map_err(std::io::Error::other)??;
    Ok(path)
}

fn strings<'a>(rows: &'a [DailyRow], f: impl Fn(&'a DailyRow) -> &'a str) -> Vec<ByteArray> {
    rows.iter().map(|r| ByteArray::from(f(r))).collect()
}

/// One row group with every row; the report has a row per day, owner, sender, resource and recipient
/// type, so it stays small.
fn parquet_file(rows: &[DailyRow]) -> parquet::errors::Result<Vec<u8>> {
    let schema = Arc::new(parse_message_type(SCHEMA)?);
    let properties = Arc::new(WriterProperties::builder().build());
    let mut writer = SerializedFileWriter::new(Vec::new(), schema, properties)?;
    let date_part = |r: &DailyRow, range: std::ops::Range<usize>| -> i32 {
        r.date.get(range).and_then(|s| s.parse().ok()).unwrap_or(0)
    };
    let text: [Vec<ByteArray>; 8] = [
        strings(rows, |r| &r.date),
        strings(rows, |r| &r.service_owner_id),
        strings(rows, |r| &r.service_owner_name),
        strings(rows, |r| &r.sender),
        strings(rows, |r| &r.resource_id),
        // The original names the resource's service by its owner's name.
        strings(rows, |r| &r.service_owner_name),
        strings(rows, |r| r.recipient_type.as_str()),
        strings(rows, |_| "Altinn3"),
    ];
    let ints: [Vec<i32>; 3] = [
        rows.iter().map(|r| date_part(r, 0..4)).collect(),
        rows.iter().map(|r| date_part(r, 5..7)).collect(),
        rows.iter().map(|r| date_part(r, 8..10)).collect(),
    ];
    let longs: [Vec<i64>; 3] = [
        rows.iter().map(|r| r.file_transfers as i64).collect(),
        rows.iter().map(|_| 0).collect(),
        rows.iter().map(|r| r.file_storage_bytes as i64).collect(),
    ];
    let mut group = writer.next_row_group()?;
    let mut column = 0;
    while let Some(mut writer) = group.next_column()? {
        match column {
            0 => writer
                .typed::<ByteArrayType>()
                .write_batch(&text[0], None, None)?,
            1..=3 => writer
                .typed::<Int32Type>()
                .write_batch(&ints[column - 1], None, None)?,
            4..=10 => writer
                .typed::<ByteArrayType>()
                .write_batch(&text[column - 3], None, None)?,
            _ => writer
                .typed::<Int64Type>()
                .write_batch(&longs[column - 11], None, None)?,
        };
        writer.close()?;
        column += 1;
    }
    group.close()?;
    writer.into_inner()
}
