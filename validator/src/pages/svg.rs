//! Small inline SVG charts, drawn by hand: a line chart of named series and a reliability
//! (calibration) chart.
//!
//! Owns the geometry (data to pixels), the number formats inside the SVG and the escaping of
//! every text it writes, so that a chart is safe to insert into a page as is. It must not read
//! the store or know what a miner is: it draws numbers it is given.

use std::fmt::Write as _;

/// The drawing area of every chart, in SVG user units; the `viewBox` scales it to the screen.
const WIDTH: f64 = 640.0;
/// Height of the line chart.
const LINE_HEIGHT: f64 = 300.0;
/// Side of the reliability chart's square plot area.
const SQUARE: f64 = 300.0;
/// Margins around the plot area: room for the axes' labels.
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 40.0;

/// Colours of the series, in order; the first is the miner's.
const PALETTE: [&str; 6] = [
    "#1f5fbf", "#c0392b", "#27864a", "#8e44ad", "#d68910", "#5d6d7e",
];

/// A linear map from a data interval onto a pixel interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    /// The data interval `(low, high)`.
    pub domain: (f64, f64),
    /// The pixel interval the domain maps to, in the same order (may be decreasing).
    pub range: (f64, f64),
}

impl Scale {
    /// The pixel of `value`; a degenerate domain maps everything to the middle of the range.
    #[must_use]
    pub fn map(&self, value: f64) -> f64 {
        let (d0, d1) = self.domain;
        let (r0, r1) = self.range;
        let span = d1 - d0;
        if !span.is_finite() || span.abs() < f64::EPSILON {
            return (r0 + r1) / 2.0;
        }
        r0 + (value - d0) / span * (r1 - r0)
    }
}

/// One named line of a [`LineChart`].
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its name in the legend (escaped when drawn).
    pub name: String,
    /// Its points `(x, y)`, in increasing `x`; non-finite points are skipped.
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (the reference series) rather than solid (the miner).
    pub dashed: bool,
}

/// A line chart of several series over a shared x axis.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    /// What the chart shows, for screen readers (escaped).
    pub title: String,
    /// The series, the first drawn on top.
    pub series: Vec<Series>,
    /// Labels under the x axis at the given x values (escaped).
    pub x_ticks: Vec<(f64, String)>,
    /// A horizontal reference line, e.g. 0.25 (always saying 0.5), with its label.
    pub guide: Option<(f64, String)>,
}

/// One bin of a reliability chart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bin {
    /// Lower edge of the bin, inclusive.
    pub low: f64,
    /// Upper edge, exclusive (inclusive for the last bin).
    pub high: f64,
    /// Forecasts in the bin.
    pub count: usize,
    /// Their mean prediction; `None` for an empty bin.
    pub mean_prediction: Option<f64>,
    /// The share of their events that resolved to 1; `None` for an empty bin.
    pub observed: Option<f64>,
}

/// Ten bins of width 0.1 over [0, 1] of `(prediction, outcome)` pairs, outcome 0 or 1. A
/// prediction outside [0, 1] or not finite is left out (scored predictions never are).
#[must_use]
pub fn calibration_bins(pairs: &[(f64, f64)]) -> Vec<Bin> {
    const BINS: usize = 10;
    let mut sums = [(0usize, 0.0f64, 0.0f64); BINS];
    for &(prediction, outcome) in pairs {
        if !(0.0..=1.0).contains(&prediction) {
            continue;
        }
        // Truncation is the binning; the top edge 1.0 belongs to the last bin.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let index = ((prediction * 10.0).floor() as usize).min(BINS - 1);
        let (count, predicted, observed) = &mut sums[index];
        *count += 1;
        *predicted += prediction;
        *observed += outcome;
    }
    sums.iter()
        .enumerate()
        .map(|(index, &(count, predicted, observed))| {
            #[allow(clippy::cast_precision_loss)]
            let (low, n) = (index as f64 / 10.0, count as f64);
            Bin {
                low,
                high: low + 0.1,
                count,
                mean_prediction: (count > 0).then(|| predicted / n),
                observed: (count > 0).then(|| observed / n),
            }
        })
        .collect()
}

/// At most `max` of `points`, evenly spaced by index, the first and the last always kept: a
/// long history stays a small chart.
#[must_use]
pub fn downsample<T: Clone>(points: &[T], max: usize) -> Vec<T> {
    if points.len() <= max {
        return points.to_vec();
    }
    if max <= 1 {
        return points.last().cloned().into_iter().collect();
    }
    let last = points.len() - 1;
    (0..max)
        .map(|i| points[i * last / (max - 1)].clone())
        .collect()
}

