//! The comparison report: `report.md` (tables), `report.html` (the same tables and inline SVG
//! charts drawn with plotters; no external scripts or styles), `results.json`, and one `.hgrm`
//! percentile distribution per backend.

use std::fmt::Write;
use std::path::Path;

use plotters::prelude::*;

use crate::compare::Comparison;

const COLORS: [RGBColor; 8] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Writes every report file into `directory`; returns the Markdown.
pub fn write(comparison: &Comparison, directory: &Path, command: &str) -> anyhow::Result<String> {
    std::fs::create_dir_all(directory)?;
    let markdown = markdown(comparison, command);
    std::fs::write(directory.join("report.md"), &markdown)?;
    std::fs::write(directory.join("report.html"), html(comparison, command)?)?;
    std::fs::write(
        directory.join("results.json"),
        serde_json::to_string_pretty(comparison)?,
    )?;
    for run in &comparison.runs {
        std::fs::write(
            directory.join(format!("{}.hgrm", run.label)),
            run.percentile_distribution(),
        )?;
    }
    Ok(markdown)
}

fn runs_table(comparison: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| backend | target/s | sent/s | answered/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | allowed | limited | dropped | errors | timeouts |"
    );
    let _ = writeln!(
        out,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for run in &comparison.runs {
        let o = &run.outcomes;
        let dropped = if o.dropped.is_empty() {
            "0".to_owned()
        } else {
            o.dropped
                .iter()
                .map(|(r, n)| format!("{r}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let l = &run.latency_ms;
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} |",
            run.label,
            run.target_rate
                .map_or("closed loop".to_owned(), |r| format!("{r:.0}")),
            run.sent_rate,
            run.throughput,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            o.allowed,
            o.limited,
            dropped,
            o.errors.values().sum::<u64>() + o.connection_errors,
            o.timeouts,
        );
    }
    out
}

fn sweep_table(comparison: &Comparison) -> String {
    let mut out = String::new();
    if comparison.sweep.is_empty() {
        return out;
    }
    let configs = unique(comparison.sweep.iter().map(|p| p.config.clone()));
    let works = unique(comparison.sweep.iter().map(|p| p.work.clone()));
    let _ = writeln!(out, "| work per check | {} |", configs.join(" | "));
    let _ = writeln!(out, "|---{}|", "|---".repeat(configs.len()));
    for work in &works {
        let cells: Vec<String> = configs
            .iter()
            .map(|config| {
                comparison
                    .sweep
                    .iter()
                    .find(|p| &p.config == config && &p.work == work)
                    .map_or("-".into(), |p| format!("{:.0}", p.throughput))
            })
            .collect();
        let _ = writeln!(out, "| {work} | {} |", cells.join(" | "));
    }
    out
}

fn unique(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

/// The Markdown report.
pub fn markdown(comparison: &Comparison, command: &str) -> String {
    let scenario = &comparison.scenario;
    let mut out = String::new();
    let _ = writeln!(out, "# Turnstile backend comparison: {}\n", scenario.name);
    if !scenario.description.is_empty() {
        let _ = writeln!(out, "{}\n", scenario.description.trim());
    }
    let _ = writeln!(out, "Made with `{command}`.\n");
    let _ = writeln!(
        out,
        "Load: {:?} loop, {} connections, {:.0} s measured after {:.0} s of warm-up; latency is measured from each request's scheduled send time in open loop.\n",
        scenario.mode,
        scenario.connections,
        scenario.measured_duration().as_secs_f64(),
        scenario.warmup.as_secs_f64()
    );
    let _ = writeln!(out, "## Per backend\n\n{}", runs_table(comparison));
    if !comparison.sweep.is_empty() {
        let _ = writeln!(
            out,
            "## Throughput (answers/s, closed loop) as work per check grows\n\n{}",
            sweep_table(comparison)
        );
    }
    out
}

fn markdown_table_to_html(table: &str) -> String {
    let mut out = String::from("<table>\n");
    for (index, line) in table.lines().enumerate() {
        if index == 1 {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let tag = if index == 0 { "th" } else { "td" };
        out.push_str("<tr>");
        for cell in cells {
            let _ = write!(out, "<{tag}>{}</{tag}>", escape(cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The HTML report: tables and inline SVG charts.
pub fn html(comparison: &Comparison, command: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Turnstile comparison: {0}</title>\n<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}</style></head><body>\n<h1>Turnstile backend comparison: {0}</h1>\n<p>{1}</p><p>Made with <code>{2}</code>.</p>",
        escape(&comparison.scenario.name),
        escape(comparison.scenario.description.trim()),
        escape(command)
    );
    let _ = writeln!(
        out,
        "<h2>Per backend</h2>\n{}",
        markdown_table_to_html(&runs_table(comparison))
    );
    let _ = writeln!(
        out,
        "<h2>Latency percentiles</h2>\n{}",
        latency_chart(comparison)?
    );
    let _ = writeln!(
        out,
        "<h2>Throughput</h2>\n{}",
        bar_chart(
            "answers per second",
            &comparison
                .runs
                .iter()
                .map(|r| (r.label.clone(), r.throughput))
                .collect::<Vec<_>>()
        )?
    );
    let _ = writeln!(
        out,
        "<h2>Dropped requests</h2>\n{}",
        bar_chart(
            "dropped (all reasons)",
            &comparison
                .runs
                .iter()
                .map(|r| (r.label.clone(), r.outcomes.dropped_total() as f64))
                .collect::<Vec<_>>()
        )?
    );
    if !comparison.sweep.is_empty() {
        let _ = writeln!(
            out,
            "<h2>Throughput as work per check grows</h2>\n{}\n{}",
            sweep_chart(comparison)?,
            markdown_table_to_html(&sweep_table(comparison))
        );
    }
    out.push_str("</body></html>\n");
    Ok(out)
}

fn latency_chart(comparison: &Comparison) -> anyhow::Result<String> {
    let labels: Vec<String> = ["p50", "p90", "p99", "p99.9", "max"]
        .map(String::from)
        .to_vec();
    let series: Vec<(String, Vec<(f64, f64)>)> = comparison
        .runs
        .iter()
        .map(|r| {
            let l = &r.latency_ms;
            let points = [l.p50, l.p90, l.p99, l.p999, l.max]
                .into_iter()
                .enumerate()
                .map(|(i, v)| (i as f64, v))
                .collect();
            (r.label.clone(), points)
        })
        .collect();
    log_line_chart(&labels, None, "latency, ms (log)", 0.001, &series)
}

/// A line chart over categorical x positions with a logarithmic y axis starting at `y_min`,
/// one line (with markers and a legend entry) per series.
fn log_line_chart(
    x_labels: &[String],
    x_desc: Option<&str>,
    y_desc: &str,
    y_min: f64,
    series: &[(String, Vec<(f64, f64)>)],
) -> anyhow::Result<String> {
    let top = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|(_, y)| *y))
        .fold(y_min, f64::max)
        * 2.0;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 440)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(15)
            .x_label_area_size(35)
            .y_label_area_size(80)
            .build_cartesian_2d(
                -0.5f64..(x_labels.len() as f64 - 0.5),
                (y_min..top).log_scale(),
            )?;
        let label_of = |x: &f64| {
            x_labels
                .get(x.round() as usize)
                .cloned()
                .unwrap_or_default()
        };
        let mut mesh = chart.configure_mesh();
        mesh.x_labels(x_labels.len().max(1))
            .x_label_formatter(&label_of)
            .y_desc(y_desc);
        if let Some(x_desc) = x_desc {
            mesh.x_desc(x_desc);
        }
        mesh.draw()?;
        for (index, (name, points)) in series.iter().enumerate() {
            let color = COLORS[index % COLORS.len()];
            let points: Vec<(f64, f64)> = points.iter().map(|(x, y)| (*x, y.max(y_min))).collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, color.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

fn bar_chart(axis: &str, bars: &[(String, f64)]) -> anyhow::Result<String> {
    let top = bars.iter().map(|(_, v)| *v).fold(1.0_f64, f64::max) * 1.15;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 320)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(15)
            .x_label_area_size(35)
            .y_label_area_size(80)
            .build_cartesian_2d(-0.5f64..(bars.len() as f64 - 0.5), 0f64..top)?;
        chart
            .configure_mesh()
            .x_labels(bars.len().max(1))
            .x_label_formatter(&|x| {
                bars.get(x.round() as usize)
                    .map_or(String::new(), |(l, _)| l.clone())
            })
            .y_desc(axis)
            .draw()?;
        chart.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            let color = COLORS[i % COLORS.len()];
            Rectangle::new(
                [(i as f64 - 0.3, 0.0), (i as f64 + 0.3, *v)],
                color.filled(),
            )
        }))?;
        root.present()?;
    }
    Ok(svg)
}

fn sweep_chart(comparison: &Comparison) -> anyhow::Result<String> {
    let configs = unique(comparison.sweep.iter().map(|p| p.config.clone()));
    let works = unique(comparison.sweep.iter().map(|p| p.work.clone()));
    let series: Vec<(String, Vec<(f64, f64)>)> = configs
        .iter()
        .map(|config| {
            let points = works
                .iter()
                .enumerate()
                .filter_map(|(i, work)| {
                    comparison
                        .sweep
                        .iter()
                        .find(|p| &p.config == config && &p.work == work)
                        .map(|p| (i as f64, p.throughput))
                })
                .collect();
            (config.clone(), points)
        })
        .collect();
    log_line_chart(
        &works,
        Some("work per check"),
        "answers/s (log)",
        1.0,
        &series,
    )
}
