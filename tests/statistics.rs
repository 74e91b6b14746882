//! Statistics through the API (spec 7.4-7.5): a scripted month's CSV in every dimension combination,
//! each error code, and the daily summary's Parquet file read back with pyarrow, behind its API key
//! and rate limit.

use crate::common::*;
use crate::support::*;
use broker::auth::dev_issuer::DevIssuer;
use broker_protocol::client::BrokerClient;
use broker_protocol::resource::ResourceUpdate;
use chrono::Datelike;
use uuid::Uuid;

const SENDER_VENDOR: &str = "0192:900000001";
const RECIPIENT_VENDOR: &str = "0192:900000002";
const OTHER_OWNER: &str = "0192:555555555";

/// A client acting for `org` through `vendor`'s system.
fn system_user(server: &TestServer, vendor: &str, org: &str, scopes: &str) -> BrokerClient {
    let token = DevIssuer::load(&server.data_dir, "broker-dev")
        .unwrap()
        .mint_system_user(vendor, org, scopes, chrono::Duration::hours(1))
        .unwrap();
    BrokerClient::new(&server.url).with_token(token)
}

async fn send(
    f: &Fixture,
    sender: &BrokerClient,
    resource: &str,
    recipients: &[&str],
    properties: &[(&str, &str)],
    content: Option<&[u8]>,
) -> Uuid {
    let mut body = f.initialize_body(recipients);
    body.resource_id = Some(resource.into());
    body.property_list = Some(
        properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let id = sender.initialize(&body).await.unwrap();
    if let Some(content) = content {
        sender.upload(id, content.to_vec()).await.unwrap();
        wait_for_status(
            &f.sender,
            id,
            broker_protocol::FileTransferStatus::Published,
            std::time::Duration::from_secs(30),
        )
        .await;
    }
    id
}

async fn download(client: &BrokerClient, id: Uuid) {
    client
        .download(id, None)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
}

/// The month's transfers: T1 sent through a vendor's system to two recipients (the first downloads
/// through another vendor's system and confirms with its own token, the second downloads twice), T2
/// sent directly and never downloaded, T3 on a second resource never uploaded, and a status message
/// on the second resource. Returns the bytes each resource stored (for the daily summary).
async fn script(f: &Fixture) -> u64 {
    f.owner
        .configure_resource("stats-b", &ResourceUpdate::default())
        .await
        .unwrap();
    let through_vendor = system_user(&f.server, SENDER_VENDOR, SENDER, &format!("{WRITE} {READ}"));
    let recipient_by_vendor = system_user(&f.server, RECIPIENT_VENDOR, RECIPIENT, READ);
    let (a, b) = (payload(3_000, 1), payload(5_000, 2));
    let t1 = send(
        f,
        &through_vendor,
        RESOURCE,
        &[RECIPIENT, RECIPIENT_2],
        &[],
        Some(&a),
    )
    .await;
    download(&recipient_by_vendor, t1).await;
    f.recipient.confirm_download(t1).await.unwrap();
    download(&f.recipient_2, t1).await;
    download(&f.recipient_2, t1).await;
    send(f, &f.sender, RESOURCE, &[RECIPIENT], &[], Some(&b)).await;
    send(f, &f.sender, "stats-b", &[RECIPIENT], &[], None).await;
    send(
        f,
        &f.sender,
        "stats-b",
        &[RECIPIENT],
        &[("statusmessage", "true")],
        None,
    )
    .await;
    2 * a.len() as u64 + b.len() as u64
}

async fn monthly(client: &BrokerClient, query: &str) -> reqwest::Response {
    client
        .request(
            reqwest::Method::GET,
            &format!("/statistics/monthly?{query}"),
        )
        .send()
        .await
        .unwrap()
}

async fn csv(client: &BrokerClient, query: &str) -> (String, String) {
    let response = monthly(client, query).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "text/csv; charset=utf-8");
    let disposition = header(&response, "content-disposition");
    (disposition, response.text().await.unwrap())
}

