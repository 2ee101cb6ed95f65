//! Small inline SVG charts for the HTML report: horizontal bars, lines (with
//! linear or log axes) and a log-binned histogram. Each returns one `<svg>`
//! element as a string, with no script, no external reference and no font
//! it has to fetch. Not a plotting library: just what the report draws.

use std::fmt::Write as _;

const WIDTH: f64 = 660.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 76.0;
const RIGHT: f64 = 34.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 46.0;
/// Room for one legend entry, and the baseline of the legend row (line
/// charts start their plot below it).
const LEGEND_WIDTH: f64 = 80.0;
const LEGEND_Y: f64 = 38.0;
const LINE_TOP: f64 = 50.0;

/// Text for SVG and HTML alike.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One axis's range and scale.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Axis {
    min: f64,
    max: f64,
    log: bool,
}

impl Axis {
    /// The range of `values` (padded for log, from zero for linear).
    fn fit(values: impl Iterator<Item = f64>, log: bool) -> Axis {
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values.filter(|v| v.is_finite() && (!log || *v > 0.0)) {
            min = min.min(v);
            max = max.max(v);
        }
        if !min.is_finite() {
            return Axis {
                min: if log { 1.0 } else { 0.0 },
                max: if log { 10.0 } else { 1.0 },
                log,
            };
        }
        if log {
            let (lo, hi) = (
                10f64.powf(min.log10().floor()),
                10f64.powf(max.log10().ceil()),
            );
            Axis {
                min: lo,
                max: if hi > lo { hi } else { lo * 10.0 },
                log,
            }
        } else {
            let lo = min.min(0.0);
            let hi = if max > lo {
                nice_ceiling(max)
            } else {
                lo + 1.0
            };
            Axis {
                min: lo,
                max: hi,
                log,
            }
        }
    }

    /// `v` mapped onto `from..to` (pixels).
    fn map(&self, v: f64, from: f64, to: f64) -> f64 {
        let t = if self.log {
            let v = v.max(self.min);
            (v.log10() - self.min.log10()) / (self.max.log10() - self.min.log10())
        } else {
            (v - self.min) / (self.max - self.min)
        };
        from + t.clamp(0.0, 1.0) * (to - from)
    }

    fn ticks(&self) -> Vec<f64> {
        if self.log {
            let (lo, hi) = (
                self.min.log10().round() as i32,
                self.max.log10().round() as i32,
            );
            let decades = hi - lo;
            let mut out = Vec::new();
            for e in lo..=hi {
                let base = 10f64.powi(e);
                out.push(base);
                if decades <= 2 && e < hi {
                    out.push(base * 2.0);
                    out.push(base * 5.0);
                }
            }
            out
        } else {
            let step = nice_step((self.max - self.min) / 5.0);
            let mut out = Vec::new();
            let mut v = (self.min / step).ceil() * step;
            // At most a dozen ticks whatever the numbers.
            while v <= self.max + step * 1e-9 && out.len() < 12 {
                out.push(v);
                v += step;
            }
            out
        }
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let base = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * base)
        .find(|s| *s >= raw)
        .unwrap_or(base * 10.0)
}

/// The next 1/2/5 step at or above `v`, so the top tick closes the chart.
fn nice_ceiling(v: f64) -> f64 {
    let step = nice_step(v / 5.0);
    (v / step).ceil() * step
}

/// Whether positive `values` span so much (over 20x) that a linear axis
/// would flatten the small ones to nothing.
pub fn wants_log(values: impl Iterator<Item = f64>) -> bool {
    let (mut min, mut max) = (f64::INFINITY, 0.0f64);
    for v in values.filter(|v| *v > 0.0 && v.is_finite()) {
        min = min.min(v);
        max = max.max(v);
    }
    min.is_finite() && max / min > 20.0
}

/// A number for an axis: 1.5k, 2M, 0.25.
pub fn short_number(v: f64) -> String {
    let a = v.abs();
    let (value, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let text = if value.fract().abs() < 1e-9 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    };
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text}{suffix}")
}

fn open_svg(out: &mut String, title: &str, height: f64) {
    let _ = write!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {height}\" width=\"{WIDTH}\" height=\"{height}\" \
         role=\"img\" aria-label=\"{t}\"><title>{t}</title>\
         <text x=\"{LEFT}\" y=\"20\" class=\"ct\">{t}</text>",
        t = escape(title)
    );
}

