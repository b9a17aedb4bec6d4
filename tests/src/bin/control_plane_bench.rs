//! `cargo xtask bench --control-plane [--quick]` runs this: the control-plane bench needs
//! etcd-client, which xtask itself cannot link (it is built before protoc is installed).
//! Prints the figures as JSON on stdout.

use anyhow::{bail, Result};
use vtep_testbed::bench::control_plane::{run, Scale};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scale = match args.as_slice() {
        [] => Scale::FULL,
        [q] if q == "--quick" => Scale::QUICK,
        _ => bail!("usage: control-plane-bench [--quick]"),
    };
    println!("{:#}", run(scale)?);
    Ok(())
}
