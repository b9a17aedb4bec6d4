//! `vtep stats`: every verdict counter, summed over CPUs.

use anyhow::Result;
use serde_json::{Map, Value};
use vtep_common::counter;

use crate::pins::Pins;

pub fn read(pins: &Pins) -> Result<Vec<(&'static str, u64)>> {
    let stats = pins.stats()?;
    let mut out = Vec::new();
    for (id, (name, _)) in counter::ALL.iter().enumerate() {
        let per_cpu = stats.get(&(id as u32), 0)?;
        out.push((*name, per_cpu.iter().sum()));
    }
    Ok(out)
}

pub fn show(pins: &Pins, json: bool) -> Result<()> {
    pins.require_up()?;
    let counters = read(pins)?;
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
