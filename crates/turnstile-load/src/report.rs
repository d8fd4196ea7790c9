//! The comparison report: `report.md` (tables, and the charts as SVG files beside it),
//! `report.html` (the same tables with the charts inline; no scripts, no external styles),
//! `results.json`, and one `.hgrm` percentile distribution per backend.
//!
//! Every chart is drawn with plotters. Legends sit in a strip of their own under the plot, so
//! they never cover the data; axis labels are formatted without spurious decimals; the time
//! series mark each backend's faults (dashed lines) and escalations (solid lines), and its
//! restarts (triangles along the top).

use std::fmt::Write;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::compare::Comparison;
use crate::result::RunResult;
use crate::timeline::{EventKind, drop_reasons};

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

const WIDTH: u32 = 900;

fn color(index: usize) -> RGBColor {
    COLORS[index % COLORS.len()]
}

/// One chart of the report: its file name (beside `report.md`), title and SVG.
struct Chart {
    file: &'static str,
    title: String,
    svg: String,
}

/// Writes every report file into `directory`; returns the Markdown.
pub fn write(comparison: &Comparison, directory: &Path, command: &str) -> anyhow::Result<String> {
    std::fs::create_dir_all(directory)?;
    let charts = charts(comparison)?;
    for chart in &charts {
        std::fs::write(directory.join(chart.file), &chart.svg)?;
    }
    let markdown = markdown_with(comparison, command, &charts);
    std::fs::write(directory.join("report.md"), &markdown)?;
    std::fs::write(
        directory.join("report.html"),
        html_with(comparison, command, &charts),
    )?;
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

fn charts(comparison: &Comparison) -> anyhow::Result<Vec<Chart>> {
    let runs = &comparison.runs;
    let mut charts = vec![
        Chart {
            file: "latency.svg",
            title: "Latency percentiles".into(),
            svg: latency_chart(comparison)?,
        },
        Chart {
            file: "throughput.svg",
            title: "Throughput".into(),
            svg: bar_chart(
                "answers per second",
                &runs
                    .iter()
                    .map(|r| (r.label.clone(), r.throughput))
                    .collect::<Vec<_>>(),
            )?,
        },
        Chart {
            file: "dropped.svg",
            title: "Dropped requests by reason".into(),
            svg: dropped_chart(runs)?,
        },
    ];
    if runs.iter().any(|run| !run.timeline.samples.is_empty()) {
        charts.push(Chart {
            file: "timeline-answered.svg",
            title: "Answered per second (offered: the faint line of the same colour)".into(),
            svg: time_chart("requests/s", runs, false, &|run| {
                vec![
                    (
                        format!("{} offered", run.label),
                        true,
                        points(run, |s| s.offered),
                    ),
                    (
                        format!("{} answered", run.label),
                        false,
                        points(run, |s| Some(s.answered)),
                    ),
                ]
            })?,
        });
        charts.push(Chart {
            file: "timeline-p99.svg",
            title: "p99 latency of each second's answers".into(),
            svg: time_chart("p99, ms", runs, false, &|run| {
                vec![(run.label.clone(), false, points(run, |s| s.p99_ms))]
            })?,
        });
        charts.push(Chart {
            file: "timeline-mailbox.svg",
            title: "Mailbox depth (the actor, or the busiest shard)".into(),
            svg: time_chart("messages waiting", runs, true, &|run| {
                let depth = points(run, |s| {
                    s.gateway
                        .as_ref()
                        .and_then(|g| g.mailbox_depth)
                        .map(|d| d as f64)
                });
                if depth.is_empty() {
                    Vec::new()
                } else {
                    vec![(run.label.clone(), false, depth)]
                }
            })?,
        });
        charts.push(Chart {
            file: "timeline-dropped.svg",
            title: "Dropped per second, by reason".into(),
            svg: time_chart("dropped/s", runs, true, &|run| {
                drop_reasons(&run.timeline)
                    .into_keys()
                    .map(|reason| {
                        let line = per_second(run, |s| {
                            s.outcomes.dropped.get(&reason).copied().unwrap_or(0) as f64
                        });
                        (format!("{}: {reason}", run.label), false, line)
                    })
                    .collect()
            })?,
        });
    }
    if !comparison.sweep.is_empty() {
        charts.push(Chart {
            file: "sweep.svg",
            title: "Throughput as work per check grows".into(),
            svg: sweep_chart(comparison)?,
        });
    }
    Ok(charts)
}

fn runs_table(comparison: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| backend | target/s | sent/s | answered/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | allowed | limited | dropped | errors | timeouts | faults |"
    );
    let _ = writeln!(
        out,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
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
        let faults = if run.fault_errors == 0 {
            run.faults_injected.to_string()
        } else {
            format!("{} ({} refused)", run.faults_injected, run.fault_errors)
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} |",
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
            faults,
        );
    }
    out
}