/// One line per series.
pub struct Series {
    pub name: String,
    pub color: String,
    pub points: Vec<(f64, f64)>,
}

/// How a line chart is drawn.
pub struct LineChart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x_log: bool,
    pub y_log: bool,
    pub x_format: &'a dyn Fn(f64) -> String,
    pub y_format: &'a dyn Fn(f64) -> String,
    /// Fixed x ticks (and range) instead of fitted ones.
    pub x_ticks: Option<Vec<f64>>,
    /// Draw a dot on every point (for few points).
    pub dots: bool,
}

pub fn line_chart(chart: &LineChart<'_>, series: &[Series]) -> String {
    let all = || series.iter().flat_map(|s| s.points.iter());
    let mut x = Axis::fit(all().map(|p| p.0), chart.x_log);
    if let Some(ticks) = &chart.x_ticks {
        if let (Some(lo), Some(hi)) = (ticks.first(), ticks.last()) {
            x.min = *lo;
            x.max = *hi;
        }
    }
    let y = Axis::fit(all().map(|p| p.1), chart.y_log);
    let (x0, x1, y0, y1) = (LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, LINE_TOP);
    let mut out = String::new();
    open_svg(&mut out, chart.title, HEIGHT);
    // Grid and tick labels.
    for t in y.ticks() {
        let py = y.map(t, y0, y1);
        let _ = write!(
            out,
            "<line x1=\"{x0}\" x2=\"{x1}\" y1=\"{py:.1}\" y2=\"{py:.1}\" class=\"grid\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"tl\" text-anchor=\"end\">{}</text>",
            x0 - 6.0,
            py + 4.0,
            escape(&(chart.y_format)(t))
        );
    }
    let x_ticks = chart.x_ticks.clone().unwrap_or_else(|| x.ticks());
    for t in x_ticks {
        let px = x.map(t, x0, x1);
        let _ = write!(
            out,
            "<line x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{y0}\" y2=\"{y1}\" class=\"grid\"/>\
             <text x=\"{px:.1}\" y=\"{:.1}\" class=\"tl\" text-anchor=\"middle\">{}</text>",
            y0 + 16.0,
            escape(&(chart.x_format)(t))
        );
    }
    let _ = write!(
        out,
        "<line x1=\"{x0}\" x2=\"{x1}\" y1=\"{y0}\" y2=\"{y0}\" class=\"axis\"/>\
         <line x1=\"{x0}\" x2=\"{x0}\" y1=\"{y0}\" y2=\"{y1}\" class=\"axis\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" class=\"al\" text-anchor=\"middle\">{}</text>\
         <text x=\"14\" y=\"{:.1}\" class=\"al\" text-anchor=\"middle\" transform=\"rotate(-90 14 {:.1})\">{}</text>",
        (x0 + x1) / 2.0,
        HEIGHT - 8.0,
        escape(chart.x_label),
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0,
        escape(chart.y_label)
    );
    for (i, s) in series.iter().enumerate() {
        let points: Vec<String> = s
            .points
            .iter()
            .filter(|(px, py)| px.is_finite() && py.is_finite())
            .map(|(px, py)| format!("{:.1},{:.1}", x.map(*px, x0, x1), y.map(*py, y0, y1)))
            .collect();
        let color = escape(&s.color);
        let _ = write!(
            out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>",
            points.join(" ")
        );
        if chart.dots {
            for p in &points {
                if let Some((cx, cy)) = p.split_once(',') {
                    let _ = write!(
                        out,
                        "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"3\" fill=\"{color}\"/>"
                    );
                }
            }
        }
        // Legend in its own row under the title, so it never covers a line.
        let lx = x0 + LEGEND_WIDTH * i as f64;
        let _ = write!(
            out,
            "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"14\" height=\"5\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"tl\">{}</text>",
            LEGEND_Y - 5.0,
            lx + 18.0,
            LEGEND_Y,
            escape(&s.name)
        );
    }
    out.push_str("</svg>");
    out
}

