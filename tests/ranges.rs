//! Range downloads (spec 5): every accepted form, clamping, 416 `BRO-00029`, headers ignored as
//! malformed, Content-Disposition, parallel reassembly and the DownloadStarted debounce.

use crate::common::*;
use crate::support::*;
use broker_protocol::RecipientStatus;
use reqwest::Method;
use uuid::Uuid;

const SIZE: usize = 1000;

async fn published(f: &Fixture) -> (Uuid, Vec<u8>) {
    let content = payload(SIZE, 41);
    (f.publish(&[RECIPIENT], &content).await, content)
}

async fn get_range(f: &Fixture, id: Uuid, range: &str) -> reqwest::Response {
    f.recipient
        .request(Method::GET, &format!("/filetransfer/{id}/download"))
        .header("range", range)
        .send()
        .await
        .unwrap()
}

/// The response must be a 206 of `content[start..=end]` with the right headers.
async fn expect_partial(
    what: &str,
    response: reqwest::Response,
    content: &[u8],
    start: usize,
    end: usize,
) {
    assert_eq!(response.status().as_u16(), 206, "{what}");
    assert_eq!(
        header(&response, "content-range"),
        format!("bytes {start}-{end}/{}", content.len()),
        "{what}"
    );
    assert_eq!(
        header(&response, "content-length"),
        (end - start + 1).to_string(),
        "{what}"
    );
    assert_eq!(header(&response, "accept-ranges"), "bytes", "{what}");
    assert_eq!(
        header(&response, "content-type"),
        "application/octet-stream",
        "{what}"
    );
    assert!(
        header(&response, "content-disposition").contains("filename="),
        "{what}"
    );
    let body = response.bytes().await.unwrap();
    assert_eq!(&body[..], &content[start..=end], "{what}");
}

#[tokio::test]
async fn each_single_range_form_is_served_as_206() {
    let f = Fixture::new().await;
    let (id, content) = published(&f).await;
    let last = SIZE - 1;
    let cases = [
        ("bytes=0-9", 0, 9),
        ("BYTES=0-9", 0, 9),
        ("Bytes=10-19", 10, 19),
        ("bytes=5-", 5, last),
        ("bytes=-5", SIZE - 5, last),
        ("bytes=-100000", 0, last),
        ("bytes=990-5000", 990, last),
        ("bytes=999-999", last, last),
        ("bytes=0-0", 0, 0),
    ];
    for (range, start, end) in cases {
        expect_partial(range, get_range(&f, id, range).await, &content, start, end).await;
    }
}

#[tokio::test]
async fn unsatisfiable_ranges_are_416_bro_00029_with_the_size_in_content_range() {
    let f = Fixture::new().await;
    let (id, _) = published(&f).await;
    for range in [
        format!("bytes={SIZE}-"),
        format!("bytes={}-", SIZE + 50),
        format!("bytes={SIZE}-{}", SIZE + 5),
        "bytes=-0".to_string(),
    ] {
        let response = get_range(&f, id, &range).await;
        // Beyond Altinn (which sends none): RFC 9110's `bytes */size`, so a client learns the size.
        assert_eq!(
            header(&response, "content-range"),
            format!("bytes */{SIZE}"),
            "{range}"
        );
        let body = expect_problem_response(response, 416, Some("BRO-00029")).await;
        assert_eq!(body["title"], "Range Not Satisfiable", "{range}");
    }
}

#[tokio::test]
async fn any_range_on_an_empty_file_is_416() {
    let f = Fixture::new().await;
    let id = f.publish(&[RECIPIENT], &[]).await;
    for range in ["bytes=0-0", "bytes=0-", "bytes=-1"] {
        expect_problem_response(get_range(&f, id, range).await, 416, Some("BRO-00029")).await;
    }
}

#[tokio::test]
async fn malformed_multiple_or_foreign_ranges_are_ignored_and_the_whole_file_served() {
    let f = Fixture::new().await;
    let (id, content) = published(&f).await;
    for range in [
        "bytes=0-1,5-10",
        "bytes=",
        "bytes=abc",
        "bytes=9-2",
        "items=0-1",
        "bytes=-",
        "0-9",
        "bytes=1-x",
    ] {
        let response = get_range(&f, id, range).await;
        assert_eq!(response.status().as_u16(), 200, "{range}");
        assert!(response.headers().get("content-range").is_none(), "{range}");
        assert_eq!(
            header(&response, "content-length"),
            SIZE.to_string(),
            "{range}"
        );
        assert_eq!(header(&response, "accept-ranges"), "bytes", "{range}");
        assert_eq!(
            &response.bytes().await.unwrap()[..],
            &content[..],
            "{range}"
        );
    }
}

