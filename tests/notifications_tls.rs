//! E-mail over TLS (`[notify.smtp] tls = "starttls" | "tls"`) to a real SMTP server (aiosmtpd) with
//! a certificate from a test CA: delivered when the broker trusts that CA (`ca_file`), refused and
//! recorded as a failed attempt when it does not, and a `ca_file` the broker cannot use stops it at
//! start.

use crate::common::*;
use crate::notifications::{contact_point, notifying};
use crate::smtp_sink::{make_tls, OwnedPort, Security, SmtpSink};
use crate::support::*;
use broker::config::SmtpTls;
use broker_protocol::FileTransferStatus;
use std::path::Path;
use std::time::Duration;

/// A broker sending e-mail to 127.0.0.1:`port` with `tls`, trusting the CA in `trusted` (a
/// `make_tls` directory), and the recipient's contact point; returns the fixture and the contact
/// point's id.
async fn mailing(dir: &Path, port: u16, tls: SmtpTls, trusted: &Path) -> (Fixture, i64) {
    let mut config = notifying(dir, port, None);
    let smtp = config.notify.smtp.as_mut().unwrap();
    smtp.tls = tls;
    smtp.ca_file = Some(trusted.join("ca.pem"));
    let f = Fixture::on(TestServer::start_with(config).await).await;
    let id = contact_point(
        &f.recipient,
        serde_json::json!({"emailAddress": "post@recipient.example.no",
            "typeFilter": "no.altinn.broker.published"}),
    )
    .await;
    (f, id)
}

/// The contact point's deliveries once `done` holds (up to 20 s).
async fn deliveries_until(
    f: &Fixture,
    contact_point: i64,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let path = format!("/notifications/contactpoints/{contact_point}/deliveries");
    for _ in 0..400 {
        let deliveries: serde_json::Value = f
            .recipient
            .request(reqwest::Method::GET, &path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if done(&deliveries) {
            return deliveries;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the deliveries did not get there in 20 s");
}

/// How the SMTP server speaks to a broker configured with `tls`, with the certificate in `dir`.
fn served(tls: SmtpTls, dir: &Path) -> Security<'_> {
    match tls {
        SmtpTls::Starttls => Security::Starttls(dir),
        SmtpTls::Tls => Security::Tls(dir),
        SmtpTls::None => Security::Plain,
    }
}

/// Publishes a file for the recipient; it waits until Published.
async fn publish(f: &Fixture) {
    let id = f.publish(&[RECIPIENT], &payload(1_000, 9)).await;
    wait_for_status(
        &f.sender,
        id,
        FileTransferStatus::Published,
        Duration::from_secs(30),
    )
    .await;
}

#[tokio::test]
async fn email_goes_over_starttls_and_over_tls_to_a_server_the_configured_ca_vouches_for() {
    for tls in [SmtpTls::Starttls, SmtpTls::Tls] {
        let temp = tempfile::tempdir().unwrap();
        let certs = temp.path().join("certs");
        make_tls(&certs);
        let port = OwnedPort::new();
        let sink = SmtpSink::start(&port, &temp.path().join("mail.jsonl"), served(tls, &certs));
        let (f, cp) = mailing(&temp.path().join("b"), port.port, tls, &certs).await;
        publish(&f).await;
        let mail = &sink.wait_for(1).await[0];
        assert_eq!(mail["to"], "post@recipient.example.no", "{tls:?}");
        let version = mail["tls"].as_str().unwrap_or_default();
        assert!(
            version.starts_with("TLSv1."),
            "{tls:?}: the session was not TLS: {mail}"
        );
        let deliveries = deliveries_until(&f, cp, |d| d[0]["state"] == "Delivered").await;
        assert_eq!(deliveries[0]["lastStatus"], 250, "{tls:?}: {deliveries}");
    }
}

#[tokio::test]
async fn a_server_whose_certificate_the_broker_does_not_trust_gets_nothing_and_the_failure_is_recorded(
) {
    for tls in [SmtpTls::Starttls, SmtpTls::Tls] {
        let temp = tempfile::tempdir().unwrap();
        // The broker trusts one test CA; the server's certificate comes from another.
        let (trusted, other) = (temp.path().join("trusted"), temp.path().join("other"));
        make_tls(&trusted);
        make_tls(&other);
        let port = OwnedPort::new();
        let sink = SmtpSink::start(&port, &temp.path().join("mail.jsonl"), served(tls, &other));
        let (f, cp) = mailing(&temp.path().join("b"), port.port, tls, &trusted).await;
        publish(&f).await;
        let failed =
            deliveries_until(&f, cp, |d| d[0]["attempts"].as_u64().unwrap_or(0) >= 2).await;
        let delivery = &failed[0];
        assert_eq!(
            delivery["state"], "Pending",
            "{tls:?}: retried, not delivered: {delivery}"
        );
        assert!(delivery["lastStatus"].is_null(), "{tls:?}: {delivery}");
        let error = delivery["lastError"].as_str().unwrap_or_default();
        assert!(
            error.to_ascii_lowercase().contains("certificate"),
            "{tls:?}: the error does not name the certificate: {delivery}"
        );
        assert!(sink.messages().is_empty(), "{tls:?}: {:?}", sink.messages());
    }
}

/// `broker serve` with `env`: it must exit (within 20 s) with an error; its stderr.
fn refused_at_start(env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_broker"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .envs(env.iter().copied())
        .env("BROKER__NOTIFY__SMTP__HOST", "127.0.0.1")
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..400 {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
            assert!(!status.success(), "it started: {stderr}");
            return stderr;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("the broker started with {env:?}");
}

#[test]
fn a_ca_file_the_broker_cannot_use_stops_it_at_start_with_the_reason() {
    let temp = tempfile::tempdir().unwrap();
    let missing = temp.path().join("missing.pem");
    let said = refused_at_start(&[("BROKER__NOTIFY__SMTP__CA_FILE", missing.to_str().unwrap())]);
    assert!(
        said.contains("notify.smtp.ca_file")
            && said.contains("missing.pem")
            && said.contains("cannot be read"),
        "{said}"
    );
    let not_pem = temp.path().join("key.txt");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let said = refused_at_start(&[("BROKER__NOTIFY__SMTP__CA_FILE", not_pem.to_str().unwrap())]);
    assert!(said.contains("holds no PEM certificate"), "{said}");
    // A CA for a connection that has no TLS is a mistake, not ignored.
    let certs = temp.path().join("certs");
    make_tls(&certs);
    let ca = certs.join("ca.pem");
    let said = refused_at_start(&[
        ("BROKER__NOTIFY__SMTP__CA_FILE", ca.to_str().unwrap()),
        ("BROKER__NOTIFY__SMTP__TLS", "none"),
    ]);
    assert!(
        said.contains("notify.smtp.ca_file is for a TLS connection"),
        "{said}"
    );
}