/// One horizontal bar per row: label, value, colour.
pub fn bar_chart(
    title: &str,
    bars: &[(String, f64, String)],
    format: &dyn Fn(f64) -> String,
) -> String {
    let row = 30.0;
    let height = TOP + row * bars.len().max(1) as f64 + 12.0;
    let label_width = 110.0;
    let (x0, x1) = (label_width, WIDTH - 90.0);
    let max = bars
        .iter()
        .map(|b| b.1)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let mut out = String::new();
    open_svg(&mut out, title, height);
    for (i, (label, value, color)) in bars.iter().enumerate() {
        let y = TOP + row * i as f64;
        let w = if max > 0.0 && value.is_finite() {
            (value.max(0.0) / max) * (x1 - x0)
        } else {
            0.0
        };
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"tl\" text-anchor=\"end\">{}</text>\
             <rect x=\"{x0}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"20\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"tl\">{}</text>",
            x0 - 8.0,
            y + 14.0,
            escape(label),
            y,
            escape(color),
            x0 + w + 6.0,
            y + 14.0,
            escape(&format(*value))
        );
    }
    out.push_str("</svg>");
    out
}

/// A histogram of latencies: `buckets` are `[value µs, count]`, re-binned
/// into bins a quarter power of two wide, drawn on a log axis.
pub fn histogram(title: &str, color: &str, buckets: &[[u64; 2]]) -> String {
    let bins = log_bins(buckets);
    let x = Axis::fit(bins.iter().flat_map(|b| [b.0, b.1]), true);
    let total: u64 = bins.iter().map(|b| b.2).sum();
    let y = Axis::fit(
        bins.iter()
            .map(|b| 100.0 * b.2 as f64 / total.max(1) as f64),
        false,
    );
    let (x0, x1, y0, y1) = (LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP);
    let mut out = String::new();
    open_svg(&mut out, title, HEIGHT);
    for t in y.ticks() {
        let py = y.map(t, y0, y1);
        let _ = write!(
            out,
            "<line x1=\"{x0}\" x2=\"{x1}\" y1=\"{py:.1}\" y2=\"{py:.1}\" class=\"grid\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"tl\" text-anchor=\"end\">{}%</text>",
            x0 - 6.0,
            py + 4.0,
            short_number(t)
        );
    }
    for t in x.ticks() {
        let px = x.map(t, x0, x1);
        let _ = write!(
            out,
            "<text x=\"{px:.1}\" y=\"{:.1}\" class=\"tl\" text-anchor=\"middle\">{}</text>",
            y0 + 16.0,
            escape(&micros(t))
        );
    }
    for (lo, hi, count) in &bins {
        let (px0, px1) = (x.map(*lo, x0, x1), x.map(*hi, x0, x1));
        let py = y.map(100.0 * *count as f64 / total.max(1) as f64, y0, y1);
        let _ = write!(
            out,
            "<rect x=\"{px0:.1}\" y=\"{py:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{}–{}: {count}</title></rect>",
            (px1 - px0 - 0.5).max(0.5),
            (y0 - py).max(0.0),
            escape(color),
            escape(&micros(*lo)),
            escape(&micros(*hi))
        );
    }
    let _ = write!(
        out,
        "<line x1=\"{x0}\" x2=\"{x1}\" y1=\"{y0}\" y2=\"{y0}\" class=\"axis\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" class=\"al\" text-anchor=\"middle\">latency (log scale)</text>\
         <text x=\"14\" y=\"{:.1}\" class=\"al\" text-anchor=\"middle\" transform=\"rotate(-90 14 {:.1})\">share of samples</text></svg>",
        (x0 + x1) / 2.0,
        HEIGHT - 8.0,
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0
    );
    out
}

/// `[value, count]` buckets into `(low µs, high µs, count)` bins whose
/// edges are 2^(k/4) µs.
pub fn log_bins(buckets: &[[u64; 2]]) -> Vec<(f64, f64, u64)> {
    let mut bins: std::collections::BTreeMap<i64, u64> = std::collections::BTreeMap::new();
    for [value, count] in buckets {
        if *count == 0 {
            continue;
        }
        let v = (*value).max(1) as f64;
        let k = (v.log2() * 4.0).floor() as i64;
        *bins.entry(k).or_default() += count;
    }
    bins.into_iter()
        .map(|(k, count)| {
            let lo = 2f64.powf(k as f64 / 4.0);
            let hi = 2f64.powf((k + 1) as f64 / 4.0);
            (lo, hi, count)
        })
        .collect()
}

