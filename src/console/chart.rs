//! The status page's chart: rewrites per rule per minute over the last
//! hour, as inline SVG (no script, no external asset).
//!
//! One row per rule (the busiest [`MAX_ROWS`] rules, the rest summed into
//! one row): its id, a bar per minute on a scale shared by every row, and
//! its hour total. Rule ids are escaped like everything else.

use std::fmt::Write as _;
use std::sync::Arc;

use super::html::esc;
use super::recent::MINUTES;

/// Rules drawn as their own row.
pub const MAX_ROWS: usize = 8;

const LABEL_WIDTH: usize = 260;
const BAR_STEP: usize = 9;
const BAR_WIDTH: usize = 7;
const ROW_HEIGHT: usize = 26;
const TOTAL_WIDTH: usize = 70;

/// The chart for `per_rule` (as [`super::recent::Snapshot::per_rule`]:
/// busiest first, minutes oldest first). With no rewrite in the hour, a
/// sentence instead of an empty chart.
pub fn rewrites_per_minute(per_rule: &[(Arc<str>, [u32; MINUTES])]) -> String {
    if per_rule.is_empty() {
        return "<p class=\"muted\" id=\"chart-empty\">No rewrites in the last hour.</p>".into();
    }
    let mut rows: Vec<(String, [u32; MINUTES])> = per_rule
        .iter()
        .take(MAX_ROWS)
        .map(|(r, c)| (r.to_string(), *c))
        .collect();
    if per_rule.len() > MAX_ROWS {
        let mut rest = [0u32; MINUTES];
        for (_, counts) in &per_rule[MAX_ROWS..] {
            for (sum, n) in rest.iter_mut().zip(counts) {
                *sum = sum.saturating_add(*n);
            }
        }
        rows.push((format!("{} more rules", per_rule.len() - MAX_ROWS), rest));
    }
    let peak = rows
        .iter()
        .flat_map(|(_, c)| c.iter())
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    let width = LABEL_WIDTH + MINUTES * BAR_STEP + TOTAL_WIDTH;
    let height = rows.len() * ROW_HEIGHT + 22;
    let mut svg = String::with_capacity(4096 + rows.len() * MINUTES * 80);
    let _ = write!(
        svg,
        "<svg id=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" aria-labelledby=\"chart-title\">\
         <title id=\"chart-title\">Rewrites per rule per minute, last {MINUTES} minutes (peak {peak} in a minute)</title>"
    );
    for (i, (rule, counts)) in rows.iter().enumerate() {
        let top = i * ROW_HEIGHT;
        let base = top + ROW_HEIGHT - 6;
        let total: u64 = counts.iter().map(|&n| u64::from(n)).sum();
        let label = shorten(rule, 38);
        let _ = write!(
            svg,
            "<g class=\"row\"><text x=\"0\" y=\"{}\">{}</text>\
             <line class=\"axis\" x1=\"{LABEL_WIDTH}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\"/>",
            base - 4,
            esc(&label),
            LABEL_WIDTH + MINUTES * BAR_STEP,
        );
        for (minute, &n) in counts.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let h = ((n as usize * (ROW_HEIGHT - 8)).div_ceil(peak as usize)).max(1);
            let ago = MINUTES - 1 - minute;
            let _ = write!(
                svg,
                "<rect class=\"bar\" x=\"{}\" y=\"{}\" width=\"{BAR_WIDTH}\" height=\"{h}\">\
                 <title>{}: {n} {}</title></rect>",
                LABEL_WIDTH + minute * BAR_STEP,
                base - h,
                esc(rule),
                if ago == 0 {
                    "this minute".to_string()
                } else {
                    format!("{ago} min ago")
                },
            );
        }
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\">{total}</text></g>",
            LABEL_WIDTH + MINUTES * BAR_STEP + 8,
            base - 4
        );
    }
    let axis_y = rows.len() * ROW_HEIGHT + 14;
    let _ = write!(
        svg,
        "<text x=\"{LABEL_WIDTH}\" y=\"{axis_y}\" class=\"muted\">{MINUTES} min ago</text>\
         <text x=\"{}\" y=\"{axis_y}\" text-anchor=\"end\">now</text>\
         <text x=\"{}\" y=\"{axis_y}\">total</text></svg>",
        LABEL_WIDTH + MINUTES * BAR_STEP,
        LABEL_WIDTH + MINUTES * BAR_STEP + 8,
    );
    svg
}

/// `s` cut to `max` characters with an ellipsis.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('\u{2026}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(rule: &str, at: &[(usize, u32)]) -> (Arc<str>, [u32; MINUTES]) {
        let mut c = [0; MINUTES];
        for &(m, n) in at {
            c[m] = n;
        }
        (Arc::from(rule), c)
    }

    #[test]
    fn an_empty_hour_says_so() {
        assert!(rewrites_per_minute(&[]).contains("No rewrites"));
    }

    #[test]
    fn each_minute_with_rewrites_is_one_bar_and_the_total_is_shown() {
        let svg = rewrites_per_minute(&[row("user-unknown", &[(0, 2), (59, 5)])]);
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("user-unknown: 5 this minute"), "{svg}");
        assert!(svg.contains("user-unknown: 2 59 min ago"), "{svg}");
        assert!(svg.contains(">7</text>"), "{svg}");
    }

    #[test]
    fn rules_past_the_row_limit_are_summed_into_one_row() {
        let rows: Vec<_> = (0..MAX_ROWS + 3)
            .map(|i| row(&format!("r{i}"), &[(10, 1)]))
            .collect();
        let svg = rewrites_per_minute(&rows);
        assert_eq!(svg.matches("class=\"row\"").count(), MAX_ROWS + 1);
        assert!(svg.contains("3 more rules"));
        assert!(svg.contains(">3</text>"), "the summed row's total: {svg}");
    }

    #[test]
    fn rule_ids_are_escaped() {
        let svg = rewrites_per_minute(&[row("<script>x</script>", &[(1, 1)])]);
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
    }
}
