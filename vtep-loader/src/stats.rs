//! `vtep stats`: every verdict counter, summed over CPUs.

use anyhow::Result;
use serde_json::{Map, Value};

use crate::state::State;

pub fn show(st: &mut State, json: bool) -> Result<()> {
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
