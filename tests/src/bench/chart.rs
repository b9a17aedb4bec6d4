//! The bench as a picture: grouped bars of each topology's median over the kernel's, and
//! each program's cost with a small and a large FDB. Plain SVG, no dependencies.

use std::fmt::Write as _;

use super::{
    program::{Program, FDB_SIZES},
    report::Report,
    traffic::{Metric, Topology},
};

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 430.0;
const PLOT_TOP: f64 = 80.0;
const PLOT_BOTTOM: f64 = 340.0;
const COLORS: [&str; 7] = [
    "#9e9e9e", "#bab0ac", "#4e79a7", "#f28e2b", "#59a14f", "#76b7b2", "#e15759",
];

/// One panel of grouped bars.
struct Panel {
    left: f64,
    width: f64,
    title: String,
    /// Bar names, one colour each, in the order of each group's values.
    series: Vec<String>,
    groups: Vec<(String, Vec<Option<f64>>)>,
    /// A dashed horizontal line and its label.
    reference: (f64, String),
}

pub fn svg(report: &Report) -> String {
    let ratios = Panel {
        left: 70.0,
        width: 500.0,
        title: "median vs kernel (bridge + vxlan = 1.0)".into(),
        series: Topology::ALL.iter().map(|t| t.key().to_string()).collect(),
        groups: Metric::ALL
            .iter()
            .map(|&m| {
                let better = if m.higher_is_better() {
                    "higher is better"
                } else {
                    "lower is better"
                };
                let values = Topology::ALL
                    .iter()
                    .map(|&t| report.ratio(t, m, t.kernel()))
                    .collect();
                (format!("{}|{better}", m.label()), values)
            })
            .collect(),
        reference: (1.0, "kernel".into()),
    };
    let costs = Panel {
        left: 660.0,
        width: 290.0,
        title: "program cost, ns/packet (lower is better)".into(),
        series: FDB_SIZES.iter().map(|n| format!("FDB {n}")).collect(),
        groups: Program::ALL
            .iter()
            .map(|&p| {
                (
                    p.key().to_string(),
                    FDB_SIZES
                        .iter()
                        .map(|&n| report.program_median(p, n))
                        .collect(),
                )
            })
            .collect(),
        reference: (100.0, "100 ns".into()),
    };
    let mut s = String::new();
    writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    ).ok();
    writeln!(
        s,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    )
    .ok();
    writeln!(
        s,
        r#"<text x="20" y="26" font-size="16" font-weight="bold">vtep bench: medians of {} run(s)</text>"#,
        report.plan.runs
    ).ok();
    draw(&mut s, &ratios);
    draw(&mut s, &costs);
    writeln!(
        s,
        r##"<text x="20" y="{}" font-size="11" fill="#555">Measured in turn on one shared machine: compare ratios, not absolute values. n/a: the measurement failed (errors in bench.json).</text>"##,
        HEIGHT - 14.0
    ).ok();
    s.push_str("</svg>\n");
    s
}

fn draw(s: &mut String, p: &Panel) {
    let max = p
        .groups
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .fold(p.reference.0, |a, &b| a.max(b));
    let top = nice_ceiling(max * 1.1);
    let y = |v: f64| PLOT_BOTTOM - (v / top) * (PLOT_BOTTOM - PLOT_TOP);
    writeln!(
        s,
        r#"<text x="{}" y="52" font-size="14">{}</text>"#,
        p.left,
        escape(&p.title)
    )
    .ok();
    for (i, name) in p.series.iter().enumerate() {
        let x = p.left + i as f64 * 90.0;
        writeln!(
            s,
            r#"<rect x="{x}" y="60" width="10" height="10" fill="{}"/>"#,
            COLORS[i % COLORS.len()]
        )
        .ok();
        writeln!(
            s,
            r#"<text x="{}" y="69">{}</text>"#,
            x + 14.0,
            escape(name)
        )
        .ok();
    }
    let divisions = divisions(top);
    for k in 0..=divisions {
        let v = top * k as f64 / divisions as f64;
        writeln!(
            s,
            r##"<line x1="{}" x2="{}" y1="{y}" y2="{y}" stroke="#e0e0e0"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            p.left,
            p.left + p.width,
            p.left - 6.0,
            y(v) + 4.0,
            short(v),
            y = y(v)
        ).ok();
    }
    let group_w = p.width / p.groups.len() as f64;
    let bar_w = (group_w * 0.8) / p.series.len() as f64;
    for (g, (label, values)) in p.groups.iter().enumerate() {
        let gx = p.left + g as f64 * group_w + group_w * 0.1;
        for (i, v) in values.iter().enumerate() {
            let x = gx + i as f64 * bar_w;
            let cx = x + bar_w / 2.0;
            match v {
                Some(v) => {
                    writeln!(
                        s,
                        r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"/><text x="{cx:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"#,
                        y(*v),
                        bar_w - 2.0,
                        PLOT_BOTTOM - y(*v),
                        COLORS[i % COLORS.len()],
                        y(*v) - 3.0,
                        short(*v)
                    ).ok();
                }
                None => {
                    writeln!(
                        s,
                        r##"<text x="{cx:.1}" y="{:.1}" text-anchor="middle" font-size="10" fill="#c00">n/a</text>"##,
                        PLOT_BOTTOM - 4.0
                    ).ok();
                }
            }
        }
        for (line, text) in label.split('|').enumerate() {
            writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                gx + group_w * 0.4,
                PLOT_BOTTOM + 18.0 + line as f64 * 15.0,
                escape(text)
            )
            .ok();
        }
    }
    let (value, name) = &p.reference;
    writeln!(
        s,
        r##"<line x1="{}" x2="{}" y1="{ry:.1}" y2="{ry:.1}" stroke="#333" stroke-dasharray="4 3"/><text x="{}" y="{:.1}" font-size="10">{}</text>"##,
        p.left,
        p.left + p.width,
        p.left + p.width + 2.0,
        y(*value) + 3.0,
        escape(name),
        ry = y(*value)
    ).ok();
    writeln!(
        s,
        r##"<line x1="{l}" x2="{l}" y1="{PLOT_TOP}" y2="{PLOT_BOTTOM}" stroke="#333"/><line x1="{l}" x2="{}" y1="{PLOT_BOTTOM}" y2="{PLOT_BOTTOM}" stroke="#333"/>"##,
        p.left + p.width,
        l = p.left
    ).ok();
}

/// The smallest of 1, 2, 2.5 or 5 times a power of ten that is at least `v`.
fn nice_ceiling(v: f64) -> f64 {
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&c| c >= v)
        .unwrap_or(v)
}

/// Grid divisions that land on round values: 4 for a top of 1 or 2 (times a power of ten),
/// 5 for 2.5 or 5.
fn divisions(top: f64) -> usize {
    let mantissa = top / 10f64.powf(top.log10().floor());
    if (mantissa - 1.0).abs() < 1e-9 || (mantissa - 2.0).abs() < 1e-9 {
        4
    } else {
        5
    }
}

fn short(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice_ceiling(1.3), 2.0);
        assert_eq!(nice_ceiling(2.2), 2.5);
        assert_eq!(nice_ceiling(110.0), 200.0);
        assert_eq!(nice_ceiling(45.0), 50.0);
        assert_eq!(divisions(2.0), 4);
        assert_eq!(divisions(2.5), 5);
        assert_eq!(divisions(200.0), 4);
    }
}