/// Microseconds for an axis: 50 µs, 1.5 ms, 2 s.
pub fn micros(us: f64) -> String {
    if us < 1000.0 {
        format!("{} µs", short_number(us))
    } else if us < 1_000_000.0 {
        format!("{} ms", short_number(us / 1000.0))
    } else {
        format!("{} s", short_number(us / 1e6))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn axes_fit_and_tick() {
        let lin = Axis::fit([3.0, 87.0].into_iter(), false);
        assert_eq!((lin.min, lin.max), (0.0, 100.0));
        assert_eq!(lin.ticks(), [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(lin.map(50.0, 0.0, 200.0), 100.0);
        let log = Axis::fit([30.0, 2000.0].into_iter(), true);
        assert_eq!((log.min, log.max), (10.0, 10_000.0));
        assert_eq!(log.ticks(), [10.0, 100.0, 1000.0, 10_000.0]);
        assert_eq!(log.map(100.0, 0.0, 300.0), 100.0);
        let empty = Axis::fit(std::iter::empty(), true);
        assert_eq!((empty.min, empty.max), (1.0, 10.0));
        // Zero and negatives cannot sit on a log axis.
        let skip = Axis::fit([0.0, -5.0, 50.0].into_iter(), true);
        assert_eq!((skip.min, skip.max), (10.0, 100.0));
    }

    #[test]
    fn wide_spreads_ask_for_a_log_axis() {
        assert!(wants_log([368.0, 140_000.0].into_iter()));
        assert!(!wants_log([368.0, 5_000.0, 0.0, -3.0].into_iter()));
        assert!(!wants_log(std::iter::empty()));
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(short_number(1500.0), "1.5k");
        assert_eq!(short_number(2_000_000.0), "2M");
        assert_eq!(short_number(0.25), "0.25");
        assert_eq!(short_number(40.0), "40");
        assert_eq!(micros(40.0), "40 µs");
        assert_eq!(micros(1500.0), "1.5 ms");
        assert_eq!(micros(2_500_000.0), "2.5 s");
    }

    #[test]
    fn bins_are_quarter_powers_of_two() {
        let bins = log_bins(&[[16, 3], [17, 1], [1000, 2], [5, 0]]);
        assert_eq!(bins.len(), 2);
        assert_eq!(bins[0], (16.0, 2f64.powf(4.25), 4));
        assert!(bins[1].0 <= 1000.0 && 1000.0 < bins[1].1);
        assert_eq!(bins[1].2, 2);
    }

    #[test]
    fn charts_are_single_svg_elements_with_their_data() {
        let bars = bar_chart(
            "pings/s",
            &[
                ("torpor".into(), 100.0, "#d9480f".into()),
                ("default <1>".into(), 50.0, "#1c7ed6".into()),
            ],
            &|v| format!("{v:.0}/s"),
        );
        assert!(bars.starts_with("<svg") && bars.ends_with("</svg>"));
        assert!(bars.contains(">100/s<") && bars.contains(">50/s<"));
        assert!(bars.contains("default &lt;1&gt;"));
        // The larger bar is twice the smaller.
        assert!(
            bars.contains("width=\"460.0\"") && bars.contains("width=\"230.0\""),
            "{bars}"
        );

        let lines = line_chart(
            &LineChart {
                title: "memory",
                x_label: "connections",
                y_label: "bytes",
                x_log: false,
                y_log: false,
                x_format: &|v| short_number(v),
                y_format: &|v| short_number(v),
                x_ticks: None,
                dots: true,
            },
            &[Series {
                name: "torpor".into(),
                color: "#d9480f".into(),
                points: vec![(1000.0, 500.0), (2000.0, 450.0)],
            }],
        );
        assert!(lines.contains("<polyline"));
        assert_eq!(lines.matches("<circle").count(), 2);
        assert!(lines.contains(">torpor<"));

        let hist = histogram("latency", "#d9480f", &[[40, 90], [45, 9], [2000, 1]]);
        assert!(hist.contains("<rect"));
        assert!(hist.contains("µs"));
        assert!(hist.contains(": 1</title>"));
    }
}
