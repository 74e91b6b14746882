//! SVG charts of a report: each throughput figure beside its anchors, and latency percentiles against
//! concurrency. Drawn with plotters' SVG backend (text is left to the SVG viewer: no font libraries).

use crate::report::Report;
use plotters::prelude::*;
use std::path::Path;

/// (group label, [(bar label, MiB/s)]) for the scenarios that move bytes.
fn throughput_groups(report: &Report) -> Vec<(String, Vec<(String, f64)>)> {
    let mut groups = vec![];
    for s in &report.scenarios {
        let mut bars = vec![];
        if let Some(v) = s.mb_per_sec {
            bars.push((format!("broker {}", s.scenario), v));
        }
        if let Some(v) = s.figures.get("parallel_mb_per_sec") {
            bars.push(("broker parallel".to_string(), *v));
        }
        bars.extend(s.anchors.iter().map(|(k, v)| (k.clone(), *v)));
        if !bars.is_empty() && s.mb_per_sec.is_some() {
            groups.push((s.scenario.clone(), bars));
        }
    }
    groups
}

/// (concurrency, p50, p95, p99) of every lifecycle-style scenario, by concurrency.
fn latency_points(report: &Report) -> Vec<(f64, f64, f64, f64)> {
    let mut points: Vec<(f64, f64, f64, f64)> = report
        .scenarios
        .iter()
        .filter(|s| s.lifecycles_per_sec.is_some())
        .filter_map(|s| {
            let c = s.params.get("concurrency")?.as_f64()?;
            let l = s.latency_ms?;
            Some((c, l.p50, l.p95, l.p99))
        })
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Draws the charts the report has data for: throughput beside anchors, latency vs concurrency, or both.
pub fn write_svg(report: &Report, path: &Path) -> DrawResult {
    let throughput = !throughput_groups(report).is_empty();
    let latency = !latency_points(report).is_empty();
    let width = if throughput && latency { 1400 } else { 760 };
    let root = SVGBackend::new(path, (width, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    match (throughput, latency) {
        (true, true) => {
            let (left, right) = root.split_horizontally(760);
            draw_throughput(report, &left)?;
            draw_latency(report, &right)?;
        }
        (true, false) => draw_throughput(report, &root)?,
        (false, true) => draw_latency(report, &root)?,
        (false, false) => {
            root.draw(&Text::new(
                "no throughput or latency figures in this report",
                (20, 20),
                ("sans-serif", 18),
            ))?;
        }
    }
    root.present()?;
    Ok(())
}

fn draw_throughput<DB: DrawingBackend>(
    report: &Report,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let groups = throughput_groups(report);
    let bars: Vec<(String, f64)> = groups
        .iter()
        .flat_map(|(g, bars)| bars.iter().map(move |(b, v)| (format!("{g}: {b}"), *v)))
        .collect();
    let max = bars.iter().map(|b| b.1).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Throughput beside same-run anchors (MiB/s)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(30)
        .y_label_area_size(230)
        .build_cartesian_2d(0f64..max, 0f64..bars.len().max(1) as f64)?;
    let labels = bars.clone();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(bars.len().max(1) * 2 + 1)
        .y_label_formatter(&move |y| {
            let i = y.floor() as usize;
            if (y - i as f64 - 0.5).abs() < 0.01 {
                labels.get(i).map(|l| l.0.clone()).unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc("MiB/s")
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (name, v))| {
        let color = if name.contains("broker") {
            BLUE.mix(0.8)
        } else {
            RGBColor(150, 150, 150).mix(0.9)
        };
        Rectangle::new(
            [(0.0, i as f64 + 0.15), (*v, i as f64 + 0.85)],
            color.filled(),
        )
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
        Text::new(
            format!("{v:.0}"),
            (*v + max * 0.01, i as f64 + 0.4),
            ("sans-serif", 14),
        )
    }))?;
    Ok(())
}

fn draw_latency<DB: DrawingBackend>(
    report: &Report,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let points = latency_points(report);
    let max_c = points.iter().map(|p| p.0).fold(1.0, f64::max) * 1.1;
    let max_l = points.iter().map(|p| p.3).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Lifecycle request latency vs concurrency",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..max_c, 0f64..max_l)?;
    chart
        .configure_mesh()
        .x_desc("concurrent clients")
        .y_desc("ms")
        .draw()?;
    for (name, pick, color) in [("p50", 1usize, GREEN), ("p95", 2, BLUE), ("p99", 3, RED)] {
        let series: Vec<(f64, f64)> = points
            .iter()
            .map(|p| (p.0, [p.0, p.1, p.2, p.3][pick]))
            .collect();
        chart
            .draw_series(LineSeries::new(series.clone(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(
            series
                .iter()
                .map(|(x, y)| Circle::new((*x, *y), 4, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    Ok(())
}