/// One run, second by second.
fn timeline_table(run: &RunResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| t s | offered/s | sent/s | answered/s | p99 ms | mailbox | restarts | dropped | marked |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    let mut previous_t = 0.0;
    for sample in &run.timeline.samples {
        let dropped = sample
            .outcomes
            .dropped
            .iter()
            .map(|(reason, n)| format!("{reason}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let marked = run
            .timeline
            .events
            .iter()
            .filter(|e| e.t() > previous_t && e.t() <= sample.t)
            .map(|e| {
                if e.ok {
                    e.label.clone()
                } else {
                    format!("{} (refused)", e.label)
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let gateway = sample.gateway.as_ref();
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
            axis_number(&sample.t),
            sample.offered.map_or("-".into(), |o| format!("{o:.0}")),
            sample.sent,
            sample.answered,
            sample.p99_ms.map_or("-".into(), |p| format!("{p:.2}")),
            gateway
                .and_then(|g| g.mailbox_depth)
                .map_or("-".into(), |d| d.to_string()),
            gateway.map_or("-".into(), |g| g.restarts.to_string()),
            if dropped.is_empty() {
                "0".into()
            } else {
                dropped
            },
            marked,
        );
        previous_t = sample.t;
    }
    if let Some(reason) = &run.timeline.ended {
        let _ = writeln!(out, "\nThe series stops early: {reason}.");
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

fn load_line(comparison: &Comparison) -> String {
    let scenario = &comparison.scenario;
    let mut line = format!(
        "Load: {:?} loop, {} connections, {:.0} s measured after {:.0} s of warm-up; latency is measured from each request's scheduled send time in open loop.",
        scenario.mode,
        scenario.connections,
        scenario.measured_duration().as_secs_f64(),
        scenario.warmup.as_secs_f64()
    );
    if comparison.interrupted {
        line.push_str(
            " **Interrupted by a signal:** the runs cover only the time measured before it, and backends or sweep points not reached are missing.",
        );
    }
    if comparison.side_by_side {
        line.push_str(
            " The backends ran side by side (`--live`), sharing the machine: compare their shapes, not their absolute figures.",
        );
    }
    line
}

const TIMELINE_NOTE: &str = "Time runs from the start of each run (the warm-up included). Dashed vertical lines mark the faults injected into each backend, in its colour; solid ones its escalations; triangles along the top its restarts.";

fn markdown_with(comparison: &Comparison, command: &str, charts: &[Chart]) -> String {
    let scenario = &comparison.scenario;
    let mut out = String::new();
    let _ = writeln!(out, "# Turnstile backend comparison: {}\n", scenario.name);
    if !scenario.description.is_empty() {
        let _ = writeln!(out, "{}\n", scenario.description.trim());
    }
    let _ = writeln!(out, "Made with `{command}`.\n");
    let _ = writeln!(out, "{}\n", load_line(comparison));
    let _ = writeln!(out, "## Per backend\n\n{}", runs_table(comparison));
    for chart in charts.iter().filter(|c| !c.file.starts_with("timeline")) {
        if chart.file == "sweep.svg" {
            continue;
        }
        let _ = writeln!(out, "## {}\n\n![{0}]({})\n", chart.title, chart.file);
    }
    if charts.iter().any(|c| c.file.starts_with("timeline")) {
        let _ = writeln!(out, "## Over time\n\n{TIMELINE_NOTE}\n");
        for chart in charts.iter().filter(|c| c.file.starts_with("timeline")) {
            let _ = writeln!(out, "### {}\n\n![{0}]({})\n", chart.title, chart.file);
        }
        for run in &comparison.runs {
            let _ = writeln!(
                out,
                "### {}, second by second\n\n{}",
                run.label,
                timeline_table(run)
            );
        }
    }
    if !comparison.sweep.is_empty() {
        let _ = writeln!(
            out,
            "## Throughput (answers/s, closed loop) as work per check grows\n\n![sweep](sweep.svg)\n\n{}",
            sweep_table(comparison)
        );
    }
    out
}

fn markdown_table_to_html(table: &str) -> String {
    let mut out = String::from("<table>\n");
    for (index, line) in table.lines().enumerate() {
        if index == 1 || !line.starts_with('|') {
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

fn html_with(comparison: &Comparison, command: &str, charts: &[Chart]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Turnstile comparison: {0}</title>\n<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}</style></head><body>\n<h1>Turnstile backend comparison: {0}</h1>\n<p>{1}</p><p>Made with <code>{2}</code>.</p><p>{3}</p>",
        escape(&comparison.scenario.name),
        escape(comparison.scenario.description.trim()),
        escape(command),
        escape(&load_line(comparison)),
    );
    let _ = writeln!(
        out,
        "<h2>Per backend</h2>\n{}",
        markdown_table_to_html(&runs_table(comparison))
    );
    let mut over_time = false;
    for chart in charts {
        if chart.file.starts_with("timeline") && !over_time {
            over_time = true;
            let _ = writeln!(out, "<h2>Over time</h2>\n<p>{}</p>", escape(TIMELINE_NOTE));
        }
        let level = if chart.file.starts_with("timeline") {
            3
        } else {
            2
        };
        let _ = writeln!(
            out,
            "<h{level}>{}</h{level}>\n{}",
            escape(&chart.title),
            chart.svg
        );
        if chart.file == "sweep.svg" {
            let _ = writeln!(out, "{}", markdown_table_to_html(&sweep_table(comparison)));
        }
    }
    if over_time {
        for run in &comparison.runs {
            let table = timeline_table(run);
            let _ = writeln!(
                out,
                "<h3>{}, second by second</h3>\n{}",
                escape(&run.label),
                markdown_table_to_html(&table)
            );
            if let Some(reason) = &run.timeline.ended {
                let _ = writeln!(out, "<p>The series stops early: {}.</p>", escape(reason));
            }
        }
    }
    out.push_str("</body></html>\n");
    out
}

/// An axis label: integers without decimals, others with as few as they need.
fn axis_number(value: &f64) -> String {
    if (value - value.round()).abs() < 1e-9 {
        return format!("{value:.0}");
    }
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The upper end of a linear axis over values up to `max`: a little headroom, and for counts
/// at least 5 so the ticks fall on whole numbers.
fn axis_top(max: f64, counts: bool) -> f64 {
    let top = (max * 1.15).max(1.0);
    if counts { top.ceil().max(5.0) } else { top }
}

/// How many labels a linear axis from 0 to `top` gets: for counts, never more than the
/// integers in range.
fn label_count(top: f64, counts: bool) -> usize {
    if counts {
        (top as usize).clamp(1, 5) + 1
    } else {
        6
    }
}

/// A legend entry: name, colour, drawn faint.
type Entry = (String, RGBColor, bool);

/// The legend's rows: as many entries per row as fit the chart's width.
fn legend_rows(entries: &[Entry]) -> Vec<Vec<(i32, &Entry)>> {
    let mut rows: Vec<Vec<(i32, &Entry)>> = vec![Vec::new()];
    let mut x = 80;
    for entry in entries {
        // Roughly the text's width at this size, plus the swatch.
        let width = 40 + 7 * entry.0.chars().count() as i32;
        if x + width > WIDTH as i32 - 10 && x > 80 {
            rows.push(Vec::new());
            x = 80;
        }
        if let Some(row) = rows.last_mut() {
            row.push((x, entry));
        }
        x += width;
    }
    rows
}

/// The height of the strip that [`legend`] draws `entries` in.
fn legend_height(entries: &[Entry]) -> u32 {
    8 + 22 * legend_rows(entries).len() as u32
}

/// Draws `entries` as rows of swatches in `area` (the strip under a plot).
fn legend(area: &DrawingArea<SVGBackend<'_>, Shift>, entries: &[Entry]) -> anyhow::Result<()> {
    for (row, items) in legend_rows(entries).into_iter().enumerate() {
        let y = 15 + 22 * row as i32;
        for (x, (name, color, faint)) in items {
            let style = if *faint {
                color.mix(0.35).stroke_width(2)
            } else {
                color.stroke_width(3)
            };
            area.draw(&PathElement::new([(x, y), (x + 20, y)], style))?;
            area.draw(&Text::new(
                name.clone(),
                (x + 25, y - 6),
                ("sans-serif", 13).into_font(),
            ))?;
        }
    }
    Ok(())
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
    let entries: Vec<Entry> = series
        .iter()
        .enumerate()
        .map(|(i, (name, _))| (name.clone(), color(i), false))
        .collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 440 + legend_height(&entries)))
            .into_drawing_area();
        root.fill(&WHITE)?;
        let (plot, strip) = root.split_vertically(440);
        let mut chart = ChartBuilder::on(&plot)
            .margin(15)
            .x_label_area_size(if x_desc.is_some() { 45 } else { 35 })
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
            .y_label_formatter(&axis_number)
            .y_desc(y_desc);
        if let Some(x_desc) = x_desc {
            mesh.x_desc(x_desc);
        }
        mesh.draw()?;
        for (index, (_, points)) in series.iter().enumerate() {
            let color = color(index);
            let points: Vec<(f64, f64)> = points.iter().map(|(x, y)| (*x, y.max(y_min))).collect();
            chart.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?;
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, color.filled())),
            )?;
        }
        legend(&strip, &entries)?;
        root.present()?;
    }
    Ok(svg)
}

fn bar_chart(axis: &str, bars: &[(String, f64)]) -> anyhow::Result<String> {
    let top = axis_top(bars.iter().map(|(_, v)| *v).fold(0.0_f64, f64::max), false);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 320)).into_drawing_area();
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
            .y_label_formatter(&axis_number)
            .y_desc(axis)
            .draw()?;
        chart.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            Rectangle::new(
                [(i as f64 - 0.3, 0.0), (i as f64 + 0.3, *v)],
                color(i).filled(),
            )
        }))?;
        root.present()?;
    }
    Ok(svg)
}

