//! Printing results: JSON for programs, aligned text for people, live phase progress on a terminal.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;
use tenantry_core::PhaseStatus;
use tenantry_engine::{Progress, ProgressSink};

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints rows as columns padded to their widest cell.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|header| header.len()).collect();
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(index) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!("{}", line(headers.to_vec()));
    for row in rows {
        println!("{}", line(row.iter().map(String::as_str).collect()));
    }
}

/// The line a finished phase (or a warning) leaves in the live display; `None` for what only the spinner shows.
fn progress_line(progress: &Progress) -> Option<String> {
    match progress {
        Progress::Phase {
            name,
            status,
            elapsed,
        } => {
            let millis = elapsed
                .map(|elapsed| format!(" {:>5} ms", elapsed.as_millis()))
                .unwrap_or_default();
            match status {
                PhaseStatus::Applied => Some(format!("  ✓ {name:<20}{millis}")),
                PhaseStatus::Undone => Some(format!("  ↺ {name:<20}{millis} undone")),
                PhaseStatus::Failed => Some(format!("  ✗ {name}")),
                _ => None,
            }
        }
        Progress::Log { level, message } if level != "info" => {
            Some(format!("    {level}: {message}"))
        }
        Progress::Log { .. } => None,
    }
}

/// A live display of a job's phases on stderr (for text output): on a terminal a spinner names the running phase
/// and each finished phase leaves a line; elsewhere (a pipe, a log file, CI) the same lines are printed, one per
/// phase, as each phase ends.
pub fn progress_display(json: bool) -> Option<(ProgressSink, ProgressBar)> {
    if json {
        return None;
    }
    if !std::io::stderr().is_terminal() {
        let sink: ProgressSink = Arc::new(|progress: &Progress| {
            if let Some(line) = progress_line(progress) {
                eprintln!("{line}");
            }
        });
        return Some((sink, ProgressBar::hidden()));
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(80));
    let shown = bar.clone();
    let sink: ProgressSink = Arc::new(move |progress: &Progress| {
        if let Progress::Phase { name, status, .. } = progress {
            match status {
                PhaseStatus::Running => shown.set_message(format!("{name}…")),
                PhaseStatus::Undoing => shown.set_message(format!("undoing {name}…")),
                _ => {}
            }
        }
        if let Some(line) = progress_line(progress) {
            shown.println(line);
        }
    });
    Some((sink, bar))
}

/// Milliseconds since the epoch as a timestamp for text output.
pub fn when(millis: Option<i64>) -> String {
    millis
        .map(tenantry_engine::format_millis)
        .unwrap_or_else(|| "-".into())
}
