//! The command-line client as its users meet it beside transfers: list and status for each party, a
//! one-line reason for every caller refused, and fetch never overwriting a file unless told to.

use crate::cli_transfer::*;
use crate::common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_status_show_the_transfer_to_its_sender_and_its_recipient() {
    let s = Setup::new().await;
    let (file, sha) = s.file("listed.txt", 1234, 9);
    let id = send_for_id(&s, &file);
    let token_file = s.dir.path().join("recipient.token");
    std::fs::write(&token_file, format!("{}\n", s.recipient)).unwrap();
    let token_file = token_file.to_str().unwrap();

    let as_sender = succeed(s.broker(
        Some(&s.sender),
        &["list", "--resource", RESOURCE, "--role", "sender"],
    ));
    assert_eq!(
        String::from_utf8(as_sender.stdout).unwrap(),
        format!("{id}\tPublished\tlisted.txt\t1234\n")
    );
    let as_recipient = succeed(s.broker(
        None,
        &[
            "list",
            "--resource",
            RESOURCE,
            "--status",
            "Published",
            "--json",
            "--token-file",
            token_file,
        ],
    ));
    let listed: Value = serde_json::from_slice(&as_recipient.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["fileTransferId"], id.as_str());
    let none = succeed(s.broker(
        Some(&s.recipient),
        &["list", "--resource", RESOURCE, "--role", "sender"],
    ));
    assert!(none.stdout.is_empty(), "the recipient sent nothing");

    for token in [&s.sender, &s.recipient] {
        let text =
            String::from_utf8(succeed(s.broker(Some(token), &["status", &id])).stdout).unwrap();
        assert!(text.contains(&format!("fileTransferId:  {id}")), "{text}");
        assert!(text.contains("Published (Ready for download)"), "{text}");
        assert!(text.contains("listed.txt"), "{text}");
        assert!(text.contains(&sha), "{text}");
        assert!(
            text.contains(&format!("recipient:       {RECIPIENT} Initialized")),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_without_access_fail_with_one_line_saying_why() {
    let s = Setup::new().await;
    let (file, _) = s.file("private.bin", 5000, 10);
    let id = send_for_id(&s, &file);

    let reason = fail(s.broker(Some(&s.outsider), &["status", &id]));
    assert!(
        reason.starts_with("broker: status failed: HTTP 401"),
        "{reason}"
    );
    assert!(reason.contains("BRO-00006"), "{reason}");

    let reason = fail(s.broker(Some(&s.outsider), &["fetch", &id, "-o", "stolen.bin"]));
    assert!(
        reason.starts_with("broker: fetch failed: HTTP 401"),
        "{reason}"
    );
    assert!(!s.work().join("stolen.bin").exists());
    assert!(!s.work().join("stolen.bin.part").exists());

    let reason = fail(s.broker(None, &["list", "--resource", RESOURCE]));
    assert!(
        reason.starts_with("broker: list failed: HTTP 401"),
        "{reason}"
    );

    let reason = fail(s.broker(
        Some(&s.recipient),
        &s.send_args(file.to_str().unwrap(), &[]),
    ));
    assert!(reason.starts_with("broker: send failed: HTTP"), "{reason}");
    assert!(s.recorded_sends().is_empty(), "nothing to resume");

    let mut nowhere = s.broker(Some(&s.sender), &["status", &id]);
    nowhere.env("BROKER_URL", "http://127.0.0.1:9");
    let unreachable = fail(nowhere);
    assert!(
        unreachable.starts_with("broker: status failed:"),
        "{unreachable}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_never_replaces_an_existing_file_unless_forced() {
    let s = Setup::new().await;
    let (file, sha) = s.file("report.bin", 20_000, 11);
    let id = send_for_id(&s, &file);
    let mine = s.work().join("mine.bin");
    std::fs::write(&mine, b"the user's own file").unwrap();
    let reason = fail(s.broker(Some(&s.recipient), &["fetch", &id, "-o", "mine.bin"]));
    assert!(reason.contains("exists"), "{reason}");
    assert_eq!(std::fs::read(&mine).unwrap(), b"the user's own file");
    succeed(s.broker(
        Some(&s.recipient),
        &["fetch", &id, "-o", "mine.bin", "--force"],
    ));
    assert_eq!(sha256_hex(&std::fs::read(&mine).unwrap()), sha);
}
