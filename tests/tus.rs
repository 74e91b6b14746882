//! tus 1.0.0 resumable uploads: one test per protocol rule, and uploads that break off and resume.

use crate::common::*;
use broker_protocol::client::BrokerClient;
use broker_protocol::FileTransferStatus;
use reqwest::{Method, Response};
use uuid::Uuid;

pub(crate) fn tus_path(id: Uuid) -> String {
    format!("/filetransfer/upload/tus/{id}")
}

/// Starts a PATCH of all of `content` over a raw connection but sends only its first `sent` bytes, as
/// a client whose connection breaks or goes silent; returns once the server has read them.
pub async fn start_broken_patch(
    f: &Fixture,
    id: Uuid,
    content: &[u8],
    sent: usize,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let token = f.server.token(SENDER, WRITE);
    let mut stream = tokio::net::TcpStream::connect(f.server.url.trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(raw_patch_head(id, &token, 0, content.len()).as_bytes())
        .await
        .unwrap();
    stream.write_all(&content[..sent]).await.unwrap();
    stream.flush().await.unwrap();
    crate::support::wait_until_the_server_has_read(&stream).await;
    stream
}

/// The head of a PATCH sent over a raw connection (to cut it or stall it on purpose).
fn raw_patch_head(id: Uuid, token: &str, offset: u64, length: usize) -> String {
    format!(
        "PATCH /broker/api/v1/filetransfer/upload/tus/{id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\nContent-Length: {length}\r\n\r\n"
    )
}

pub(crate) async fn create(f: &Fixture, id: Uuid, length: u64) -> Response {
    f.sender
        .request(Method::POST, &tus_path(id))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", length)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn patch(f: &Fixture, id: Uuid, offset: u64, bytes: &[u8]) -> Response {
    f.sender
        .request(Method::PATCH, &tus_path(id))
        .header("tus-resumable", "1.0.0")
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", offset)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
}

pub(crate) async fn head_offset(f: &Fixture, id: Uuid) -> u64 {
    head_offset_as(&f.sender, id).await
}

/// The upload's offset as `client` sees it with HEAD.
pub(crate) async fn head_offset_as(client: &BrokerClient, id: Uuid) -> u64 {
    let r = client
        .request(Method::HEAD, &tus_path(id))
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    r.headers()["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

pub(crate) fn offset_of(r: &Response) -> u64 {
    r.headers()["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn options_advertises_the_protocol_to_a_sender() {
    let f = Fixture::new().await;
    let r = f
        .sender
        .request(Method::OPTIONS, &tus_path(Uuid::new_v4()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["tus-version"], "1.0.0");
    let extensions = r.headers()["tus-extension"].to_str().unwrap();
    for e in [
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
    ] {
        assert!(extensions.split(',').any(|x| x == e), "{e} in {extensions}");
    }
}

#[tokio::test]
async fn an_upload_in_chunks_is_published_with_the_right_sha256() {
    let f = Fixture::new().await;
    let content = payload(3_000_000, 41);
    let id = f.initialize(&[RECIPIENT]).await;
    let r = create(&f, id, content.len() as u64).await;
    assert_eq!(r.status(), 201);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .ends_with(&tus_path(id)));
    assert_eq!(
        f.sender
            .overview(id)
            .await
            .unwrap()
            .summary
            .file_transfer_status,
        FileTransferStatus::UploadStarted
    );
    let mut offset = 0u64;
    for chunk in content.chunks(1_100_000) {
        let r = patch(&f, id, offset, chunk).await;
        assert_eq!(r.status(), 204);
        offset = offset_of(&r);
        assert_eq!(head_offset(&f, id).await, offset);
    }
    let overview = f.recipient.overview(id).await.unwrap();
    assert_eq!(
        overview.summary.file_transfer_status,
        FileTransferStatus::Published
    );
    assert_eq!(
        overview.summary.sha256.as_deref(),
        Some(sha256_hex(&content).as_str())
    );
    assert_eq!(
        overview.summary.checksum.as_deref(),
        Some(md5_hex(&content).as_str())
    );
    f.assert_recipient_downloads(id, &content).await;
    // Replaying the last PATCH after completion (say, after a timeout) succeeds at the full length.
    let replay = patch(&f, id, content.len() as u64, b"").await;
    assert_eq!(
        (replay.status().as_u16(), offset_of(&replay)),
        (204, content.len() as u64)
    );
}

#[tokio::test]
async fn a_patch_at_the_wrong_offset_is_409_and_changes_nothing() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    create(&f, id, 100).await;
    assert_eq!(patch(&f, id, 0, &[1; 40]).await.status(), 204);
    assert_eq!(patch(&f, id, 10, &[2; 10]).await.status(), 409);
    assert_eq!(head_offset(&f, id).await, 40);
}

#[tokio::test]
async fn requests_without_tus_resumable_are_412() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let r = f
        .sender
        .request(Method::POST, &tus_path(id))
        .header("upload-length", 10)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);
    assert_eq!(r.headers()["tus-version"], "1.0.0");
}

#[tokio::test]
async fn a_patch_with_another_content_type_is_415() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    create(&f, id, 10).await;
    let r = f
        .sender
        .request(Method::PATCH, &tus_path(id))
        .header("tus-resumable", "1.0.0")
        .header("content-type", "application/octet-stream")
        .header("upload-offset", 0)
        .body(vec![0u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
}

#[tokio::test]
async fn a_patch_past_the_declared_length_is_400_and_keeps_the_offset() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    create(&f, id, 10).await;
    assert_eq!(patch(&f, id, 0, &[1; 4]).await.status(), 204);
    assert_eq!(patch(&f, id, 4, &[1; 20]).await.status(), 400);
    assert_eq!(head_offset(&f, id).await, 4);
    assert_eq!(patch(&f, id, 4, &[1; 6]).await.status(), 204);
    assert_eq!(
        f.sender
            .overview(id)
            .await
            .unwrap()
            .summary
            .file_transfer_status,
        FileTransferStatus::Published
    );
}

#[tokio::test]
async fn a_length_above_the_resource_maximum_is_refused_at_creation() {
    let f = Fixture::new().await;
    let update = broker_protocol::resource::ResourceUpdate {
        max_file_transfer_size: Some(1000),
        ..Default::default()
    };
    f.owner.configure_resource(RESOURCE, &update).await.unwrap();
    let id = f.initialize(&[RECIPIENT]).await;
    let r = create(&f, id, 1001).await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["code"],
        "BRO-00016"
    );
}

