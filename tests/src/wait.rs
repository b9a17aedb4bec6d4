//! Waiting for a condition a user would check, rather than sleeping.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// Polls `cond` every 10 ms until it holds; returns how long that took, or fails naming
/// `what` after `timeout`.
pub fn until(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> Result<bool>,
) -> Result<Duration> {
    let start = Instant::now();
    loop {
        if cond()? {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!("{what}: not within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
