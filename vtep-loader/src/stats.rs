//! `vtep stats`: every verdict counter, summed over CPUs; with `--prometheus`, the same in
//! Prometheus text with the tables' use and capacity (what the agent's `--metrics` serves),
//! for node_exporter's textfile collector where no agent runs.

use anyhow::{Context, Result};
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use serde_json::{Map, Value};
use vtep_common::counter;

use crate::state::{Access, State};

pub fn show(st: &mut State, json: bool, prometheus: bool) -> Result<()> {
    if prometheus {
        let mut registry = Registry::default();
        register(st, &mut registry)?;
        print!("{}", encoded(&registry)?);
        return Ok(());
    }
    let counters = st.tables()?.counters()?;
    if json {
        let obj: Map<String, Value> = counters
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::from(v)))
            .collect();
        println!("{}", Value::Object(obj));
    } else {
        let width = counters.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (name, value) in counters {
            println!("{name:<width$} {value}");
        }
    }
    Ok(())
}

type Labels = Vec<(&'static str, &'static str)>;

/// Adds the data path's counters, and the tables' use and capacity, to `r`.
pub fn register(st: &mut State, r: &mut Registry) -> Result<()> {
    let packets = Family::<Labels, Counter>::default();
    for (name, value) in st.tables()?.counters()? {
        packets
            .get_or_create(&vec![("verdict", name)])
            .inc_by(value);
    }
    // One family has one help text: the counter table's, verdict by verdict.
    let help: Vec<String> = counter::ALL
        .iter()
        .map(|(name, help)| format!("{name}: {help}"))
        .collect();
    r.register(
        "vtep_packets",
        format!("Frames by data-path verdict ({})", help.join("; ")),
        packets,
    );
    let used = st.table_use()?;
    let cap = st.tables()?.capacity;
    let entries = Family::<Labels, Gauge>::default();
    let capacity = Family::<Labels, Gauge>::default();
    for (table, n, size) in [
        ("fdb", used.fdb, cap.fdb),
        ("learned", used.learned, cap.learned),
        ("neigh", used.neigh, cap.neigh),
        ("ports", used.ports, cap.ports),
    ] {
        entries.get_or_create(&vec![("table", table)]).set(n as i64);
        capacity
            .get_or_create(&vec![("table", table)])
            .set(size as i64);
    }
    r.register("vtep_table_entries", "Entries in each table", entries);
    r.register(
        "vtep_table_capacity",
        "Most entries each table holds",
        capacity,
    );
    Ok(())
}

pub fn encoded(r: &Registry) -> Result<String> {
    let mut out = String::new();
    encode(&mut out, r).context("encoding metrics")?;
    Ok(out)
}

/// `r` and, when the host is up, the data path's metrics, as Prometheus text.
pub async fn prometheus(mut r: Registry) -> Result<String> {
    let mut st = State::open(Access::Read).await?;
    if st.is_up() {
        register(&mut st, &mut r)?;
    }
    encoded(&r)
}
