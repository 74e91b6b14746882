//! `broker-bench`: see benches/README.md.

use anyhow::Context as _;
use broker_bench::report::{Machine, Report, ScenarioResult, SCHEMA_VERSION};
use broker_bench::scenarios::{lifecycle, mixed, scan, transfer, tus, Context};
use broker_bench::target::{default_broker_bin, Target, TargetSpec};
use broker_bench::{parse_duration, parse_positive_size, parse_size};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "broker-bench",
    version,
    about = "Benchmarks Broker through its public API, beside same-run anchors"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Args)]
struct Global {
    /// The broker binary to start (default: `broker` beside this executable).
    #[arg(long, global = true)]
    broker_bin: Option<PathBuf>,
    /// Benchmark a broker already running at this URL instead of starting one.
    #[arg(long, global = true)]
    url: Option<String>,
    #[arg(long, global = true)]
    token_sender: Option<String>,
    #[arg(long, global = true)]
    token_recipient: Option<String>,
    #[arg(long, global = true)]
    token_serviceowner: Option<String>,
    /// With --url: the remote broker's data dir, to mint tokens with its development issuer.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// The resource id to use (configured when a service-owner token is at hand).
    #[arg(long, global = true, default_value = "broker-bench")]
    resource: String,
    /// Run each scenario also against this second broker binary (another build), right after this
    /// one's run, and report both, with this build's ratios to it.
    #[arg(long, global = true)]
    compare: Option<PathBuf>,
    /// Measure the anchors (write+fsync, MD5, SHA-256, nginx, wrk) in the same run.
    #[arg(long, global = true)]
    anchors: bool,
    /// Where the large test file is generated once and kept.
    #[arg(long, global = true)]
    cache_dir: Option<PathBuf>,
    /// Write the report as JSON (schema: benches/schema/report-v1.json).
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Write SVG charts of the report.
    #[arg(long, global = true)]
    svg: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Scenario {
    /// One large file as a binary upload: MiB/s and time to Published.
    Upload {
        #[arg(long, default_value = "2GiB", value_parser = parse_size)]
        size: u64,
    },
    /// A published file downloaded whole and as N parallel ranges.
    Download {
        #[arg(long, default_value = "2GiB", value_parser = parse_size)]
        size: u64,
        #[arg(long, default_value_t = 4)]
        parallel: usize,
    },
    /// Many small transfers by concurrent clients: initialize, upload, search, download, confirm.
    Lifecycle {
        /// One or more client counts, comma-separated (e.g. 16,64): one run each.
        #[arg(long, default_value = "16", value_delimiter = ',')]
        concurrency: Vec<usize>,
        #[arg(long, default_value = "20s", value_parser = parse_duration)]
        duration: Duration,
        #[arg(long, default_value = "1KiB", value_parser = parse_size)]
        size: u64,
    },
    /// The file as a binary upload, then with tus: one whole-file PATCH, chunked PATCHes, and N
    /// parallel parts joined by concatenation; optionally the same uploads to peer tus servers.
    Tus {
        #[arg(long, default_value = "2GiB", value_parser = parse_size)]
        size: u64,
        #[arg(long, default_value = "8MiB", value_parser = parse_positive_size)]
        chunk: u64,
        /// Partial uploads sent concurrently in the concatenation run (1 skips it).
        #[arg(long, default_value_t = 4)]
        parallel: usize,
        /// Peer tus servers to measure through the same client (tus-node, rustus), comma-separated;
        /// each is installed on first use (npm ci, cargo install).
        #[arg(long, value_delimiter = ',')]
        peers: Vec<String>,
    },
    /// One file uploaded to a broker scanning with a clamd of this tool's own: MiB/s from the last
    /// byte to Published, beside `clamdscan --stream` of the same file (with --anchors).
    Scan {
        #[arg(long, default_value = "1GiB", value_parser = parse_size)]
        size: u64,
        /// The broker's scan window (default: the whole file in one, as clamdscan sends it).
        #[arg(long, value_parser = parse_positive_size)]
        window: Option<u64>,
    },
    /// C clients run lifecycles while the broker is SIGKILLed K times at random moments and started
    /// again; every acknowledged response is checked after each restart. Prints acknowledged,
    /// checked and lost (which must be 0).
    Crash {
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        kills: usize,
        /// The broker runs between this and twice this long before each kill.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        uptime: Duration,
    },
    /// One tus upload whose broker is SIGKILLed at --stop-at bytes and started again: the time from
    /// the restart to the first acknowledged PATCH, beside MD5 of the durable prefix in the same run.
    Resume {
        #[arg(long, default_value = "2GiB", value_parser = parse_size)]
        size: u64,
        #[arg(long, default_value = "1536MiB", value_parser = parse_size)]
        stop_at: u64,
        #[arg(long, default_value = "8MiB", value_parser = parse_positive_size)]
        chunk: u64,
    },
    /// Signed webhook deliveries to a local receiver: events/s delivered and the lag from commit to
    /// arrival at each offered rate; then lifecycles/s without and with one subscription per party.
    Deliveries {
        /// Offered events/s, comma-separated; `max` offers as many as 64 clients can initialize.
        #[arg(long, default_value = "100,1000,max", value_delimiter = ',')]
        rates: Vec<broker_bench::scenarios::deliveries::Rate>,
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Clients of the lifecycle comparison (0 skips it).
        #[arg(long, default_value_t = 16)]
        lifecycle_concurrency: usize,
        #[arg(long, default_value = "20s", value_parser = parse_duration)]
        lifecycle_duration: Duration,
    },
    /// N transfers made through the API, then the time to produce the monthly statistics CSV and
    /// the daily summary report (Parquet) over them.
    Statistics {
        #[arg(long, default_value_t = 100_000)]
        transfers: u64,
        /// Times each report is produced (the figures are percentiles over these).
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Merge earlier JSON reports (e.g. one per scenario) into one report, JSON and/or SVG.
    Report {
        /// Report files written by --json.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// The lifecycle load alone, then beside large uploads and downloads.
    Mixed {
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value = "20s", value_parser = parse_duration)]
        duration: Duration,
        #[arg(long, default_value = "1KiB", value_parser = parse_size)]
        size: u64,
        #[arg(long, default_value = "1GiB", value_parser = parse_size)]
        large_size: u64,
    },
}

fn write_outputs(report: &Report, g: &Global) -> anyhow::Result<()> {
    if let Some(path) = &g.json {
        std::fs::write(path, serde_json::to_vec_pretty(report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &g.svg {
        broker_bench::chart::write_svg(report, path)
            .map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))?;
    }
    Ok(())
}

fn merge_reports(inputs: &[PathBuf], g: &Global) -> anyhow::Result<()> {
    let mut merged: Option<Report> = None;
    for path in inputs {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let report: Report = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a broker-bench report", path.display()))?;
        anyhow::ensure!(
            report.schema_version == SCHEMA_VERSION,
            "{} has schema version {}",
            path.display(),
            report.schema_version
        );
        match &mut merged {
            None => merged = Some(report),
            Some(m) => m.scenarios.extend(report.scenarios),
        }
    }
    let merged = merged.context("no input report")?;
    for r in &merged.scenarios {
        print!("{}", r.table());
    }
    write_outputs(&merged, g)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let g = cli.global;
    let broker_bin = g.broker_bin.clone().unwrap_or_else(default_broker_bin);
    // A scan needs its clamd up before the broker starts, to be told where it is.
    let clamd = match &cli.scenario {
        Scenario::Scan { size, window } => {
            anyhow::ensure!(
                g.url.is_none(),
                "scan starts its own broker and clamd; drop --url"
            );
            let clamd = broker_bench::clamd::Clamd::start(scan::stream_limit(*size))?;
            let window = window.unwrap_or(*size).min(scan::stream_limit(*size));
            Some((clamd, window))
        }
        _ => None,
    };
    let mut env = clamd
        .as_ref()
        .map(|(c, window)| scan::broker_env(c, *window))
        .unwrap_or_default();
    if matches!(cli.scenario, Scenario::Statistics { .. }) {
        env.extend(broker_bench::scenarios::statistics::broker_env());
    }
    let spec = match &g.url {
        None => TargetSpec::Spawn { broker_bin, env },
        Some(url) => TargetSpec::Remote {
            url: url.clone(),
            sender_token: g.token_sender.clone(),
            recipient_token: g.token_recipient.clone(),
            owner_token: g.token_serviceowner.clone(),
            data_dir: g.data_dir.clone(),
            broker_bin,
        },
    };
    if let Scenario::Report { inputs } = &cli.scenario {
        return merge_reports(inputs, &g);
    }
    if let Scenario::Crash {
        clients,
        kills,
        uptime,
    } = &cli.scenario
    {
        anyhow::ensure!(
            g.url.is_none(),
            "crash kills the broker it starts; drop --url"
        );
        let options = broker_bench::scenarios::crash::CrashOptions {
            clients: *clients,
            kills: *kills,
            min_uptime: *uptime,
            max_uptime: *uptime * 2,
        };
        let result = broker_bench::scenarios::crash::run(&spec, &g.resource, &options).await?;
        return finish(vec![result], &g, chrono::Utc::now().to_rfc3339(), "spawned");
    }
    if let Scenario::Resume {
        size,
        stop_at,
        chunk,
    } = &cli.scenario
    {
        anyhow::ensure!(
            g.url.is_none(),
            "resume kills the broker it starts; drop --url"
        );
        let options = broker_bench::scenarios::resume::ResumeOptions {
            size: *size,
            stop_at: *stop_at,
            chunk: *chunk,
        };
        let cache_dir = g
            .cache_dir
            .clone()
            .unwrap_or_else(broker_bench::payload::default_cache_dir);
        let result =
            broker_bench::scenarios::resume::run(&spec, &g.resource, &cache_dir, &options).await?;
        return finish(vec![result], &g, chrono::Utc::now().to_rfc3339(), "spawned");
    }
    let started = chrono::Utc::now().to_rfc3339();
    let context = |target| {
        Arc::new(Context {
            target,
            cache_dir: g
                .cache_dir
                .clone()
                .unwrap_or_else(broker_bench::payload::default_cache_dir),
            anchors: g.anchors,
        })
    };
    let mut builds = vec![(None, context(Target::start(&spec, &g.resource).await?))];
    if let Some(other) = &g.compare {
        let TargetSpec::Spawn { env, .. } = &spec else {
            anyhow::bail!("--compare starts both brokers; drop --url");
        };
        let other_spec = TargetSpec::Spawn {
            broker_bin: other.clone(),
            env: env.clone(),
        };
        let target = Target::start(&other_spec, &g.resource).await?;
        builds.push((Some(other.clone()), context(target)));
    }
    let mut results: Vec<ScenarioResult> = vec![];
    // With --compare, the two builds take turns round by round, so drift in the machine hits both.
    let rounds: Vec<Scenario> = match cli.scenario {
        Scenario::Lifecycle {
            concurrency,
            duration,
            size,
        } => concurrency
            .into_iter()
            .map(|c| Scenario::Lifecycle {
                concurrency: vec![c],
                duration,
                size,
            })
            .collect(),
        other => vec![other],
    };
    for round in &rounds {
        let mut this_round = vec![];
        for (compared, ctx) in &builds {
            let mut r = run_round(ctx, round, clamd.as_ref()).await?;
            if let Some(bin) = compared {
                for result in &mut r {
                    result
                        .params
                        .insert("build".into(), serde_json::json!(bin.display().to_string()));
                }
            }
            this_round.push(r);
        }
        if let [this, other] = this_round.as_mut_slice() {
            for (a, b) in this.iter_mut().zip(other.iter()) {
                add_ratios(a, b);
            }
        }
        if matches!(round, Scenario::Lifecycle { .. }) {
            for result in this_round.iter().flatten() {
                print!("{}", result.table());
            }
        }
        results.extend(this_round.into_iter().flatten());
    }
    if !matches!(results.first(), Some(r) if r.scenario == "lifecycle") {
        for r in &results {
            print!("{}", r.table());
        }
    }
    let kind = if g.url.is_some() { "remote" } else { "spawned" };
    let outcome = finish(results, &g, started, kind);
    drop(builds);
    outcome
}

/// Writes the report and fails the run (exit status 2) when any request failed.
fn finish(
    results: Vec<ScenarioResult>,
    g: &Global,
    started: String,
    kind: &str,
) -> anyhow::Result<()> {
    let report = Report {
        schema_version: SCHEMA_VERSION,
        tool: "broker-bench".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        started,
        target: kind.into(),
        machine: Machine::detect(),
        scenarios: results,
    };
    write_outputs(&report, g)?;
    let failed: u64 = report.scenarios.iter().map(|s| s.errors).sum();
    if failed > 0 {
        eprintln!("{failed} requests failed");
        std::process::exit(2);
    }
    Ok(())
}

/// Runs one round of a scenario against one broker.
async fn run_round(
    ctx: &Arc<Context>,
    scenario: &Scenario,
    clamd: Option<&(broker_bench::clamd::Clamd, u64)>,
) -> anyhow::Result<Vec<ScenarioResult>> {
    Ok(match scenario {
        Scenario::Upload { size } => vec![transfer::upload(ctx, *size).await?],
        Scenario::Download { size, parallel } => {
            vec![transfer::download(ctx, *size, *parallel).await?]
        }
        Scenario::Lifecycle {
            concurrency,
            duration,
            size,
        } => {
            let mut results = vec![];
            for c in concurrency {
                results.push(lifecycle::run(ctx.clone(), *c, *duration, *size).await?);
            }
            results
        }
        Scenario::Mixed {
            concurrency,
            duration,
            size,
            large_size,
        } => vec![mixed::run(ctx.clone(), *concurrency, *duration, *size, *large_size).await?],
        Scenario::Tus {
            size,
            chunk,
            parallel,
            peers,
        } => {
            let options = tus::TusOptions {
                size: *size,
                chunk: *chunk,
                parallel: *parallel,
                peers: peers.clone(),
            };
            vec![tus::tus(ctx, &options).await?]
        }
        Scenario::Scan { size, .. } => {
            let (clamd, window) = clamd.expect("started above");
            vec![scan::run(ctx, clamd, *size, *window).await?]
        }
        Scenario::Deliveries {
            rates,
            duration,
            lifecycle_concurrency,
            lifecycle_duration,
        } => {
            let options = broker_bench::scenarios::deliveries::DeliveryOptions {
                rates: rates.clone(),
                duration: *duration,
                lifecycle_concurrency: *lifecycle_concurrency,
                lifecycle_duration: *lifecycle_duration,
            };
            broker_bench::scenarios::deliveries::run(ctx.clone(), &options).await?
        }
        Scenario::Statistics { transfers, runs } => {
            let options = broker_bench::scenarios::statistics::StatisticsOptions {
                transfers: *transfers,
                runs: *runs,
            };
            vec![broker_bench::scenarios::statistics::run(ctx.clone(), &options).await?]
        }
        Scenario::Report { .. } | Scenario::Crash { .. } | Scenario::Resume { .. } => {
            unreachable!("handled before a broker is started")
        }
    })
}

/// This build's figures over the compared build's, as `to_compare_<figure>`.
fn add_ratios(this: &mut ScenarioResult, other: &ScenarioResult) {
    let mut ratios = vec![];
    if let (Some(a), Some(b)) = (this.lifecycles_per_sec, other.lifecycles_per_sec) {
        ratios.push(("to_compare_lifecycles_per_sec".to_string(), a / b));
    }
    if let (Some(a), Some(b)) = (&this.latency_ms, &other.latency_ms) {
        ratios.push(("to_compare_latency_p99".to_string(), a.p99 / b.p99));
    }
    for (name, a) in &this.figures {
        if let Some(b) = other.figures.get(name).filter(|b| **b != 0.0) {
            ratios.push((format!("to_compare_{name}"), a / b));
        }
    }
    this.figures.extend(ratios);
}