#[tokio::test]
async fn the_monthly_csv_counts_a_scripted_month_in_every_dimension_combination() {
    // A script that straddles midnight at a month's end has its rows split over two months: then it
    // runs again on a fresh broker, wholly in the new month.
    let (f, now) = loop {
        let f = Fixture::new().await;
        let before = chrono::Utc::now();
        script(&f).await;
        let now = chrono::Utc::now();
        if (before.year(), before.month()) == (now.year(), now.month()) {
            break (f, now);
        }
    };
    let (y, m) = (now.year(), now.month());
    let period = format!("year={y}&month={m}");
    let head = "year,month,resourceId,senderVendor,recipientVendor,sender,recipient,totalFileTransfers,uploadCount,totalTransferDownloadAttempts,transfersWithDownloadConfirmed";
    let (s, r, r2, sv, rv) = (
        SENDER,
        RECIPIENT,
        RECIPIENT_2,
        SENDER_VENDOR,
        RECIPIENT_VENDOR,
    );
    let table = |lines: &[String]| format!("{head}\r\n{}\r\n", lines.join("\r\n"));

    let (disposition, both) = csv(
        &f.owner,
        &format!("{period}&includeEndUser=true&includeVendor=true"),
    )
    .await;
    assert_eq!(
        disposition,
        format!("attachment; filename=monthly_statistics_all-resources_{y:04}-{m:02}.csv")
    );
    assert_eq!(
        both,
        table(&[
            format!("{y},{m},stats-b,,,{s},{r},2,0,0,0"),
            format!("{y},{m},{RESOURCE},,,{s},{r},1,1,0,0"),
            format!("{y},{m},{RESOURCE},{sv},{rv},{s},{r},1,1,1,1"),
            format!("{y},{m},{RESOURCE},{sv},,{s},{r2},1,1,2,0"),
        ])
    );

    let (_, end_users) = csv(&f.owner, &period).await;
    assert_eq!(
        end_users,
        table(&[
            format!("{y},{m},stats-b,,,{s},{r},2,0,0,0"),
            format!("{y},{m},{RESOURCE},,,{s},{r},2,2,1,1"),
            format!("{y},{m},{RESOURCE},,,{s},{r2},1,1,2,0"),
        ]),
        "by default the vendor columns are summed away"
    );

    let (_, vendors) = csv(
        &f.owner,
        &format!("{period}&includeEndUser=false&includeVendor=true"),
    )
    .await;
    assert_eq!(
        vendors,
        table(&[
            format!("{y},{m},stats-b,,,,,2,0,0,0"),
            format!("{y},{m},{RESOURCE},,,,,1,1,0,0"),
            format!("{y},{m},{RESOURCE},{sv},,,,1,1,2,0"),
            format!("{y},{m},{RESOURCE},{sv},{rv},,,1,1,1,1"),
        ])
    );

    let (disposition, one) = csv(&f.owner, &format!("{period}&resourceId=stats-b")).await;
    assert_eq!(
        disposition,
        format!("attachment; filename=monthly_statistics_stats-b_{y:04}-{m:02}.csv")
    );
    assert_eq!(one, table(&[format!("{y},{m},stats-b,,,{s},{r},2,0,0,0")]));

    let next = if m == 12 {
        format!("year={}&month=1", y + 1)
    } else {
        format!("year={y}&month={}", m + 1)
    };
    assert_eq!(
        csv(&f.owner, &next).await.1,
        format!("{head}\r\n"),
        "a month without activity has the header only"
    );
}

#[tokio::test]
async fn the_monthly_csv_refuses_bad_periods_dimensions_resources_and_callers() {
    let f = Fixture::new().await;
    for query in [
        "year=0&month=1",
        "year=10000&month=1",
        "year=2026&month=0",
        "year=2026&month=13",
        "year=2026",
        "month=3",
        "year=abc&month=3",
    ] {
        expect_problem_response(monthly(&f.owner, query).await, 400, Some("BRO-06003")).await;
    }
    expect_problem_response(
        monthly(
            &f.owner,
            "year=2026&month=3&includeEndUser=false&includeVendor=false",
        )
        .await,
        400,
        Some("BRO-06005"),
    )
    .await;
    expect_problem_response(
        monthly(&f.owner, "year=2026&month=3&resourceId=never-configured").await,
        400,
        Some("BRO-00025"),
    )
    .await;
    let other = f.server.client(OTHER_OWNER, SO_SCOPE);
    other.create_service_owner("Other owner").await.unwrap();
    other
        .configure_resource("others-resource", &ResourceUpdate::default())
        .await
        .unwrap();
    expect_problem_response(
        monthly(&f.owner, "year=2026&month=3&resourceId=others-resource").await,
        401,
        Some("BRO-00006"),
    )
    .await;
    assert_eq!(
        monthly(&f.sender, "year=2026&month=3").await.status(),
        403,
        "a sender's token lacks the service owner scope"
    );
    assert_eq!(
        monthly(&f.server.anonymous(), "year=2026&month=3")
            .await
            .status(),
        401
    );
}