/// The mean of the last `window` values (fewer at the start) after each value.
#[must_use]
pub fn rolling_means(values: &[f64], window: usize) -> Vec<f64> {
    let window = window.max(1);
    (0..values.len())
        .map(|end| {
            let start = (end + 1).saturating_sub(window);
            let slice = &values[start..=end];
            // Summed afresh in order, as scoring sums its window, so that the last point equals
            // the leaderboard's mean to the last bit.
            #[allow(clippy::cast_precision_loss)]
            let n = slice.len() as f64;
            slice.iter().sum::<f64>() / n
        })
        .collect()
}

/// `text` with the five characters that matter in XML and HTML replaced by entities.
#[must_use]
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// A coordinate as written in the SVG: one decimal is finer than a pixel.
fn px(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.1}")
    } else {
        "0.0".to_owned()
    }
}

/// A value on an axis: short, with as many decimals as the step needs.
fn tick_label(value: f64) -> String {
    format!("{value:.2}")
}

/// The line chart as an `<svg>` element. The y axis runs from 0 to a round value above every
/// point (at least 0.3, at most 1), since the series are Brier scores; an empty chart says
/// there is nothing to draw yet.
#[must_use]
pub fn line_chart(chart: &LineChart) -> String {
    let finite = |&&(x, y): &&(f64, f64)| x.is_finite() && y.is_finite();
    let all: Vec<(f64, f64)> = chart
        .series
        .iter()
        .flat_map(|series| series.points.iter().filter(finite).copied())
        .collect();
    let height = TOP + LINE_HEIGHT + BOTTOM;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart line-chart" viewBox="0 0 {w} {h}" role="img" aria-label="{title}" xmlns="http://www.w3.org/2000/svg"><title>{title}</title>"#,
        w = px(WIDTH),
        h = px(height),
        title = escape(&chart.title),
    );
    if all.is_empty() {
        let _ = write!(
            svg,
            r#"<text x="{x}" y="{y}" text-anchor="middle" class="empty">No resolved events yet.</text></svg>"#,
            x = px(WIDTH / 2.0),
            y = px(height / 2.0),
        );
        return svg;
    }
    let x_low = all.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x_high = all.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    let y_max = all.iter().map(|p| p.1).fold(0.0, f64::max);
    let y_top = ((y_max * 10.0).ceil() / 10.0).clamp(0.3, 1.0);
    let x_scale = Scale {
        domain: (x_low, x_high),
        range: (LEFT, WIDTH - RIGHT),
    };
    let y_scale = Scale {
        domain: (0.0, y_top),
        range: (TOP + LINE_HEIGHT, TOP),
    };
    axes(&mut svg, &x_scale, &y_scale, y_top, 5);
    for (x, label) in &chart.x_ticks {
        let _ = write!(
            svg,
            r#"<text x="{x}" y="{y}" text-anchor="middle" class="tick">{label}</text>"#,
            x = px(x_scale.map(*x)),
            y = px(TOP + LINE_HEIGHT + 16.0),
            label = escape(label),
        );
    }
    if let Some((value, label)) = &chart.guide {
        let y = px(y_scale.map(*value));
        let _ = write!(
            svg,
            r#"<line x1="{l}" y1="{y}" x2="{r}" y2="{y}" class="guide"/><text x="{r}" y="{ty}" text-anchor="end" class="tick">{label}</text>"#,
            l = px(LEFT),
            r = px(WIDTH - RIGHT),
            ty = px(y_scale.map(*value) - 4.0),
            label = escape(label),
        );
    }
    // Drawn in reverse so that the first series (the miner) ends on top.
    for (index, series) in chart.series.iter().enumerate().rev() {
        let points: Vec<String> = series
            .points
            .iter()
            .filter(finite)
            .map(|&(x, y)| format!("{},{}", px(x_scale.map(x)), px(y_scale.map(y))))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline class="series" data-series="{name}" data-points="{n}" fill="none" stroke="{colour}" stroke-width="{width}"{dash} points="{points}"/>"#,
            name = escape(&series.name),
            n = points.len(),
            colour = PALETTE[index % PALETTE.len()],
            width = if series.dashed { "1.5" } else { "2" },
            dash = if series.dashed {
                r#" stroke-dasharray="5 3""#
            } else {
                ""
            },
            points = points.join(" "),
        );
    }
    legend(&mut svg, &chart.series, height);
    svg.push_str("</svg>");
    svg
}

