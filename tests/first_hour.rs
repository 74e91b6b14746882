//! What a new user sees when something is wrong: each error message a person meets in the first
//! hour says what to do, with its exit status; logs are plain text off a terminal; blob files are
//! private whatever the umask.

use crate::cli::{serve, token};
use crate::cli_transfer::{fail, Setup, BIN};
use crate::common::*;
use broker_protocol::client::BrokerClient;
use broker_protocol::resource::ResourceUpdate;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SOME_ID: &str = "6f1e2b2a-4a8e-4c59-9d4e-0c5a1b2c3d4e";

/// Runs the binary to completion; (exit code, stdout, stderr).
fn run(command: &mut Command) -> (i32, String, String) {
    let out = command.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn client_command(url: &str, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env("BROKER_URL", url)
        .env_remove("BROKER_TOKEN");
    command
}

#[tokio::test]
async fn a_refused_token_is_explained_with_what_to_check_and_exit_status_1() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path());
    let (code, _, stderr) = run(&mut client_command(&served.url, &["status", SOME_ID]));
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim(),
        "broker: status failed: HTTP 401 Unauthorized: no valid token: it is missing, expired or from an issuer the broker does not trust (give one with --token, --token-file or BROKER_TOKEN)"
    );
    // A token without a broker scope: the 403 names the scopes.
    let no_broker_scope = token(dir.path(), SENDER, "altinn:events.subscribe", &[]);
    let (code, _, stderr) = run(&mut client_command(
        &served.url,
        &["status", SOME_ID, "--token", &no_broker_scope],
    ));
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("broker: status failed: HTTP 403 Forbidden: the token lacks the scope this needs (send: altinn:broker.write; fetch, list, status: altinn:broker.read)"),
        "{stderr}"
    );
}

#[test]
fn a_server_url_without_its_scheme_is_refused_before_anything_is_sent() {
    let (code, _, stderr) = run(&mut client_command(
        "http://127.0.0.1:9",
        &["status", "--url", "127.0.0.1:8080", SOME_ID],
    ));
    assert_eq!(code, 2, "a usage error");
    assert!(
        stderr.contains("\"127.0.0.1:8080\" is not a server URL: give its scheme and host, e.g. http://127.0.0.1:8080"),
        "{stderr}"
    );
    assert!(!stderr.contains("builder error"), "{stderr}");
}

#[test]
fn usage_lines_show_options_with_defaults_as_optional_and_the_list_resource_as_required() {
    let usage = |command: &str| {
        let (code, stdout, _) = run(Command::new(BIN).args([command, "--help"]));
        assert_eq!(code, 0);
        stdout
            .lines()
            .find(|l| l.starts_with("Usage:"))
            .unwrap()
            .to_string()
    };
    assert_eq!(usage("status"), "Usage: broker status [OPTIONS] <ID>");
    // The usage a mistake prints names only what is missing, not the options the environment or a
    // default gives.
    let (code, _, stderr) = run(Command::new(BIN).arg("status").env_remove("BROKER_URL"));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("Usage: broker status <ID>") && !stderr.contains("--url"),
        "{stderr}"
    );
    assert_eq!(
        usage("list"),
        "Usage: broker list [OPTIONS] --resource <RESOURCE>"
    );
    // Without it, the list is refused by the command line, not by the server.
    let (code, _, stderr) = run(&mut client_command("http://127.0.0.1:9", &["list"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("--resource <RESOURCE>"), "{stderr}");
}

#[test]
fn broker_token_mints_only_for_organisation_numbers_with_a_valid_check_digit() {
    let dir = tempfile::tempdir().unwrap();
    // The development issuer's key is made by the first `serve`.
    drop(serve(dir.path()));
    let mint = |org: &str| {
        run(Command::new(BIN)
            .args(["token", "--scope", READ, "--org", org, "--data-dir"])
            .arg(dir.path()))
    };
    let (code, _, stderr) = mint("abc");
    assert_eq!(code, 2);
    assert!(
        stderr.contains(
            "\"abc\" is not an organisation number: use 0192:NNNNNNNNN or the nine digits"
        ),
        "{stderr}"
    );
    let (code, _, stderr) = mint("0192:991825828");
    assert_eq!(code, 2);
    assert!(
        stderr.contains("check digit (mod 11) does not match"),
        "{stderr}"
    );
    // A valid one, bare or with its prefix, is minted for 0192:…
    let dir_path = dir.path().to_path_buf();
    for org in ["991825827", "0192:991825827"] {
        let minted = token(&dir_path, org, READ, &[]);
        let claims = minted.split('.').nth(1).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims)
                .unwrap(),
        )
        .unwrap();
        assert!(
            claims.to_string().contains("0192:991825827"),
            "{org}: {claims}"
        );
    }
}

/// `broker serve` with `env`, started and expected to fail at start; its exit code and stderr.
fn failing_start(env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .current_dir(dir.path())
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied()));
    (code, stderr)
}

#[test]
fn start_up_errors_name_the_setting_and_print_no_backtrace() {
    let (code, registry) = failing_start(&[
        ("BROKER__REGISTRY__MODE", "file"),
        ("BROKER__REGISTRY__FILE", "./nope.toml"),
    ]);
    assert_eq!(code, 1);
    assert!(
        registry.contains("broker: registry.file: ./nope.toml: No such file or directory"),
        "{registry}"
    );
    let (code, issuer) = failing_start(&[(
        "BROKER__AUTH__ISSUERS",
        r#"[{issuer = "https://issuer.example", public_key_file = "./nope.pem"}]"#,
    )]);
    assert_eq!(code, 1);
    assert!(
        issuer.contains("broker: auth.issuers[0] (issuer \"https://issuer.example\"): public_key_file ./nope.pem: No such file or directory"),
        "{issuer}"
    );
    let (code, unknown) = failing_start(&[("BROKER__SERVER__NO_SUCH_KEY", "1")]);
    assert_eq!(code, 1);
    assert!(unknown.contains("no_such_key"), "{unknown}");
    // RUST_BACKTRACE=1 is set: still none (it is the user's configuration, not a bug).
    for stderr in [registry, issuer, unknown] {
        assert!(
            !stderr.to_lowercase().contains("backtrace") && !stderr.contains("main.rs"),
            "a configuration error prints no backtrace: {stderr}"
        );
    }
}

