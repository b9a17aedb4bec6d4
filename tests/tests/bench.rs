//! Benchmarks are not tests: this only checks that the quick bench completes and writes
//! well-formed results with every metric present for every topology and program.

use std::fs;

use anyhow::{Context, Result};
use serde_json::Value;
use vtep_testbed::{bench, netns::unique_tag};

const TOPOLOGIES: [&str; 7] = [
    "plain",
    "floor",
    "kernel",
    "vtep_tc",
    "vtep_xdp",
    "kernel_v6",
    "vtep_v6",
];
const METRICS: [&str; 4] = [
    "tcp_1_stream_gbits",
    "tcp_4_streams_gbits",
    "udp_64b_rx_pps",
    "ping_flood_rtt_us",
];
const PROGRAMS: [&str; 4] = ["encap", "decap_tc", "decap_xdp", "arp_reply"];
const FDB_SIZES: [&str; 2] = ["fdb_10", "fdb_1000000"];

/// A measured quantity: one value per run, and a median, or errors saying why not.
fn check_series(what: &str, s: &Value, runs: usize) {
    let values = s["runs"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no runs in {s}"));
    assert_eq!(values.len(), runs, "{what}: one value per run");
    assert!(
        values
            .iter()
            .all(|v| v.is_null() || v.as_f64().is_some_and(|v| v.is_finite() && v > 0.0)),
        "{what}: {s}"
    );
    let errors = s["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no errors list in {s}"));
    match s["median"].as_f64() {
        Some(m) => assert!(m.is_finite() && m > 0.0, "{what}: median {m}"),
        None => assert!(
            s["median"].is_null() && !errors.is_empty(),
            "{what}: no median and no error: {s}"
        ),
    }
}

#[test]
fn quick_bench_writes_every_metric_for_every_topology_and_program() -> Result<()> {
    let out = std::env::temp_dir().join(unique_tag("vtep-bench"));
    let result = bench::run(true, true, &out);
    let json = fs::read_to_string(out.join("bench.json")).context("reading bench.json");
    let svg = fs::read_to_string(out.join("bench.svg")).context("reading bench.svg");
    fs::remove_dir_all(&out).ok();
    let report = result?;
    let json: Value = serde_json::from_str(&json?).context("bench.json is not JSON")?;
    let runs = json["plan"]["runs"].as_u64().context("plan.runs")? as usize;
    assert_eq!(runs, 1, "--quick is one run");

    for t in TOPOLOGIES {
        for m in METRICS {
            let entry = &json["topologies"][t]["metrics"][m];
            check_series(&format!("{t} {m}"), entry, runs);
            assert!(
                entry["unit"].is_string()
                    && entry.get("vs_kernel").is_some()
                    && entry.get("vs_plain").is_some()
            );
        }
    }
    // The references do not depend on vtep: failing there is the harness's fault.
    for t in ["plain", "floor", "kernel", "kernel_v6"] {
        for m in METRICS {
            assert!(
                json["topologies"][t]["metrics"][m]["median"].is_f64(),
                "{t} {m}: {}",
                report.table()
            );
        }
        assert!(json["topologies"][t]["metrics"][METRICS[0]]["vs_kernel"].is_f64());
    }
    for p in PROGRAMS {
        for n in FDB_SIZES {
            check_series(&format!("{p} {n}"), &json["programs"][p][n], runs);
        }
    }
    for w in ["vtep", "kernel"] {
        assert!(
            json["batch"][w]["median"].as_f64().is_some_and(|v| v > 0.0),
            "batch {w}: {}",
            report.table()
        );
    }
    let svg = svg?;
    assert!(
        svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
        "bench.svg is not an SVG document"
    );
    Ok(())
}