/// The legend under the x axis's labels, one entry per series.
fn legend(svg: &mut String, series: &[Series], height: f64) {
    let y = height - 6.0;
    let mut x = LEFT;
    for (index, series) in series.iter().enumerate() {
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="{ry}" width="10" height="3" fill="{colour}"/><text x="{tx}" y="{y}" class="legend">{name}</text>"#,
            x = px(x),
            ry = px(y - 4.0),
            tx = px(x + 14.0),
            y = px(y),
            colour = PALETTE[index % PALETTE.len()],
            name = escape(&series.name),
        );
        // Names are laid out by their length in characters: no font metrics without a browser.
        #[allow(clippy::cast_precision_loss)]
        let advance = 24.0 + 6.5 * series.name.chars().count().min(40) as f64;
        x += advance;
    }
}

/// The plot's frame, the y axis's gridlines with labels, from 0 to `y_top` in `steps`.
fn axes(svg: &mut String, x_scale: &Scale, y_scale: &Scale, y_top: f64, steps: u32) {
    let (left, right) = x_scale.range;
    let (bottom, top) = y_scale.range;
    let _ = write!(
        svg,
        r#"<rect x="{x}" y="{y}" width="{w}" height="{h}" class="frame" fill="none"/>"#,
        x = px(left),
        y = px(top),
        w = px(right - left),
        h = px(bottom - top),
    );
    for step in 0..=steps {
        let value = y_top * f64::from(step) / f64::from(steps);
        let y = px(y_scale.map(value));
        let _ = write!(
            svg,
            r#"<line x1="{l}" y1="{y}" x2="{r}" y2="{y}" class="grid"/><text x="{tx}" y="{ty}" text-anchor="end" class="tick">{label}</text>"#,
            l = px(left),
            r = px(right),
            tx = px(left - 4.0),
            ty = px(y_scale.map(value) + 4.0),
            label = tick_label(value),
        );
    }
}