fn with_statistics(dir: &std::path::Path, key: Option<&str>, limit: u32) -> broker::config::Config {
    let mut config = test_config(dir);
    config.statistics.api_key = key.map(str::to_string);
    config.statistics.rate_limit_requests = Some(limit);
    config.statistics.status_message_resources = vec!["stats-b".into()];
    config.statistics.environment = Some("test".into());
    // The test client is a proxy the broker trusts: each `X-Forwarded-For` is a client of its own.
    config.server.trusted_proxies = vec!["127.0.0.1".into()];
    config
}

async fn daily(
    server: &TestServer,
    path: &str,
    key: Option<&str>,
    client: &str,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(server.api(&format!("/statistics/{path}")))
        .header("x-forwarded-for", client);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    request.send().await.unwrap()
}

/// The Parquet file's column names and rows, as pyarrow reads them.
fn read_parquet(path: &std::path::Path) -> serde_json::Value {
    let script = "import json, sys\nimport pyarrow.parquet as pq\nt = pq.read_table(sys.argv[1])\nprint(json.dumps({'columns': t.column_names, 'types': [str(c.type) for c in t.schema], 'rows': t.to_pylist()}))";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "pyarrow could not read the report (scripts/test.sh installs pyarrow): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn the_daily_summary_is_a_parquet_file_pyarrow_reads_behind_its_key_and_rate_limit() {
    let temp = tempfile::tempdir().unwrap();
    let key = "a-long-statistics-key-for-tests";
    let server = TestServer::start_with(with_statistics(temp.path(), Some(key), 3)).await;
    let f = Fixture::on(server).await;

    // No transfers yet: nothing to report.
    let empty = daily(&f.server, "generate-daily-summary", Some(key), "10.0.0.9").await;
    expect_problem_response(empty, 404, Some("BRO-06001")).await;

    let bytes = script(&f).await;

    let missing = daily(&f.server, "generate-daily-summary", None, "10.0.0.1").await;
    assert_eq!(missing.status(), 401);
    assert_eq!(header(&missing, "x-ratelimit-limit"), "3");
    assert_eq!(header(&missing, "x-ratelimit-remaining"), "2");
    assert!(missing.json::<serde_json::Value>().await.unwrap()["error"].is_string());
    let wrong = daily(
        &f.server,
        "generate-daily-summary",
        Some("not-it"),
        "10.0.0.1",
    )
    .await;
    assert_eq!(wrong.status(), 401);

    let stored = daily(&f.server, "generate-daily-summary", Some(key), "10.0.0.1").await;
    assert_eq!(stored.status(), 200);
    assert_eq!(header(&stored, "x-ratelimit-remaining"), "0");
    let answer: serde_json::Value = stored.json().await.unwrap();
    assert_eq!(answer["serviceOwnerCount"], 1);
    assert_eq!(
        answer["totalFileTransferCount"], 4,
        "three pairs on the resource, one on stats-b"
    );
    assert_eq!(answer["environment"], "test");
    assert_eq!(answer["altinn2Included"], false);
    let path = std::path::PathBuf::from(answer["filePath"].as_str().unwrap());
    assert!(path.starts_with(f.server.data_dir.join("reports")));
    assert!(path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .ends_with("_daily_summary_report_A3_test.parquet"));
    let file = std::fs::read(&path).unwrap();
    assert_eq!(answer["fileSizeBytes"], file.len());
    use base64::Engine;
    use md5::Digest;
    assert_eq!(
        answer["fileHash"],
        base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&file))
    );

    let read = read_parquet(&path);
    assert_eq!(
        read["columns"],
        serde_json::json!([
            "date",
            "year",
            "month",
            "day",
            "service_owner_id_pk",
            "service_owner_name",
            "file_sender_id",
            "resource_id",
            "altinn_resource_service",
            "recipient_type",
            "altinn_version",
            "filetransfercount",
            "databasestoragebytes",
            "filestoragebytes"
        ])
    );
    let today = chrono::Utc::now();
    let rows = read["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "rows: {rows:?}");
    let row = |resource: &str| {
        rows.iter()
            .find(|r| r["resource_id"] == resource)
            .unwrap_or_else(|| panic!("no row for {resource}: {rows:?}"))
            .clone()
    };
    let main = row(RESOURCE);
    assert_eq!(main["date"], today.format("%Y-%m-%d").to_string());
    assert_eq!(main["year"], today.year());
    assert_eq!(main["month"], today.month());
    assert_eq!(main["day"], today.day());
    assert_eq!(main["service_owner_id_pk"], SERVICE_OWNER);
    assert_eq!(main["service_owner_name"], "Test service owner");
    assert_eq!(main["file_sender_id"], "111111111");
    assert_eq!(main["recipient_type"], "Organization");
    assert_eq!(main["altinn_version"], "Altinn3");
    assert_eq!(main["filetransfercount"], 3);
    assert_eq!(main["databasestoragebytes"], 0);
    assert_eq!(main["filestoragebytes"], bytes);
    assert_eq!(
        row("stats-b")["filetransfercount"],
        1,
        "the status message on stats-b is left out"
    );

    // Only the right-most address counts: what a client writes before it proves nothing.
    let limited = daily(
        &f.server,
        "generate-daily-summary",
        Some(key),
        "10.9.9.9, 10.0.0.1",
    )
    .await;
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = header(&limited, "retry-after").parse().unwrap();
    assert!((1..=3600).contains(&retry_after));
    assert_eq!(header(&limited, "x-ratelimit-remaining"), "0");
    assert!(!header(&limited, "x-ratelimit-reset").is_empty());
    let body: serde_json::Value = limited.json().await.unwrap();
    assert_eq!(body["retryAfter"], retry_after);
    assert!(body["resetTime"].is_string() && body["error"].is_string());

    // Another client has its own allowance, and may take the file itself.
    let file = daily(
        &f.server,
        "generate-and-download-daily-summary",
        Some(key),
        "10.0.0.2",
    )
    .await;
    assert_eq!(file.status(), 200);
    assert_eq!(header(&file, "content-type"), "application/octet-stream");
    assert_eq!(header(&file, "x-total-filetransfer-count"), "4");
    assert_eq!(header(&file, "x-service-owner-count"), "1");
    assert_eq!(header(&file, "x-environment"), "test");
    assert_eq!(header(&file, "x-altinn2-included"), "false");
    let hash = header(&file, "x-file-hash");
    let size = header(&file, "x-file-size");
    let body = file.bytes().await.unwrap();
    assert_eq!(size, body.len().to_string());
    assert_eq!(
        hash,
        base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body))
    );
    let downloaded = temp.path().join("downloaded.parquet");
    std::fs::write(&downloaded, &body).unwrap();
    assert_eq!(
        read_parquet(&downloaded)["rows"].as_array().unwrap().len(),
        2
    );
}

