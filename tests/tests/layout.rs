//! The upgrade story of a map layout change (v5 -> v6: every VTEP and neighbour address grew
//! to 16 bytes for IPv6). A vtep never reuses maps of another layout: state an older vtep left
//! in this namespace is refused in one line naming the path, and nothing is made beside it;
//! a pinned map whose key or value size is not this vtep's is refused as well, never read,
//! except by `down`, which needs only the port table to take everything down.

use anyhow::{Context, Result};
use vtep_testbed::{
    cmd::{output, run, vtep_output},
    netns::unique_tag,
    ping, Stack, Testbed,
};

/// `vtep -n NS ARGS`, which must fail with exactly one line containing every `expect`.
fn refused(ns: &str, args: &[&str], expect: &[&str]) -> Result<()> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    let out = vtep_output(&all)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "vtep {args:?} succeeded");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr}");
    for e in expect {
        assert!(stderr.contains(e), "expected \"{e}\" in: {stderr}");
    }
    Ok(())
}

/// A map pinned at `path` with the v5 layout's FDB value (16 bytes: an IPv4 address, port,
/// flags, timestamp), as the vtep before IPv6 left it.
fn pin_v5_fdb(path: &str) -> Result<()> {
    run(
        "bpftool",
        &[
            "map", "create", path, "type", "hash", "key", "12", "value", "16", "entries", "16",
            "name", "VTEP_FDB",
        ],
    )?;
    Ok(())
}

#[test]
fn state_of_an_older_layout_is_refused_with_its_path_and_never_reused() -> Result<()> {
    let bed = Testbed::new(&unique_tag("lay"), [Stack::vtep(), Stack::vtep()])?;
    let h1 = bed.c1();
    let dir = h1.pin_dir()?;
    let leaf = dir
        .file_name()
        .context("pin dir")?
        .to_string_lossy()
        .into_owned();
    let root = dir
        .parent()
        .and_then(|v| v.parent())
        .context("pin dir root")?;
    assert!(
        dir.parent().is_some_and(|v| v.ends_with("v6")),
        "pins live under the layout version: {}",
        dir.display()
    );
    h1.vtep(&["down"])?;

    // What a v5 vtep leaves: its directory with its maps in it.
    let old = root.join("v5").join(&leaf);
    std::fs::create_dir_all(&old)?;
    let old_s = old.display().to_string();
    pin_v5_fdb(&format!("{old_s}/VTEP_FDB"))?;
    refused(
        &h1.ns,
        &["up", "--dev", "eth1", "--local", &h1.ip],
        &["another map layout", &old_s, "layout v6"],
    )?;
    assert!(!dir.exists(), "up made state beside the old layout's");
    // As the line says: unpin it, and the new vtep comes up.
    std::fs::remove_dir_all(&old)?;
    // The version directory too, unless something else lives in it.
    std::fs::remove_dir(old.parent().context("v5")?).ok();
    h1.vtep(&["up", "--dev", "eth1", "--local", &h1.ip])?;
    let c2 = bed.c2();
    h1.reference_entries(c2)?;
    assert!(
        ping(&h1.container, &c2.container_ip, 3)?,
        "no ping after the upgrade"
    );

    // A map of the old value size where this layout expects its own: refused, not read,
    // with the way out in the line.
    let fdb = dir.join("VTEP_FDB");
    std::fs::remove_file(&fdb)?;
    pin_v5_fdb(&fdb.display().to_string())?;
    let dir_s = dir.display().to_string();
    refused(
        &h1.ns,
        &[
            "fdb",
            "add",
            "02:42:c0:a8:00:09",
            "dst",
            "192.168.104.9",
            "vni",
            "42",
        ],
        &[
            "VTEP_FDB",
            "value size 16, this vtep's is 32",
            "`vtep down` takes it down",
            &dir_s,
        ],
    )?;
    // `down` still takes it all down, the port's veth and namespace with it: of the
    // tables only PORTS is read, to find them.
    let port_up = |h: &vtep_testbed::Host| -> Result<bool> {
        Ok(output("ip", &["-n", &h.container, "link", "show", "eth0"])?
            .status
            .success())
    };
    assert!(port_up(h1)?, "no port before down");
    h1.vtep(&["down"])?;
    assert!(!dir.exists(), "down left {}", dir.display());
    assert!(!port_up(h1)?, "down left the port's veth");

    // A PORTS table of another layout leaves `down` nothing to find the ports by: refused
    // in one line, with nothing removed.
    h1.vtep(&["up", "--dev", "eth1", "--local", &h1.ip])?;
    h1.port(&h1.container, &h1.mac, &h1.container_ip, 42)?;
    let ports = dir.join("VTEP_PORTS");
    std::fs::remove_file(&ports)?;
    let ports_s = ports.display().to_string();
    run(
        "bpftool",
        &[
            "map",
            "create",
            &ports_s,
            "type",
            "hash",
            "key",
            "4",
            "value",
            "8",
            "entries",
            "4096",
            "name",
            "VTEP_PORTS",
        ],
    )?;
    refused(
        &h1.ns,
        &["down"],
        &[
            "VTEP_PORTS",
            "value size 8",
            "take it down with that vtep",
            &dir_s,
        ],
    )?;
    assert!(
        dir.exists() && port_up(h1)?,
        "a refused down removed something"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
