//! The console's charts, as inline SVG: a funnel of horizontal bars, a
//! time-to-read histogram and a line chart of estimates against the wait.
//! Labels go through `escape`; sizes are in the viewBox's units, so a chart
//! scales with its box.

use std::fmt::Write as _;

use super::page::escape;
use crate::report::render::duration;

/// One bar of a funnel: its label, count and colour class (`f-…`).
pub struct Stage {
    pub label: String,
    pub value: i64,
    pub class: &'static str,
}

/// Horizontal bars, each as long as its count against the longest (or
/// `base`, when larger), with the count and its share of `base`.
pub fn funnel(title: &str, stages: &[Stage], base: i64) -> String {
    const W: f64 = 640.0;
    const LABEL: f64 = 210.0;
    const BAR: f64 = 300.0;
    const ROW: f64 = 26.0;
    let top = stages.iter().map(|s| s.value).max().unwrap_or(0).max(base);
    let h = ROW * stages.len() as f64 + 8.0;
    let mut out = format!(
        "<svg viewBox=\"0 0 {W} {h}\" role=\"img\" aria-label=\"{}\"><title>{}</title>",
        escape(title),
        escape(title)
    );
    for (i, s) in stages.iter().enumerate() {
        let y = 4.0 + ROW * i as f64;
        let len = if top > 0 {
            (s.value as f64 / top as f64 * BAR).max(if s.value > 0 { 2.0 } else { 0.0 })
        } else {
            0.0
        };
        let share = if base > 0 {
            format!(" · {:.1}%", s.value as f64 * 100.0 / base as f64)
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\" class=\"lbl\">{label}</text>\
             <rect x=\"{LABEL}\" y=\"{by}\" width=\"{BAR}\" height=\"16\" rx=\"3\" fill=\"#f0f2f5\"/>\
             <rect x=\"{LABEL}\" y=\"{by}\" width=\"{len:.1}\" height=\"16\" rx=\"3\" class=\"{class}\"/>\
             <text x=\"{vx}\" y=\"{ty}\" class=\"val\">{value}{share}</text>",
            lx = LABEL - 10.0,
            ty = y + 13.0,
            label = escape(&s.label),
            by = y + 1.0,
            class = s.class,
            vx = LABEL + BAR + 10.0,
            value = s.value,
        );
    }
    out.push_str("</svg>");
    out
}