#[tokio::test]
async fn termination_removes_the_upload_and_a_new_one_can_start() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    create(&f, id, 100).await;
    patch(&f, id, 0, &[9; 50]).await;
    let r = f
        .sender
        .request(Method::DELETE, &tus_path(id))
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let gone = f
        .sender
        .request(Method::HEAD, &tus_path(id))
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    assert_eq!(
        f.sender
            .overview(id)
            .await
            .unwrap()
            .summary
            .file_transfer_status,
        FileTransferStatus::UploadStarted
    );
    let content = payload(100, 5);
    assert_eq!(create(&f, id, 100).await.status(), 201);
    assert_eq!(patch(&f, id, 0, &content).await.status(), 204);
    f.assert_recipient_downloads(id, &content).await;
}

#[tokio::test]
async fn a_deferred_length_is_given_by_a_later_patch() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let r = f
        .sender
        .request(Method::POST, &tus_path(id))
        .header("tus-resumable", "1.0.0")
        .header("upload-defer-length", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let content = payload(5000, 9);
    assert_eq!(patch(&f, id, 0, &content[..2000]).await.status(), 204);
    let h = f
        .sender
        .request(Method::HEAD, &tus_path(id))
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(h.headers()["upload-defer-length"], "1");
    let last = f
        .sender
        .request(Method::PATCH, &tus_path(id))
        .header("tus-resumable", "1.0.0")
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", 2000)
        .header("upload-length", 5000)
        .body(content[2000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(last.status(), 204);
    f.assert_recipient_downloads(id, &content).await;
}

#[tokio::test]
async fn creation_with_upload_takes_the_first_bytes_in_the_post() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let content = payload(1000, 12);
    let r = f
        .sender
        .request(Method::POST, &tus_path(id))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", 1000)
        .header("content-type", "application/offset+octet-stream")
        .body(content[..600].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!((r.status().as_u16(), offset_of(&r)), (201, 600));
    assert_eq!(patch(&f, id, 600, &content[600..]).await.status(), 204);
    f.assert_recipient_downloads(id, &content).await;
}

#[tokio::test]
async fn an_upload_resumes_after_a_restart_and_the_hashes_cover_every_byte() {
    let f = Fixture::new().await;
    let content = payload(2_500_000, 77);
    let id = f.initialize(&[RECIPIENT]).await;
    create(&f, id, content.len() as u64).await;
    assert_eq!(patch(&f, id, 0, &content[..1_200_000]).await.status(), 204);
    let server = f.server.restart().await;
    let f = Fixture::clients(server);
    assert_eq!(head_offset(&f, id).await, 1_200_000);
    assert_eq!(
        patch(&f, id, 1_200_000, &content[1_200_000..])
            .await
            .status(),
        204
    );
    let overview = f.recipient.overview(id).await.unwrap();
    assert_eq!(
        overview.summary.sha256.as_deref(),
        Some(sha256_hex(&content).as_str())
    );
    f.assert_recipient_downloads(id, &content).await;
}

#[tokio::test]
async fn only_the_sender_may_use_the_upload() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let r = f
        .third_party
        .request(Method::POST, &tus_path(id))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", 10)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = f
        .server
        .anonymous()
        .request(Method::POST, &tus_path(id))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", 10)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_patch_cut_mid_stream_keeps_what_arrived_and_the_upload_resumes_from_head() {
    let f = Fixture::new().await;
    let content = payload(1_000_000, 21);
    let id = f.initialize(&[RECIPIENT]).await;
    create(&f, id, content.len() as u64).await;
    let stream = start_broken_patch(&f, id, &content, 300_000).await;
    drop(stream);
    // The server notices the cut, keeps the bytes it received, and frees the upload.
    let mut offset = 0;
    for _ in 0..100 {
        offset = head_offset(&f, id).await;
        if offset > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(offset > 0 && offset <= 300_000, "durable offset {offset}");
    let mut r = patch(&f, id, offset, &content[offset as usize..]).await;
    for _ in 0..100 {
        if r.status() != 409 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        r = patch(&f, id, offset, &content[offset as usize..]).await;
    }
    assert_eq!(r.status(), 204);
    let overview = f.recipient.overview(id).await.unwrap();
    assert_eq!(
        overview.summary.file_transfer_status,
        FileTransferStatus::Published
    );
    f.assert_recipient_downloads(id, &content).await;
}

pub(crate) fn upload_checksum(algorithm: &str, bytes: &[u8]) -> String {
    use base64::Engine;
    use sha2::Digest;
    let digest = match algorithm {
        "sha1" => sha1::Sha1::digest(bytes).to_vec(),
        "md5" => md5::Md5::digest(bytes).to_vec(),
        _ => sha2::Sha256::digest(bytes).to_vec(),
    };
    format!(
        "{algorithm} {}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

pub(crate) async fn patch_with_checksum(
    f: &Fixture,
    id: Uuid,
    offset: u64,
    bytes: &[u8],
    checksum: &str,
) -> Response {
    f.sender
        .request(Method::PATCH, &tus_path(id))
        .header("tus-resumable", "1.0.0")
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", offset)
        .header("upload-checksum", checksum)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
}

pub(crate) async fn create_partial(f: &Fixture, id: Uuid, length: usize) -> String {
    let r = f
        .sender
        .request(Method::POST, &tus_path(id))
        .header("tus-resumable", "1.0.0")
        .header("upload-concat", "partial")
        .header("upload-length", length)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.headers()["location"].to_str().unwrap().to_string()
}

pub(crate) async fn patch_url(f: &Fixture, location: &str, offset: u64, bytes: &[u8]) -> Response {
    let path = location.trim_start_matches("/broker/api/v1");
    f.sender
        .request(Method::PATCH, path)
        .header("tus-resumable", "1.0.0")
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", offset)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
}

pub(crate) async fn finish(f: &Fixture, id: Uuid, parts: &[&str]) -> Response {
    f.sender
        .request(Method::POST, &tus_path(id))
        .header("tus-resumable", "1.0.0")
        .header("upload-concat", format!("final;{}", parts.join(" ")))
        .send()
        .await
        .unwrap()
}

/// A tus refusal: `status`, as tus servers answer, in plain text (no ProblemDetails) with the
/// protocol's version headers, saying `says`.
pub(crate) async fn expect_tus_refusal(r: Response, status: u16, says: &str) {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["tus-resumable"], "1.0.0");
    let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = r.text().await.unwrap();
    assert!(text.contains(says), "{text:?} does not say {says:?}");
}

/// A partial upload's `(Upload-Offset, Upload-Length)` as its HEAD answers.
pub(crate) async fn part_state(f: &Fixture, location: &str) -> (u64, u64) {
    let r = f
        .sender
        .request(Method::HEAD, location.trim_start_matches("/broker/api/v1"))
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "HEAD {location}");
    let number = |name: &str| r.headers()[name].to_str().unwrap().parse::<u64>().unwrap();
    (number("upload-offset"), number("upload-length"))
}