/// The serve log of a start that logs the development-issuer warning and then fails (a missing
/// registry file), with stderr a pipe (`pty` false) or a terminal (`pty` true, through `script`).
fn start_log(pty: bool, no_color: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = format!(
        "{BIN} serve --listen 127.0.0.1:0 --data-dir {}",
        data.display()
    );
    let mut command = if pty {
        let mut c = Command::new("script");
        c.args(["-qefc", &serve, "/dev/null"]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", &serve]);
        c
    };
    command
        .env("BROKER__REGISTRY__MODE", "file")
        .env("BROKER__REGISTRY__FILE", dir.path().join("missing.toml"))
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR");
    if no_color {
        command.env("NO_COLOR", "1");
    }
    let (_, stdout, stderr) = run(&mut command);
    let log = format!("{stdout}{stderr}");
    assert!(
        log.contains("DEVELOPMENT TOKEN ISSUER ENABLED"),
        "the start logged its warning: {log}"
    );
    log
}

#[test]
fn logs_are_coloured_only_on_a_terminal_and_never_with_no_color() {
    assert!(
        !start_log(false, false).contains('\u{1b}'),
        "a log on a pipe has no ANSI escapes"
    );
    assert!(
        start_log(true, false).contains("\u{1b}["),
        "a terminal gets colours (positive control)"
    );
    assert!(
        !start_log(true, true).contains('\u{1b}'),
        "NO_COLOR turns them off on a terminal too"
    );
}

#[tokio::test]
async fn a_second_send_of_the_same_file_at_once_says_another_send_is_running() {
    let setup = Setup::new().await;
    let (file, _) = setup.file("slow.bin", 2 * crate::cli_transfer::MIB, 7);
    let file = file.to_str().unwrap().to_string();
    let args = setup.send_args(&file, &["--limit-rate", "128KiB"]);
    let mut first = setup
        .broker(Some(&setup.sender), &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Once the first has started its transfer (its state is saved), it holds the file's send.
    let deadline = Instant::now() + Duration::from_secs(20);
    while setup.recorded_sends().is_empty() {
        assert!(Instant::now() < deadline, "the first send did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let refused = fail(setup.broker(Some(&setup.sender), &args));
    assert!(
        refused.contains("another `broker send` of")
            && refused.contains("is running; wait for it to finish (or stop it), then run this again to continue its transfer"),
        "{refused}"
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first send goes on undisturbed"
    );
    first.kill().unwrap();
    first.wait().unwrap();
    // Once it is gone, the same command continues its transfer.
    let args = setup.send_args(&file, &[]);
    crate::cli_transfer::succeed(setup.broker(Some(&setup.sender), &args));
}

#[tokio::test]
async fn blob_files_and_directories_are_private_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The broker under umask 000: anything it does not set itself would be world-writable.
    let mut child = Command::new(BIN);
    child
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("BROKER__STORAGE__INLINE_MAX_BYTES", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: umask is async-signal-safe.
    unsafe {
        child.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    let mut child = child.spawn().unwrap();
    let mut first = [0u8; 256];
    let n = child.stdout.as_mut().unwrap().read(&mut first).unwrap();
    let line = String::from_utf8_lossy(&first[..n]).to_string();
    let url = line
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("listening on "))
        .unwrap_or_else(|| panic!("unexpected {line:?}"))
        .to_string();
    let owner = BrokerClient::new(&url).with_token(token(&data, SERVICE_OWNER, SO_SCOPE, &[]));
    owner.create_service_owner("umask").await.unwrap();
    owner
        .configure_resource(RESOURCE, &ResourceUpdate::default())
        .await
        .unwrap();
    // One plain upload, and one in two parallel parts (part files and their list), by the CLI.
    let sender = token(&data, SENDER, &format!("{WRITE} {READ}"), &[]);
    for (name, len, parallel) in [("plain.bin", 200_000, "1"), ("parts.bin", 2 << 20, "2")] {
        let file = dir.path().join(name);
        std::fs::write(&file, payload(len, 3)).unwrap();
        let out = Command::new(BIN)
            .arg("send")
            .arg(&file)
            .args([
                "--resource",
                RESOURCE,
                "--sender",
                SENDER,
                "--recipient",
                RECIPIENT,
            ])
            .args(["--parallel", parallel])
            .env("BROKER_URL", &url)
            .env("BROKER_TOKEN", &sender)
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = child.kill();
    let _ = child.wait();

    let mut seen = (0, 0);
    let mut stack = vec![data.join("blobs")];
    while let Some(path) = stack.pop() {
        let meta = std::fs::metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            assert_eq!(mode, 0o700, "{} is {mode:o}", path.display());
            seen.0 += 1;
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            assert_eq!(mode, 0o600, "{} is {mode:o}", path.display());
            seen.1 += 1;
        }
    }
    assert!(
        seen.0 >= 2 && seen.1 >= 3,
        "directories and files were made: {seen:?}"
    );
    let data_mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(data_mode, 0o700);
}
