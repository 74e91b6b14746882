//! broker-bench, briefly: every scenario runs against a real broker process with tiny sizes, produces
//! its figures with no failed request, and the report validates against the published JSON schema.
//! (No timing thresholds: speed is judged by the benchmark itself, not by tests.)

use broker_bench::report::{Machine, Report, ScenarioResult, SCHEMA_VERSION};
use broker_bench::scenarios::{
    deliveries, lifecycle, mixed, resume, scan, statistics, transfer, tus, Context,
};
use broker_bench::target::{Target, TargetSpec};
use std::sync::Arc;
use std::time::Duration;

async fn context(cache: &std::path::Path) -> Arc<Context> {
    context_with(cache, vec![]).await
}

async fn context_with(cache: &std::path::Path, env: Vec<(String, String)>) -> Arc<Context> {
    let spec = TargetSpec::Spawn {
        broker_bin: env!("CARGO_BIN_EXE_broker").into(),
        env,
    };
    let target = Target::start(&spec, "bench-smoke").await.unwrap();
    Arc::new(Context {
        target,
        cache_dir: cache.to_path_buf(),
        anchors: true,
    })
}

fn assert_clean(r: &ScenarioResult) {
    assert_eq!(
        r.errors, 0,
        "{}: failed requests {:?}",
        r.scenario, r.errors_by_status
    );
    assert!(
        r.peak_rss_mib.is_some_and(|m| m > 0.0),
        "{}: no RSS figure",
        r.scenario
    );
    assert!(r.cpu_seconds.is_some(), "{}: no CPU figure", r.scenario);
}