/// Dropped requests per backend, stacked by reason (one colour per reason).
fn dropped_chart(runs: &[RunResult]) -> anyhow::Result<String> {
    let reasons = unique(runs.iter().flat_map(|r| r.outcomes.dropped.keys().cloned()));
    let most = runs
        .iter()
        .map(|r| r.outcomes.dropped_total() as f64)
        .fold(0.0, f64::max);
    let top = axis_top(most, true);
    let entries: Vec<Entry> = if reasons.is_empty() {
        vec![("no request was dropped".into(), WHITE, false)]
    } else {
        reasons
            .iter()
            .enumerate()
            .map(|(i, reason)| (reason.clone(), color(i), false))
            .collect()
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 320 + legend_height(&entries)))
            .into_drawing_area();
        root.fill(&WHITE)?;
        let (plot, strip) = root.split_vertically(320);
        let mut chart = ChartBuilder::on(&plot)
            .margin(15)
            .x_label_area_size(35)
            .y_label_area_size(80)
            .build_cartesian_2d(-0.5f64..(runs.len() as f64 - 0.5), 0f64..top)?;
        chart
            .configure_mesh()
            .x_labels(runs.len().max(1))
            .x_label_formatter(&|x| {
                runs.get(x.round() as usize)
                    .map_or(String::new(), |r| r.label.clone())
            })
            .y_labels(label_count(top, true))
            .y_label_formatter(&axis_number)
            .y_desc("dropped requests")
            .draw()?;
        for (i, run) in runs.iter().enumerate() {
            let mut base = 0.0;
            for (r, reason) in reasons.iter().enumerate() {
                let count = run.outcomes.dropped.get(reason).copied().unwrap_or(0) as f64;
                if count > 0.0 {
                    chart.draw_series(std::iter::once(Rectangle::new(
                        [(i as f64 - 0.3, base), (i as f64 + 0.3, base + count)],
                        color(r).filled(),
                    )))?;
                    base += count;
                }
            }
        }
        legend(&strip, &entries)?;
        root.present()?;
    }
    Ok(svg)
}

