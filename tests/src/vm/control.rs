//! The control channel: a shell on the VM's second serial port, reached through the unix
//! socket QEMU serves it on. A command is sent as one brace group with stdin from
//! /dev/null and stderr merged, followed by a marker line carrying a fresh sequence
//! number and the exit status, so output is read back up to exactly that marker.

use std::{
    io::{ErrorKind, Read, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

pub struct Control {
    stream: UnixStream,
    buf: Vec<u8>,
    next: u64,
}

impl Control {
    /// Connects once QEMU has created the socket; `alive` is asked while waiting, so a VM
    /// that died is reported at once rather than at the deadline.
    pub fn connect(
        path: &Path,
        deadline: Instant,
        alive: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Self> {
        loop {
            match UnixStream::connect(path) {
                Ok(stream) => {
                    return Ok(Control {
                        stream,
                        buf: Vec::new(),
                        next: 0,
                    })
                }
                Err(e) if Instant::now() > deadline => {
                    return Err(e).with_context(|| format!("connecting to {}", path.display()))
                }
                Err(_) => {
                    alive()?;
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    /// Until the VM's init answers: it reads one line before starting the shell (input
    /// sent before it opens the port is lost, so the host keeps sending comment lines,
    /// which the shell ignores if they arrive late).
    pub fn wait_ready(
        &mut self,
        deadline: Instant,
        alive: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()> {
        self.stream
            .set_read_timeout(Some(Duration::from_millis(250)))?;
        loop {
            // A VM that died says why in its logs, not in the broken socket.
            if let Err(e) = self
                .stream
                .write_all(b"#ready?\n")
                .map_err(anyhow::Error::from)
                .and_then(|()| self.fill())
            {
                alive()?;
                return Err(e);
            }
            if let Some(end) = find(&self.buf, b"READY\n") {
                self.buf.drain(..end + 6);
                break;
            }
            alive()?;
            if Instant::now() > deadline {
                bail!("no READY on the control channel");
            }
        }
        // Anything the late probes or the first shell start printed is not a command's.
        self.exec("true", Duration::from_secs(10))?;
        Ok(())
    }

    /// Reads what is available into the buffer (a read timeout is not an error).
    fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk) {
            Ok(0) => bail!("the VM closed its control channel"),
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Runs `cmd` in the VM's shell: (exit status, stdout and stderr).
    pub fn exec(&mut self, cmd: &str, timeout: Duration) -> Result<(i32, String)> {
        self.next += 1;
        let n = self.next;
        let line = format!("{{ {cmd}\n}} </dev/null 2>&1; printf '\\n@@%s %d\\n' {n} $?\n");
        self.stream.write_all(line.as_bytes())?;
        let marker = format!("\n@@{n} ");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(at) = find(&self.buf, marker.as_bytes()) {
                let rest = &self.buf[at + marker.len()..];
                if let Some(nl) = rest.iter().position(|&b| b == b'\n') {
                    let status: i32 = String::from_utf8_lossy(&rest[..nl])
                        .trim()
                        .parse()
                        .context("exit status after the marker")?;
                    let output = String::from_utf8_lossy(&self.buf[..at]).into_owned();
                    self.buf.drain(..at + marker.len() + nl + 1);
                    return Ok((status, output));
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "`{cmd}` did not finish within {timeout:?}; output so far: {}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
            self.fill()?;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
