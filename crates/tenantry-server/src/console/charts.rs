//! Small charts drawn by the server as inline SVG, with no script and no chart library: the Jobs page's
//! provisioning times by plan and provisioning failures by error code over the last day. Each chart also says its
//! figures in words (`<title>` and `<desc>` for screen readers, labels on every bar for everyone).
//!
//! Bars are sized in percent of the chart's width and the text in pixels, so a chart fills a phone's width or a
//! wide panel without its labels shrinking or growing.

use super::layout::duration;
use maud::{html, Markup};

/// Height of one row: its label line, then its bar.
const ROW_HEIGHT: usize = 40;
/// Where a row's bar starts below the row's top, and how tall it is.
const BAR_TOP: usize = 18;
const BAR_HEIGHT: usize = 14;
/// The narrowest bar drawn for a value above zero, in percent, so a small value still shows.
const MIN_BAR_PERCENT: f64 = 0.5;

/// One plan's provisioning times over the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanTimes {
    pub plan: String,
    pub n_jobs: usize,
    pub p50_millis: i64,
    pub p95_millis: i64,
}

/// The nearest-rank percentile of durations sorted from shortest to longest: the smallest value that at least
/// `percent` of them do not exceed. The same definition at every size, so p95 of a few jobs is their longest.
fn percentile(sorted: &[i64], percent: usize) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (percent * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

/// The p50 and p95 of each plan's durations (plan, milliseconds), by plan name.
pub fn plan_times(durations: &[(String, i64)]) -> Vec<PlanTimes> {
    let mut by_plan: std::collections::BTreeMap<&str, Vec<i64>> = Default::default();
    for (plan, millis) in durations {
        by_plan.entry(plan.as_str()).or_default().push(*millis);
    }
    by_plan
        .into_iter()
        .map(|(plan, mut millis)| {
            millis.sort_unstable();
            PlanTimes {
                plan: if plan.is_empty() {
                    "no plan".to_owned()
                } else {
                    plan.to_owned()
                },
                n_jobs: millis.len(),
                p50_millis: percentile(&millis, 50),
                p95_millis: percentile(&millis, 95),
            }
        })
        .collect()
}

/// A bar's width in percent of the chart: `value` against the largest value shown.
fn bar_percent(value: i64, largest: i64) -> f64 {
    if value <= 0 || largest <= 0 {
        return 0.0;
    }
    (value as f64 / largest as f64 * 100.0).clamp(MIN_BAR_PERCENT, 100.0)
}

fn plural(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// One row of a bar chart: a label on the left and the figures on the right, above its bars (drawn in order, so
/// the first is the longest and the later ones lie on top of it).
struct Row {
    label: String,
    figures: String,
    /// (width in percent, CSS class).
    bars: Vec<(f64, &'static str)>,
}

/// The SVG of a list of rows, described for screen readers by `title` and `description`.
fn bar_chart(id: &str, title: &str, description: &str, rows: &[Row]) -> Markup {
    let height = rows.len() * ROW_HEIGHT;
    let title_id = format!("{id}-title");
    let description_id = format!("{id}-desc");
    html! {
        svg.chart id=(id) xmlns="http://www.w3.org/2000/svg" width="100%" height=(height) role="img"
            aria-labelledby={ (title_id) " " (description_id) } {
            title id=(title_id) { (title) }
            desc id=(description_id) { (description) }
            @for (index, row) in rows.iter().enumerate() {
                @let top = index * ROW_HEIGHT;
                g.chart-row data-label=(row.label) {
                    text.chart-label x="0" y=(top + 13) { (row.label) }
                    text.chart-figures x="100%" y=(top + 13) text-anchor="end" { (row.figures) }
                    rect.chart-track x="0" y=(top + BAR_TOP) width="100%" height=(BAR_HEIGHT) rx="3" {}
                    @for (percent, class) in &row.bars {
                        rect class=(class) x="0" y=(top + BAR_TOP) width={ (format!("{percent:.1}")) "%" }
                            height=(BAR_HEIGHT) rx="3" {}
                    }
                }
            }
        }
    }
}

/// Provisioning times by plan: for each plan a bar to its p95 with its p50 on top, and both figures in words.
pub fn provisioning_times_chart(times: &[PlanTimes]) -> Markup {
    let largest = times.iter().map(|plan| plan.p95_millis).max().unwrap_or(0);
    let rows: Vec<Row> = times
        .iter()
        .map(|plan| Row {
            label: plan.plan.clone(),
            figures: format!(
                "p50 {} · p95 {} · {}",
                duration(plan.p50_millis),
                duration(plan.p95_millis),
                plural(plan.n_jobs, "job", "jobs")
            ),
            bars: vec![
                (bar_percent(plan.p95_millis, largest), "chart-bar-p95"),
                (bar_percent(plan.p50_millis, largest), "chart-bar-p50"),
            ],
        })
        .collect();
    let description = times
        .iter()
        .map(|plan| {
            format!(
                "{}: half finished within {}, 95 in 100 within {}, over {}.",
                plan.plan,
                duration(plan.p50_millis),
                duration(plan.p95_millis),
                plural(plan.n_jobs, "job", "jobs")
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    html! {
        figure.chart-panel.panel {
            figcaption {
                h2 { "Provisioning time by plan" }
                p.chart-note.muted {
                    "Completed in the last 24 hours, first claim to end. "
                    span.chart-key { span.swatch.swatch-p50 {} "p50" }
                    " "
                    span.chart-key { span.swatch.swatch-p95 {} "p95" }
                }
            }
            @if times.is_empty() {
                p.chart-empty { "No provisioning finished in the last day." }
            } @else {
                (bar_chart("chart-times", "Provisioning time by plan, last 24 hours", &description, &rows))
            }
        }
    }
}

/// Provisioning failures by error code: a bar per code, the most common first, with its count.
pub fn failures_chart(failures: &[(String, i64)]) -> Markup {
    let largest = failures.iter().map(|(_, count)| *count).max().unwrap_or(0);
    let rows: Vec<Row> = failures
        .iter()
        .map(|(code, count)| Row {
            label: code.clone(),
            figures: plural(usize::try_from(*count).unwrap_or(0), "job", "jobs"),
            bars: vec![(bar_percent(*count, largest), "chart-bar-failure")],
        })
        .collect();
    let description = failures
        .iter()
        .map(|(code, count)| {
            format!(
                "{code}: {}.",
                plural(usize::try_from(*count).unwrap_or(0), "job", "jobs")
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    html! {
        figure.chart-panel.panel {
            figcaption {
                h2 { "Provisioning failures by error code" }
                p.chart-note.muted { "Failed or rolled back in the last 24 hours." }
            }
            @if failures.is_empty() {
                p.chart-empty { "No provisioning failed in the last day." }
            } @else {
                (bar_chart("chart-failures", "Provisioning failures by error code, last 24 hours", &description, &rows))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(percentile(&[], 50), 0);
        assert_eq!(percentile(&[7], 50), 7);
        assert_eq!(percentile(&[7], 95), 7);
        assert_eq!(percentile(&[1, 2], 50), 1);
        assert_eq!(percentile(&[1, 2], 95), 2);
        let hundred: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 50), 50);
        assert_eq!(percentile(&hundred, 95), 95);
    }

    #[test]
    fn plan_times_group_by_plan_in_name_order() {
        let durations = [
            ("starter".to_owned(), 3_000),
            ("pro".to_owned(), 9_000),
            ("starter".to_owned(), 1_000),
            ("".to_owned(), 5),
        ];
        assert_eq!(
            plan_times(&durations),
            vec![
                PlanTimes {
                    plan: "no plan".into(),
                    n_jobs: 1,
                    p50_millis: 5,
                    p95_millis: 5
                },
                PlanTimes {
                    plan: "pro".into(),
                    n_jobs: 1,
                    p50_millis: 9_000,
                    p95_millis: 9_000
                },
                PlanTimes {
                    plan: "starter".into(),
                    n_jobs: 2,
                    p50_millis: 1_000,
                    p95_millis: 3_000
                },
            ]
        );
    }

    #[test]
    fn charts_say_their_figures_and_escape_labels() {
        let times = plan_times(&[("pro".to_owned(), 1_500), ("starter".to_owned(), 500)]);
        let html = provisioning_times_chart(&times).into_string();
        assert!(html.contains("role=\"img\""), "{html}");
        assert!(html.contains("<title id=\"chart-times-title\">"), "{html}");
        assert!(html.contains("p50 1.5 s · p95 1.5 s · 1 job"), "{html}");
        assert!(
            html.contains("width=\"100.0%\""),
            "the longest p95 fills the row: {html}"
        );
        assert!(html.contains("width=\"33.3%\""), "{html}");
        let failures = failures_chart(&[("<E_X>".to_owned(), 2)]).into_string();
        assert!(failures.contains("&lt;E_X&gt;: 2 jobs."), "{failures}");
        assert!(!failures.contains("<E_X>"), "{failures}");
    }

    #[test]
    fn empty_charts_say_so() {
        assert!(provisioning_times_chart(&[])
            .into_string()
            .contains("No provisioning finished in the last day."));
        assert!(failures_chart(&[])
            .into_string()
            .contains("No provisioning failed in the last day."));
    }
}
