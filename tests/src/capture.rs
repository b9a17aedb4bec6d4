//! Packet captures with tcpdump, read back as raw frames.

use std::{
    fs,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use anyhow::{bail, Context, Result};

/// A running `tcpdump -w` in a namespace; stopped (and its file removed) on drop.
pub struct Capture {
    child: Option<Child>,
    path: PathBuf,
}

impl Capture {
    /// Starts capturing (the first 256 bytes of each frame: every header, and whole small
    /// frames) and returns once tcpdump reports it is listening.
    pub fn start(ns: &str, iface: &str, filter: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "{}.pcap",
            crate::netns::unique_tag(&format!("{ns}-{iface}-"))
        ));
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "tcpdump",
                "-i",
                iface,
                "-n",
                "-U",
                "--immediate-mode",
                "-s",
                "256",
                "-w",
            ])
            .arg(&path)
            .args(filter.split_whitespace())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting tcpdump")?;
        let stderr = child.stderr.take().context("tcpdump stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let cap = Capture {
            child: Some(child),
            path,
        };
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("listening on") => break,
                Some(Ok(_)) => continue,
                _ => bail!("tcpdump on {ns}/{iface} exited before listening"),
            }
        }
        // tcpdump writes nothing more to stderr until it exits; drain it so it never blocks.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(cap)
    }

    /// Stops tcpdump and returns the captured frames in order.
    pub fn stop(mut self) -> Result<Vec<Vec<u8>>> {
        self.finish()?;
        parse_pcap(&fs::read(&self.path).context("reading the capture")?)
    }

    /// Waits until `n` frames are captured (or `limit` passes), then stops tcpdump and
    /// returns every frame captured: a count above `n` stays visible to the caller.
    pub fn wait_for(self, n: usize, limit: std::time::Duration) -> Result<Vec<Vec<u8>>> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            let data = fs::read(&self.path).unwrap_or_default();
            // tcpdump -U writes whole packets, but a read may catch the file mid-write.
            if complete_frames(&data) >= n {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.stop()
    }

    /// Stops tcpdump and runs `tshark -r FILE args...` on the capture.
    pub fn stop_and_dissect(mut self, args: &[&str]) -> Result<String> {
        self.finish()?;
        let path = self.path.to_string_lossy().into_owned();
        let mut full = vec!["-r", path.as_str()];
        full.extend_from_slice(args);
        crate::cmd::run("tshark", &full)
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).ok();
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
        fs::remove_file(&self.path).ok();
    }
}

/// How many whole records a pcap file being written holds so far.
fn complete_frames(data: &[u8]) -> usize {
    let (mut n, mut off) = (0, 24);
    while off + 16 <= data.len() {
        let len =
            u32::from_le_bytes([data[off + 8], data[off + 9], data[off + 10], data[off + 11]]);
        off += 16 + len as usize;
        if off > data.len() {
            break;
        }
        n += 1;
    }
    n
}

/// The frames of a classic pcap file (microsecond or nanosecond, either byte order).
pub fn parse_pcap(data: &[u8]) -> Result<Vec<Vec<u8>>> {
    if data.len() < 24 {
        bail!("capture file too short");
    }
    let magic = [data[0], data[1], data[2], data[3]];
    let le = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => bail!("not a pcap file"),
    };
    let u32_at = |off: usize| {
        let b = [data[off], data[off + 1], data[off + 2], data[off + 3]];
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let mut frames = Vec::new();
    let mut off = 24;
    while off + 16 <= data.len() {
        let len = u32_at(off + 8) as usize;
        let start = off + 16;
        if start + len > data.len() {
            bail!("truncated record in capture");
        }
        frames.push(data[start..start + len].to_vec());
        off = start + len;
    }
    Ok(frames)
}