#[tokio::test]
async fn content_disposition_carries_an_ascii_name_and_the_utf8_name() {
    let f = Fixture::new().await;
    let mut body = f.initialize_body(&[RECIPIENT]);
    body.file_name = Some("blåbær rapport.pdf".into());
    let id = f.sender.initialize(&body).await.unwrap();
    f.sender.upload(id, b"berries".to_vec()).await.unwrap();
    for range in [None, Some("bytes=0-1")] {
        let response = f.recipient.download(id, range).await.unwrap();
        let disposition = header(&response, "content-disposition");
        assert!(disposition.starts_with("attachment;"), "{disposition}");
        assert!(disposition.contains("filename=\""), "{disposition}");
        assert!(
            disposition.contains("filename*=UTF-8''bl%C3%A5b%C3%A6r%20rapport.pdf"),
            "{disposition}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_range_requests_reassemble_to_the_whole_file() {
    let f = Fixture::new().await;
    let content = payload(3 * 1024 * 1024 + 17, 42);
    let id = f.publish(&[RECIPIENT], &content).await;
    let parts = 6;
    let chunk = content.len().div_ceil(parts);
    let mut tasks = Vec::new();
    for i in 0..parts {
        let client = f.recipient.clone();
        let start = i * chunk;
        let end = ((i + 1) * chunk).min(content.len()) - 1;
        tasks.push(tokio::spawn(async move {
            let response = client
                .download(id, Some(&format!("bytes={start}-{end}")))
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 206);
            response.bytes().await.unwrap()
        }));
    }
    let mut whole = Vec::with_capacity(content.len());
    for task in tasks {
        whole.extend_from_slice(&task.await.unwrap());
    }
    assert_eq!(whole.len(), content.len());
    assert_eq!(sha256_hex(&whole), sha256_hex(&content));
}

#[tokio::test]
async fn an_interrupted_download_resumes_with_an_open_range() {
    let f = Fixture::new().await;
    let content = payload(200_000, 43);
    let id = f.publish(&[RECIPIENT], &content).await;
    let first = f
        .recipient
        .download(id, Some("bytes=0-65535"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let rest = f
        .recipient
        .download(id, Some(&format!("bytes={}-", first.len())))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut whole = first.to_vec();
    whole.extend_from_slice(&rest);
    assert_eq!(sha256_hex(&whole), sha256_hex(&content));
}

async fn download_started_rows(f: &Fixture, id: Uuid, org: &str) -> usize {
    f.sender
        .details(id)
        .await
        .unwrap()
        .recipient_file_transfer_status_history
        .iter()
        .filter(|h| {
            h.recipient == org
                && h.recipient_file_transfer_status_code == RecipientStatus::DownloadStarted
        })
        .count()
}

#[tokio::test]
async fn range_downloads_record_download_started_once_per_caller() {
    let f = Fixture::new().await;
    let content = payload(SIZE, 44);
    let id = f.publish(&[RECIPIENT, RECIPIENT_2], &content).await;
    assert_eq!(download_started_rows(&f, id, RECIPIENT).await, 0);
    get_range(&f, id, "bytes=0-9").await.bytes().await.unwrap();
    let overview = f.sender.overview(id).await.unwrap();
    assert_eq!(
        overview.summary.recipients[0].current_recipient_file_transfer_status_code,
        RecipientStatus::DownloadStarted,
        "a range download counts as a download"
    );
    get_range(&f, id, "bytes=10-19")
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        download_started_rows(&f, id, RECIPIENT).await,
        1,
        "two range downloads record one row"
    );
    f.recipient_2
        .download(id, Some("bytes=0-9"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        download_started_rows(&f, id, RECIPIENT_2).await,
        1,
        "the debounce is per caller"
    );
    f.recipient
        .download(id, None)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        download_started_rows(&f, id, RECIPIENT).await,
        2,
        "a full download always records a row"
    );
    f.recipient.confirm_download(id).await.unwrap();
}

#[tokio::test]
async fn a_range_download_allows_confirming() {
    let f = Fixture::new().await;
    let (id, content) = published(&f).await;
    let last = get_range(&f, id, "bytes=-1").await;
    assert_eq!(last.status(), 206);
    let n = content.len();
    assert_eq!(
        header(&last, "content-range"),
        format!("bytes {}-{}/{n}", n - 1, n - 1)
    );
    assert_eq!(last.bytes().await.unwrap().as_ref(), &content[n - 1..]);
    f.recipient.confirm_download(id).await.unwrap();
    let overview = f.sender.overview(id).await.unwrap();
    assert_eq!(
        overview.summary.recipients[0].current_recipient_file_transfer_status_code,
        RecipientStatus::DownloadConfirmed
    );
}

#[tokio::test]
async fn downloads_carry_the_sha256_as_a_strong_etag_and_if_range_guards_resumes() {
    let f = Fixture::new().await;
    let (id, content) = published(&f).await;
    let etag = format!("\"{}\"", sha256_hex(&content));
    let full = f.recipient.download(id, None).await.unwrap();
    assert_eq!(header(&full, "etag"), etag);
    let request = |if_range: &str| {
        f.recipient
            .request(
                reqwest::Method::GET,
                &format!("/filetransfer/{id}/download"),
            )
            .header("range", "bytes=10-19")
            .header("if-range", if_range.to_string())
            .send()
    };
    let resumed = request(&etag).await.unwrap();
    assert_eq!(resumed.status(), 206);
    assert_eq!(resumed.bytes().await.unwrap().as_ref(), &content[10..20]);
    for stale in ["\"0000\"", "Wed, 21 Oct 2015 07:28:00 GMT"] {
        let whole = request(stale).await.unwrap();
        assert_eq!(whole.status(), 200, "If-Range {stale}");
        assert_eq!(whole.bytes().await.unwrap().len(), content.len());
    }
}
