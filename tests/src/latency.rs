//! Round-trip latency the way the reference figures were taken: `ping -f`, total
//! time divided by the number of echoes. Ping's own average is printed in whole
//! microseconds, too coarse for a 3 us path.

use anyhow::{bail, Context, Result};

use crate::{cmd::in_ns, iperf::measurement_lock};

/// `ping -f -c COUNT` from `ns` to `dst`: microseconds per round trip. Fails when an echo
/// is lost (ping then exits non-zero), since a flood over a lossy path measures timeouts.
pub fn flood_rtt_us(ns: &str, dst: &str, count: u32) -> Result<f64> {
    let _exclusive = measurement_lock()?;
    let out = in_ns(
        ns,
        &[
            "ping",
            "-f",
            "-q",
            "-c",
            &count.to_string(),
            "-w",
            "60",
            dst,
        ],
    )?;
    let summary = out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .with_context(|| format!("no summary in ping's output: {out}"))?;
    let received = field_before(summary, " received")?;
    if received != f64::from(count) {
        bail!("ping -f received {received} of {count} echoes: {summary}");
    }
    let millis = summary
        .rsplit("time ")
        .next()
        .and_then(|t| t.strip_suffix("ms"))
        .and_then(|t| t.parse::<f64>().ok())
        .with_context(|| format!("no total time in {summary:?}"))?;
    Ok(millis * 1000.0 / f64::from(count))
}

/// The number just before `word` in ping's summary line.
fn field_before(line: &str, word: &str) -> Result<f64> {
    line.find(word)
        .and_then(|end| line[..end].rsplit([' ', ',']).next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no{word} count in {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::field_before;

    #[test]
    fn reads_the_received_count() {
        let line = "20000 packets transmitted, 19998 received, 0.01% packet loss, time 70ms";
        assert_eq!(field_before(line, " received").unwrap(), 19998.0);
    }
}