/// Bars of reads by time-to-read bucket (`1m` … `1d`, `more`), in order.
pub fn histogram(title: &str, buckets: &[(&str, i64)]) -> String {
    const W: f64 = 520.0;
    const H: f64 = 170.0;
    const LEFT: f64 = 30.0;
    const RIGHT: f64 = 6.0;
    const TOP: f64 = 16.0;
    const BOTTOM: f64 = 140.0;
    let top = nice_max(buckets.iter().map(|(_, n)| *n as f64).fold(0.0, f64::max));
    let slot = (W - LEFT - RIGHT) / buckets.len().max(1) as f64;
    let mut out = format!(
        "<svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\"><title>{}</title>",
        escape(title),
        escape(title)
    );
    for k in 0..=2 {
        let v = top * k as f64 / 2.0;
        let y = BOTTOM - (BOTTOM - TOP) * k as f64 / 2.0;
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{x2}\" y1=\"{y}\" y2=\"{y}\" class=\"{cls}\"/>\
             <text x=\"{tx}\" y=\"{ty}\" text-anchor=\"end\" class=\"lbl\">{v}</text>",
            x2 = W - RIGHT,
            cls = if k == 0 { "axis" } else { "gridl" },
            tx = LEFT - 4.0,
            ty = y + 4.0,
            v = v.round() as i64,
        );
    }
    for (i, (name, n)) in buckets.iter().enumerate() {
        let x = LEFT + slot * i as f64;
        let bh = if top > 0.0 {
            *n as f64 / top * (BOTTOM - TOP)
        } else {
            0.0
        };
        let _ = write!(
            out,
            "<rect x=\"{bx:.1}\" y=\"{by:.1}\" width=\"{bw:.1}\" height=\"{bh:.1}\" rx=\"2\" class=\"f-read\"><title>{name}: {n}</title></rect>\
             <text x=\"{cx:.1}\" y=\"{ly}\" text-anchor=\"middle\" class=\"lbl\">{name}</text>",
            bx = x + slot * 0.15,
            by = BOTTOM - bh,
            bw = slot * 0.7,
            cx = x + slot / 2.0,
            ly = BOTTOM + 14.0,
            name = escape(name),
        );
        if *n > 0 {
            let _ = write!(
                out,
                "<text x=\"{cx:.1}\" y=\"{vy:.1}\" text-anchor=\"middle\" class=\"val\">{n}</text>",
                cx = x + slot / 2.0,
                vy = BOTTOM - bh - 4.0,
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// One line of a line chart: a value for each wait, a name and a colour
/// class (`l-…`).
pub struct Series {
    pub name: &'static str,
    pub class: &'static str,
    pub dashed: bool,
    pub values: Vec<f64>,
}

/// Lines of estimates against the wait (on a log scale), the current wait
/// marked `now` and the one asked for marked `asked`.
pub fn lines(
    title: &str,
    waits: &[i64],
    series: &[Series],
    now: i64,
    asked: Option<i64>,
) -> String {
    const W: f64 = 640.0;
    const H: f64 = 250.0;
    const LEFT: f64 = 44.0;
    const RIGHT: f64 = 16.0;
    const TOP: f64 = 22.0;
    const BOTTOM: f64 = 212.0;
    let log = |ms: i64| (ms.max(60_000) as f64).ln();
    let (lo, hi) = waits.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &w| {
        (lo.min(log(w)), hi.max(log(w)))
    });
    let x = |ms: i64| {
        if hi > lo {
            LEFT + (log(ms) - lo) / (hi - lo) * (W - LEFT - RIGHT)
        } else {
            (LEFT + W - RIGHT) / 2.0
        }
    };
    let top = nice_max(
        series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .fold(0.0, f64::max),
    );
    let y = |v: f64| {
        if top > 0.0 {
            BOTTOM - v / top * (BOTTOM - TOP)
        } else {
            BOTTOM
        }
    };
    let mut out = format!(
        "<svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\"><title>{}</title>",
        escape(title),
        escape(title)
    );
    for k in 0..=4 {
        let v = top * k as f64 / 4.0;
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{x2}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" class=\"{cls}\"/>\
             <text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\" class=\"lbl\">{v}</text>",
            x2 = W - RIGHT,
            yy = y(v),
            cls = if k == 0 { "axis" } else { "gridl" },
            tx = LEFT - 6.0,
            ty = y(v) + 4.0,
            v = v.round() as i64,
        );
    }
    for (ms, word) in [(Some(now), "now"), (asked.filter(|a| *a != now), "asked")] {
        let Some(ms) = ms else { continue };
        let _ = write!(
            out,
            "<line x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{TOP}\" y2=\"{BOTTOM}\" stroke=\"#8792a2\" stroke-dasharray=\"3 3\"/>\
             <text x=\"{xx:.1}\" y=\"{ty}\" text-anchor=\"middle\" class=\"lbl\">{word}</text>",
            xx = x(ms),
            ty = TOP - 8.0,
        );
    }
    let mut last_label = f64::MIN;
    for &w in waits {
        let xx = x(w);
        if xx - last_label < 30.0 {
            continue;
        }
        last_label = xx;
        let _ = write!(
            out,
            "<text x=\"{xx:.1}\" y=\"{ty}\" text-anchor=\"middle\" class=\"lbl\">{}</text>",
            escape(&duration(w)),
            ty = BOTTOM + 16.0,
        );
    }
    let _ = write!(
        out,
        "<text x=\"{cx}\" y=\"{ty}\" text-anchor=\"middle\" class=\"lbl\">wait before the next step</text>",
        cx = (LEFT + W - RIGHT) / 2.0,
        ty = H - 4.0,
    );
    for s in series {
        let points: Vec<String> = waits
            .iter()
            .zip(&s.values)
            .map(|(&w, &v)| format!("{:.1},{:.1}", x(w), y(v)))
            .collect();
        let dash = if s.dashed {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        let _ = write!(
            out,
            "<polyline points=\"{}\" fill=\"none\" stroke-width=\"2.2\" class=\"{}\"{dash}/>",
            points.join(" "),
            s.class
        );
        for (&w, &v) in waits.iter().zip(&s.values) {
            let _ = write!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.2\" fill=\"#fff\" stroke-width=\"2\" class=\"{}\"><title>{}: {:.0} {}</title></circle>",
                x(w),
                y(v),
                s.class,
                escape(&duration(w)),
                v,
                s.name
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// A round number at or above `v` for an axis's top: 1, 2 or 5 times a
/// power of ten (at least 1).
fn nice_max(v: f64) -> f64 {
    if v <= 1.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * p {
            return m * p;
        }
    }
    10.0 * p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(40.0), 50.0);
        assert_eq!(nice_max(120.0), 200.0);
    }

    #[test]
    fn chart_labels_are_escaped() {
        let svg = funnel(
            "<b>",
            &[Stage {
                label: "<script>x</script>".into(),
                value: 3,
                class: "f-sent",
            }],
            3,
        );
        assert!(!svg.contains("<script>") && !svg.contains("<b>"), "{svg}");
        let svg = histogram("seg \"x\"", &[("1m", 2), ("more", 0)]);
        assert!(svg.contains("seg &quot;x&quot;"), "{svg}");
    }
}