/// The reliability chart of `bins` as an `<svg>` element: the diagonal (perfect calibration),
/// and one dot per non-empty bin at (mean prediction, observed frequency), its area growing
/// with its count, which is written beside it.
#[must_use]
pub fn reliability_chart(title: &str, bins: &[Bin]) -> String {
    let width = LEFT + SQUARE + RIGHT + 8.0;
    let height = TOP + SQUARE + BOTTOM;
    let x_scale = Scale {
        domain: (0.0, 1.0),
        range: (LEFT, LEFT + SQUARE),
    };
    let y_scale = Scale {
        domain: (0.0, 1.0),
        range: (TOP + SQUARE, TOP),
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart reliability-chart" viewBox="0 0 {w} {h}" role="img" aria-label="{title}" xmlns="http://www.w3.org/2000/svg"><title>{title}</title>"#,
        w = px(width),
        h = px(height),
        title = escape(title),
    );
    axes(&mut svg, &x_scale, &y_scale, 1.0, 5);
    for step in 0..=5u32 {
        let value = f64::from(step) / 5.0;
        let _ = write!(
            svg,
            r#"<text x="{x}" y="{y}" text-anchor="middle" class="tick">{label}</text>"#,
            x = px(x_scale.map(value)),
            y = px(TOP + SQUARE + 16.0),
            label = tick_label(value),
        );
    }
    let _ = write!(
        svg,
        r#"<line class="diagonal" x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke-dasharray="4 3"/><text x="{cx}" y="{cy}" text-anchor="middle" class="tick">mean prediction → observed frequency</text>"#,
        x0 = px(x_scale.map(0.0)),
        y0 = px(y_scale.map(0.0)),
        x1 = px(x_scale.map(1.0)),
        y1 = px(y_scale.map(1.0)),
        cx = px(LEFT + SQUARE / 2.0),
        cy = px(height - 6.0),
    );
    let max_count = bins.iter().map(|bin| bin.count).max().unwrap_or(0).max(1);
    let mut line = Vec::new();
    for bin in bins {
        let (Some(mean), Some(observed)) = (bin.mean_prediction, bin.observed) else {
            continue;
        };
        let (x, y) = (x_scale.map(mean), y_scale.map(observed));
        line.push(format!("{},{}", px(x), px(y)));
        #[allow(clippy::cast_precision_loss)]
        let radius = 3.0 + 7.0 * (bin.count as f64 / max_count as f64).sqrt();
        let _ = write!(
            svg,
            r#"<circle class="bin" cx="{cx}" cy="{cy}" r="{r}" data-count="{count}" data-mean="{mean}" data-observed="{observed}"><title>{low}–{high}: {count} forecasts, mean {mean_text}, observed {observed_text}</title></circle><text x="{tx}" y="{ty}" class="count">{count}</text>"#,
            cx = px(x),
            cy = px(y),
            r = px(radius),
            count = bin.count,
            low = tick_label(bin.low),
            high = tick_label(bin.high),
            mean_text = format_args!("{mean:.4}"),
            observed_text = format_args!("{observed:.4}"),
            tx = px(x + radius + 2.0),
            ty = px(y - 2.0),
        );
    }
    if line.len() > 1 {
        let _ = write!(
            svg,
            r#"<polyline class="calibration" fill="none" points="{}"/>"#,
            line.join(" ")
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_maps_ends_middle_and_reversed_ranges() {
        let scale = Scale {
            domain: (0.0, 1.0),
            range: (316.0, 16.0),
        };
        assert!((scale.map(0.0) - 316.0).abs() < 1e-12);
        assert!((scale.map(1.0) - 16.0).abs() < 1e-12);
        assert!((scale.map(0.25) - 241.0).abs() < 1e-12);
        let flat = Scale {
            domain: (5.0, 5.0),
            range: (10.0, 20.0),
        };
        assert!((flat.map(5.0) - 15.0).abs() < 1e-12);
    }

    #[test]
    fn bins_split_at_tenths_and_average_their_members() {
        let bins = calibration_bins(&[
            (0.01, 0.0),
            (0.05, 1.0),
            (0.1, 1.0),
            (0.99, 1.0),
            (1.0, 0.0),
            (f64::NAN, 1.0),
        ]);
        assert_eq!(bins.len(), 10);
        assert_eq!(bins[0].count, 2);
        assert!((bins[0].mean_prediction.unwrap_or(0.0) - 0.03).abs() < 1e-12);
        assert!((bins[0].observed.unwrap_or(0.0) - 0.5).abs() < 1e-12);
        assert_eq!(bins[1].count, 1);
        assert_eq!(bins[5].count, 0);
        assert_eq!(bins[5].mean_prediction, None);
        assert_eq!(bins[9].count, 2);
        assert!((bins[9].observed.unwrap_or(1.0) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn downsampling_keeps_the_ends_and_the_bound() {
        let points: Vec<usize> = (0..1000).collect();
        let kept = downsample(&points, 500);
        assert_eq!(kept.len(), 500);
        assert_eq!(kept.first(), Some(&0));
        assert_eq!(kept.last(), Some(&999));
        assert!(kept.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(downsample(&points[..3], 500), vec![0, 1, 2]);
        assert_eq!(downsample(&points, 1), vec![999]);
    }

    #[test]
    fn rolling_means_cover_at_most_the_window() {
        let means = rolling_means(&[1.0, 0.0, 0.5, 0.5], 2);
        assert_eq!(means, vec![1.0, 0.5, 0.25, 0.5]);
    }

    #[test]
    fn line_chart_places_points_on_the_frame() {
        let chart = LineChart {
            title: "t".to_owned(),
            series: vec![Series {
                name: "m".to_owned(),
                points: vec![(0.0, 0.0), (10.0, 0.3)],
                dashed: false,
            }],
            x_ticks: vec![],
            guide: None,
        };
        let svg = line_chart(&chart);
        // x from LEFT to WIDTH - RIGHT; y from 0 at TOP + LINE_HEIGHT to y_top = 0.3 at TOP.
        assert!(svg.contains(r#"data-points="2""#), "{svg}");
        assert!(svg.contains(r#"points="48.0,316.0 628.0,16.0""#), "{svg}");
    }

    #[test]
    fn reliability_chart_draws_one_dot_per_filled_bin_and_escapes_text() {
        let bins = calibration_bins(&[(0.25, 1.0), (0.35, 0.0), (0.35, 1.0)]);
        let svg = reliability_chart("<script>", &bins);
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
        // Bin 2: mean 0.25, observed 1 -> (48 + 75, 16).
        assert!(svg.contains(r#"cx="123.0" cy="16.0""#), "{svg}");
        // Bin 3: mean 0.35, observed 0.5 -> (48 + 105, 16 + 150).
        assert!(svg.contains(r#"cx="153.0" cy="166.0""#), "{svg}");
    }

    #[test]
    fn empty_line_chart_says_so_and_names_are_escaped() {
        let chart = LineChart {
            title: "a\"b".to_owned(),
            series: vec![Series {
                name: "<b>".to_owned(),
                points: vec![],
                dashed: true,
            }],
            x_ticks: vec![],
            guide: None,
        };
        let svg = line_chart(&chart);
        assert!(svg.contains("No resolved events yet."));
        assert!(svg.contains("a&quot;b"));
        assert!(!svg.contains("<b>"));
    }
}