/// The anchors' tools must be here: without them the benchmark skips its anchors with a warning,
/// and this test would check less than it says. scripts/test.sh installs them (or stops).
fn assert_anchor_tools_installed() {
    assert!(
        broker_bench::anchors::nginx_binary().is_some(),
        "nginx is not installed: the download anchor needs it (apt-get install nginx-light; \
         scripts/test.sh installs it)"
    );
    assert!(
        std::process::Command::new("wrk")
            .arg("--version")
            .output()
            .is_ok(),
        "wrk is not installed: the small-request anchor needs it (apt-get install wrk; \
         scripts/test.sh installs it)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_benchmark_scenario_produces_figures_and_a_report_that_matches_its_schema() {
    // Heavy (every scenario keeps both cores busy): never beside a timed test.
    let _alone = crate::common::cpu_exclusive().await;
    assert_anchor_tools_installed();
    let cache = tempfile::tempdir().unwrap();
    let ctx = context(cache.path()).await;
    let size = 4 << 20;

    let upload = transfer::upload(&ctx, size).await.unwrap();
    assert_clean(&upload);
    assert!(upload.mb_per_sec.is_some_and(|v| v > 0.0));
    for anchor in ["md5_single_core", "sha256_single_core", "write_fsync"] {
        assert!(
            upload.anchors.get(anchor).is_some_and(|v| *v > 0.0),
            "anchor {anchor} missing"
        );
    }
    assert!(upload.ratios.contains_key("upload_to_ceiling"));

    let download = transfer::download(&ctx, size, 4).await.unwrap();
    assert_clean(&download);
    assert!(download.mb_per_sec.is_some_and(|v| v > 0.0));
    for anchor in ["nginx_sendfile", "nginx_sendfile_parallel"] {
        assert!(
            download.anchors.get(anchor).is_some_and(|v| *v > 0.0),
            "anchor {anchor} missing"
        );
    }
    for ratio in ["download_to_nginx", "parallel_to_nginx_parallel"] {
        assert!(
            download.ratios.get(ratio).is_some_and(|v| *v > 0.0),
            "ratio {ratio} missing"
        );
    }
    assert!(download
        .figures
        .get("parallel_mb_per_sec")
        .is_some_and(|v| *v > 0.0));

    // The Node.js peer (installed by scripts/test.sh) receives the same uploads through the same client.
    let options = tus::TusOptions {
        size,
        chunk: 1 << 20,
        parallel: 4,
        peers: vec!["tus-node".into()],
    };
    let resumable = tus::tus(&ctx, &options).await.unwrap();
    assert_clean(&resumable);
    for ratio in [
        "tus_whole_patch_to_binary",
        "tus_chunked_to_binary",
        "tus_parallel_answered_to_binary",
        "tus_parallel_published_to_binary",
        "peer_tus_node_whole_patch_to_binary",
        "peer_tus_node_chunked_to_binary",
    ] {
        assert!(
            resumable.ratios.get(ratio).is_some_and(|v| *v > 0.0),
            "ratio {ratio} missing"
        );
    }

    let small = lifecycle::run(ctx.clone(), 4, Duration::from_millis(1500), 1024)
        .await
        .unwrap();
    assert_clean(&small);
    assert!(small.lifecycles_per_sec.is_some_and(|v| v > 0.0));
    assert!(small
        .figures
        .get("cpu_ms_per_lifecycle")
        .is_some_and(|v| *v > 0.0));
    for kind in lifecycle::STEPS {
        let figure = format!("cpu_ms_per_request_{kind}");
        assert!(
            small.figures.get(&figure).is_some_and(|v| *v > 0.0),
            "figure {figure} missing"
        );
    }
    assert!(
        small
            .figures
            .get("anchor_wrk_health_requests_per_sec")
            .is_some_and(|v| *v > 0.0),
        "the wrk anchor is missing"
    );
    assert!(small.figures.contains_key("requests_to_wrk_health"));
    for step in lifecycle::STEPS.iter().chain(["whole_lifecycle"].iter()) {
        assert!(small.steps.contains_key(*step), "step {step} missing");
    }

    // Deliveries to the tool's own receiver, at a rate and at its maximum, then lifecycles beside them.
    let options = deliveries::DeliveryOptions {
        rates: vec![deliveries::Rate::PerSec(50), deliveries::Rate::Max],
        duration: Duration::from_millis(1000),
        lifecycle_concurrency: 2,
        lifecycle_duration: Duration::from_millis(1000),
    };
    let delivered = deliveries::run(ctx.clone(), &options).await.unwrap();
    assert_eq!(delivered.len(), 4);
    for result in &delivered {
        assert_clean(result);
    }
    for result in &delivered[..2] {
        for figure in ["events_delivered_per_sec", "lag_p50_ms", "lag_p99_ms"] {
            assert!(
                result.figures.get(figure).is_some_and(|v| *v > 0.0),
                "figure {figure} missing"
            );
        }
        assert_eq!(result.figures["events_lost"], 0.0);
    }
    assert!(delivered[3]
        .figures
        .get("to_without_subscriptions_lifecycles_per_sec")
        .is_some_and(|v| *v > 0.0));
    assert!(delivered[3].figures["events_delivered"] > 0.0);

    let both = mixed::run(ctx.clone(), 2, Duration::from_millis(1500), 1024, size)
        .await
        .unwrap();
    assert_clean(&both);
    for figure in [
        "p99_growth",
        "large_upload_mb_per_sec",
        "large_download_mb_per_sec",
    ] {
        assert!(
            both.figures
                .get(figure)
                .is_some_and(|v| v.is_finite() && *v > 0.0),
            "figure {figure} missing"
        );
    }

    // The statistics reports over a few hundred transfers, on a broker given the API key.
    let counting = context_with(cache.path(), statistics::broker_env()).await;
    let options = statistics::StatisticsOptions {
        transfers: 300,
        runs: 2,
    };
    let reports = statistics::run(counting, &options).await.unwrap();
    assert_clean(&reports);
    for figure in [
        "monthly_csv_ms_p50",
        "daily_report_ms_p50",
        "transfers_per_sec",
    ] {
        assert!(
            reports.figures.get(figure).is_some_and(|v| *v > 0.0),
            "figure {figure} missing"
        );
    }
    assert_eq!(reports.figures["daily_report_transfer_pairs"], 300.0);

    // Scanning with a clamd of the tool's own, in windows of 1 MiB, beside clamdscan.
    let clamd = broker_bench::clamd::Clamd::start(scan::stream_limit(size)).unwrap();
    let scanning = context_with(cache.path(), scan::broker_env(&clamd, 1 << 20)).await;
    let scanned = scan::run(&scanning, &clamd, size, 1 << 20).await.unwrap();
    assert_clean(&scanned);
    assert!(scanned
        .figures
        .get("seconds_last_byte_to_published")
        .is_some_and(|v| *v > 0.0));
    assert!(scanned
        .ratios
        .get("scan_to_clamdscan")
        .is_some_and(|v| *v > 0.0));

    // A tus upload whose broker is SIGKILLed past its second checkpoint (every 64 MiB), then resumed.
    let spec = TargetSpec::Spawn {
        broker_bin: env!("CARGO_BIN_EXE_broker").into(),
        env: vec![],
    };
    let options = resume::ResumeOptions {
        size: 160 << 20,
        stop_at: 144 << 20,
        chunk: 8 << 20,
    };
    let resumed = resume::run(&spec, "bench-smoke", cache.path(), &options)
        .await
        .unwrap();
    assert_clean(&resumed);
    assert!(resumed.figures["durable_at_kill_mib"] >= 64.0);
    assert!(resumed
        .ratios
        .get("restart_to_first_patch_to_md5_of_prefix")
        .is_some_and(|v| *v > 0.0));

    let report = Report {
        schema_version: SCHEMA_VERSION,
        tool: "broker-bench".into(),
        tool_version: "test".into(),
        started: chrono::Utc::now().to_rfc3339(),
        target: "spawned".into(),
        machine: Machine::detect(),
        scenarios: vec![
            upload, download, resumable, small, both, reports, scanned, resumed,
        ],
    };
    let json = serde_json::to_value(&report).unwrap();
    let schema_path = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/schema/report-v1.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let problems: Vec<String> = validator
        .iter_errors(&json)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        problems.is_empty(),
        "the report does not match its schema: {problems:#?}"
    );

    let svg = cache.path().join("report.svg");
    broker_bench::chart::write_svg(&report, &svg).unwrap();
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
}
