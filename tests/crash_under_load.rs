//! SIGKILL under load: 64 clients run lifecycles (files of 1 KiB, 16 KiB and 200 KiB, so inline and
//! on-disk files both) while the broker process is killed 10 times at random moments and started
//! again on its data dir. Every acknowledged response must hold afterwards, and no transfer may say
//! it has a file without holding exactly the bytes sent (broker-bench's `crash` scenario).

use broker_bench::scenarios::crash::{run, CrashOptions};
use broker_bench::target::TargetSpec;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_when_the_broker_is_killed_ten_times_under_load() {
    // 64 clients keep both cores busy: the timed tests must not run beside this one.
    let _cores = crate::common::cpu_exclusive().await;
    let env: Vec<(String, String)> = std::env::var("BROKER__STORAGE__INLINE_MAX_BYTES")
        .map(|v| vec![("BROKER__STORAGE__INLINE_MAX_BYTES".to_string(), v)])
        .unwrap_or_default();
    let spec = TargetSpec::Spawn {
        broker_bin: env!("CARGO_BIN_EXE_broker").into(),
        env,
    };
    let options = CrashOptions {
        clients: 64,
        kills: 10,
        min_uptime: Duration::from_millis(500),
        max_uptime: Duration::from_millis(1500),
    };
    let result = run(&spec, "crash-test", &options).await.unwrap();
    let figure = |name: &str| result.figures[name];
    assert!(
        figure("acknowledged_uploads") >= 50.0 && figure("acknowledged_confirms") >= 20.0,
        "too little was acknowledged to show anything: {:?}",
        result.figures
    );
    assert!(
        figure("checked") > figure("acknowledged"),
        "every acknowledgement is checked after its restart and again at the end: {:?}",
        result.figures
    );
    assert_eq!(figure("lost"), 0.0, "{:?}", result.figures);
    assert_eq!(figure("half_applied"), 0.0, "{:?}", result.figures);
}