/// A run's samples as (t, value) points, skipping seconds without a value.
fn points(
    run: &RunResult,
    value: impl Fn(&crate::timeline::Sample) -> Option<f64>,
) -> Vec<(f64, f64)> {
    run.timeline
        .samples
        .iter()
        .filter_map(|s| value(s).map(|v| (s.t, v)))
        .collect()
}

/// A count per sample as a rate (the last sample may be shorter than a second).
fn per_second(run: &RunResult, count: impl Fn(&crate::timeline::Sample) -> f64) -> Vec<(f64, f64)> {
    let mut previous = 0.0;
    run.timeline
        .samples
        .iter()
        .map(|s| {
            let seconds = (s.t - previous).max(1e-3);
            previous = s.t;
            (s.t, count(s) / seconds)
        })
        .collect()
}

/// Lines of one run: (legend name, faint, points).
type RunLines = Vec<(String, bool, Vec<(f64, f64)>)>;

/// A time-series chart over every run's timeline: `lines` gives each run's lines (drawn in
/// the run's colour when it has one line, in a colour per line otherwise), with the run's
/// faults, escalations and restarts marked.
fn time_chart(
    y_desc: &str,
    runs: &[RunResult],
    counts: bool,
    lines: &dyn Fn(&RunResult) -> RunLines,
) -> anyhow::Result<String> {
    let t_max = runs
        .iter()
        .filter_map(|r| r.timeline.samples.last().map(|s| s.t))
        .fold(1.0, f64::max);
    let warmup = runs
        .iter()
        .map(|r| r.timeline.warmup_seconds)
        .fold(0.0, f64::max);
    let all: Vec<(usize, RunLines)> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| (i, lines(r)))
        .collect();
    let y_max = all
        .iter()
        .flat_map(|(_, lines)| lines.iter().flat_map(|(_, _, p)| p.iter().map(|(_, y)| *y)))
        .fold(0.0, f64::max);
    let top = axis_top(y_max, counts);
    // Each line's colour: its run's when the run has one line (a faint companion shares it),
    // else one of its own.
    let mut styled: Vec<(Entry, &Vec<(f64, f64)>)> = Vec::new();
    let mut extra = runs.len();
    for (run_index, lines) in &all {
        let single = lines.iter().filter(|(_, faint, _)| !faint).count() <= 1;
        for (name, faint, points) in lines {
            let line_color = if single {
                color(*run_index)
            } else {
                extra += 1;
                color(extra - 1)
            };
            styled.push(((name.clone(), line_color, *faint), points));
        }
    }
    let mut entries: Vec<Entry> = styled.iter().map(|(entry, _)| entry.clone()).collect();
    if entries.is_empty() {
        entries.push(("no data in this run".into(), WHITE, false));
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 300 + legend_height(&entries)))
            .into_drawing_area();
        root.fill(&WHITE)?;
        let (plot, strip) = root.split_vertically(300);
        let mut chart = ChartBuilder::on(&plot)
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..t_max, 0f64..top)?;
        chart
            .configure_mesh()
            .x_labels(10)
            .x_label_formatter(&|t| format!("{}s", axis_number(t)))
            .y_labels(label_count(top, counts))
            .y_label_formatter(&axis_number)
            .y_desc(y_desc)
            .x_desc("seconds since the run started")
            .draw()?;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(0.0, 0.0), (warmup, top)],
            RGBColor(235, 235, 235).filled(),
        )))?;
        for ((_, line_color, faint), points) in &styled {
            let style = if *faint {
                line_color.mix(0.35).stroke_width(2)
            } else {
                line_color.stroke_width(2)
            };
            chart.draw_series(LineSeries::new(points.iter().copied(), style))?;
        }
        for (run_index, run) in runs.iter().enumerate() {
            let marker_color = color(run_index);
            for event in &run.timeline.events {
                let t = event.t();
                match event.kind {
                    EventKind::ScenarioFault | EventKind::LiveFault if event.ok => {
                        chart.draw_series(DashedLineSeries::new(
                            [(t, 0.0), (t, top)],
                            6,
                            4,
                            marker_color.mix(0.7).stroke_width(1),
                        ))?;
                    }
                    EventKind::Escalation => {
                        chart.draw_series(LineSeries::new(
                            [(t, 0.0), (t, top)],
                            marker_color.stroke_width(3),
                        ))?;
                    }
                    EventKind::Restart => {
                        chart.draw_series(std::iter::once(TriangleMarker::new(
                            (t, top * 0.97),
                            5,
                            marker_color.filled(),
                        )))?;
                    }
                    // A refused fault changed nothing: not marked.
                    _ => {}
                }
            }
        }
        legend(&strip, &entries)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_labels_have_no_spurious_decimals() {
        assert_eq!(axis_number(&3.0), "3");
        assert_eq!(axis_number(&2000.0), "2000");
        assert_eq!(axis_number(&0.5), "0.5");
        assert_eq!(axis_number(&0.001), "0.001");
        assert_eq!(axis_number(&1.25), "1.25");
        // Counts: whole-number ticks only.
        let top = axis_top(1.0, true);
        assert!(top >= 5.0 && top.fract() == 0.0);
        assert!(label_count(top, true) as f64 <= top + 1.0);
    }
}