#[tokio::test]
async fn without_a_configured_key_the_daily_summary_refuses_every_call() {
    let temp = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(with_statistics(temp.path(), None, 10)).await;
    for key in [None, Some(""), Some("anything")] {
        let refused = daily(&server, "generate-daily-summary", key, "10.0.0.3").await;
        assert_eq!(refused.status(), 401, "key {key:?}");
        assert!(refused.json::<serde_json::Value>().await.unwrap()["error"].is_string());
    }
    let refused = daily(
        &server,
        "generate-and-download-daily-summary",
        Some("anything"),
        "10.0.0.3",
    )
    .await;
    assert_eq!(refused.status(), 401);
}

#[tokio::test]
async fn a_client_at_its_limit_stays_limited_whatever_forwarding_headers_it_sends() {
    let temp = tempfile::tempdir().unwrap();
    let mut config = with_statistics(temp.path(), Some("the-key-for-this-test"), 2);
    config.server.trusted_proxies = vec![];
    let server = TestServer::start_with(config).await;
    for _ in 0..2 {
        let counted = daily(&server, "generate-daily-summary", None, "10.0.0.1").await;
        assert_eq!(
            counted.status(),
            401,
            "the positive control: a call that counts"
        );
    }
    let client = reqwest::Client::new();
    for i in 0..500 {
        let forged = format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256);
        let refused = client
            .post(server.api("/statistics/generate-daily-summary"))
            .header("x-forwarded-for", &forged)
            .header("x-real-ip", &forged)
            .send()
            .await
            .unwrap();
        assert_eq!(
            refused.status(),
            429,
            "a forwarding header from an untrusted peer named a new client ({forged})"
        );
    }
}
