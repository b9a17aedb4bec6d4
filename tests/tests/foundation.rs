//! Issue 9, "Foundation": the state layer seen from outside. A fresh machine without bpffs,
//! concurrent writers, namespace identity, lifecycle changes behind vtep's back, writers
//! killed at every step, full tables, JSON a `jq` user can rely on, and batches.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use vtep_testbed::{
    capture::Capture,
    cmd::{output, run, vtep_bin, vtep_output},
    inject,
    netns::{self, unique_tag},
    ping, Host, Netns, Stack, Testbed,
};

// ---------------------------------------------------------------------------------------
// Helpers

/// `vtep` as a string for shell scripts.
fn bin() -> String {
    vtep_bin().display().to_string()
}

/// stderr of a failed command, checked to be exactly one non-empty line.
fn one_line_error(out: &Output, what: &str) -> Result<String> {
    ensure!(
        !out.status.success(),
        "{what}: expected a failure, it succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // `show` and `port show` warn about state that namespaces deleted without `vtep down`
    // left (other tests may leave some for a moment): not part of the error.
    let err: Vec<&str> = std::str::from_utf8(&out.stderr)?
        .lines()
        .filter(|l| !l.ends_with("remove it with `vtep prune`"))
        .collect();
    let err = err.join("\n");
    ensure!(
        !err.is_empty() && err.lines().count() == 1,
        "{what}: expected one error line, got {err:?}"
    );
    Ok(err)
}

/// `vtep -n NS args` that must fail with one line containing `needle`.
fn fails(ns: &str, args: &[&str], needle: &str) -> Result<Output> {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    let out = vtep_output(&full)?;
    let err = one_line_error(&out, &format!("vtep {}", full.join(" ")))?;
    ensure!(
        err.contains(needle),
        "`vtep {}`: error {err:?} does not mention {needle:?}",
        full.join(" ")
    );
    Ok(out)
}

/// `vtep -n HOST -j args`, parsed.
fn json(host: &Host, args: &[&str]) -> Result<Value> {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    let text = host.vtep(&full)?;
    serde_json::from_str(&text).with_context(|| format!("`vtep -j {}`: {text}", args.join(" ")))
}

fn array(v: &Value) -> Result<&Vec<Value>> {
    v.as_array()
        .with_context(|| format!("expected a JSON array: {v}"))
}

/// Polls `cond` until it holds or `timeout` passes.
fn poll(what: &str, timeout: Duration, mut cond: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    loop {
        if cond()? {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Container `ns` reaches `dst`: one reply within 10 s, then 3 of 3.
fn pings(ns: &str, dst: &str) -> Result<()> {
    poll(
        &format!("{ns} to answer-ping {dst}"),
        Duration::from_secs(10),
        || ping(ns, dst, 1),
    )?;
    ensure!(ping(ns, dst, 3)?, "{ns} -> {dst}: lost pings once working");
    Ok(())
}

/// Deletes namespaces (made by `vtep port add` or by hand) on drop.
struct Gone(Vec<String>);

impl Drop for Gone {
    fn drop(&mut self) {
        for ns in &self.0 {
            netns::remove(ns);
        }
    }
}

/// `vtep -n NS down` on drop, for hosts a Testbed does not bring down itself.
struct Down(String);

impl Drop for Down {
    fn drop(&mut self) {
        vtep_output(&["-n", &self.0, "down"]).ok();
    }
}

fn spawn(prog: &str, args: &[String]) -> Result<Child> {
    Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {prog}"))
}

/// Runs every `vtep` command line, `width` processes at a time; their outputs in order.
fn vtep_parallel(cmds: &[Vec<String>], width: usize) -> Result<Vec<Output>> {
    let bin = bin();
    let mut outs = Vec::with_capacity(cmds.len());
    for chunk in cmds.chunks(width) {
        let children = chunk
            .iter()
            .map(|c| spawn(&bin, c))
            .collect::<Result<Vec<_>>>()?;
        for child in children {
            outs.push(child.wait_with_output()?);
        }
    }
    Ok(outs)
}

fn strs(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

/// Two hosts on one underlay (192.168.104.2 and .3) with nothing of vtep yet.
fn bare(tag: &str) -> Result<Testbed> {
    Testbed::underlay(tag, vec![Stack::Kernel, Stack::Kernel])
}

fn up(h: &Host, extra: &[&str]) -> Result<()> {
    let mut args = vec!["up", "--dev", "eth1", "--local", h.ip.as_str()];
    args.extend_from_slice(extra);
    h.vtep(&args)?;
    Ok(())
}

fn ns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

/// vtep's host-side veths (`vt...`) in namespace `ns`.
fn vtep_veths(ns: &str) -> Result<Vec<String>> {
    Ok(run("ip", &["-n", ns, "-o", "link", "show"])?
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_string())
        .filter(|n| n.starts_with("vt"))
        .collect())
}

// ---------------------------------------------------------------------------------------
// 1. A fresh machine

/// With no bpffs mounted (in a private mount namespace, so tests running beside this one
/// keep theirs), the README's commands (up, port add, fdb add, neigh add) as separate
/// processes work: vtep mounts bpffs itself.
/// Under `ip netns exec` it refuses with one line saying so.
#[test]
fn a_fresh_machine_without_bpffs_runs_the_readme() -> Result<()> {
    let tag = unique_tag("fnd");
    let bed = bare(&tag)?;
    let (h1, h2) = (bed.c1(), bed.c2());
    let _gone = Gone(vec![h1.container.clone(), h2.container.clone()]);

    // Outside the private namespace: `ip netns exec` is refused.
    let out = output(
        "ip",
        &[
            "netns",
            "exec",
            &h1.ns,
            &bin(),
            "up",
            "--dev",
            "eth1",
            "--local",
            &h1.ip,
        ],
    )?;
    let err = one_line_error(&out, "vtep up under ip netns exec")?;
    ensure!(err.contains("ip netns exec"), "unexpected refusal: {err:?}");

    let script = r#"
        set -e
        while umount /sys/fs/bpf 2>/dev/null; do :; done
        if mountpoint -q /sys/fs/bpf; then echo "bpffs still mounted" >&2; exit 3; fi
        if ip netns exec "$H2" "$V" up --dev eth1 --local 192.168.104.3 2>/tmp/$H2.err; then
            echo "ip netns exec was not refused" >&2; exit 4
        fi
        echo "NETNS_EXEC: $(cat /tmp/$H2.err)"; rm -f /tmp/$H2.err
        "$V" -n "$H1" up --dev eth1 --local 192.168.104.2
        "$V" -n "$H1" port add "$C1" --mac 02:42:c0:a8:00:02 --addr 12.12.12.2/24 --vni 42
        "$V" -n "$H1" fdb add 02:42:c0:a8:00:03 dst 192.168.104.3 vni 42
        "$V" -n "$H1" neigh add 12.12.12.3 lladdr 02:42:c0:a8:00:03 vni 42
        "$V" -n "$H2" up --dev eth1 --local 192.168.104.3
        "$V" -n "$H2" port add "$C2" --mac 02:42:c0:a8:00:03 --addr 12.12.12.3/24 --vni 42
        "$V" -n "$H2" fdb add 02:42:c0:a8:00:02 dst 192.168.104.2 vni 42
        "$V" -n "$H2" neigh add 12.12.12.2 lladdr 02:42:c0:a8:00:02 vni 42
        mountpoint -q /sys/fs/bpf || { echo "vtep did not mount bpffs" >&2; exit 5; }
        ok=0
        for i in 1 2 3 4 5 6 7 8 9 10; do
            if ip netns exec "$C1" ping -c 1 -W 1 12.12.12.3 >/dev/null; then ok=1; break; fi
        done
        [ $ok = 1 ] || { echo "no ping reply" >&2; exit 6; }
        ip netns exec "$C1" ping -c 3 -i 0.2 -W 2 12.12.12.3 >/dev/null
        ip netns exec "$C2" ping -c 3 -i 0.2 -W 2 12.12.12.2 >/dev/null
        "$V" -n "$H1" down
        "$V" -n "$H2" down
        echo DONE
    "#;
    let out = Command::new("unshare")
        // A new PID namespace too: vtep refuses to mount bpffs when any ancestor process is
        // in another mount namespace (its `ip netns exec` check), so the shell must be the
        // first process it can see, as on a fresh machine.
        .args([
            "-m",
            "-p",
            "-f",
            "--mount-proc",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
        ])
        .env("V", bin())
        .env("H1", &h1.ns)
        .env("H2", &h2.ns)
        .env("C1", &h1.container)
        .env("C2", &h2.container)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && stdout.contains("DONE"),
        "fresh-machine script failed ({}): {}\n{}",
        out.status,
        stdout,
        stderr(&out)
    );
    let refusal = stdout
        .lines()
        .find_map(|l| l.strip_prefix("NETNS_EXEC: "))
        .context("no NETNS_EXEC line")?;
    ensure!(
        refusal.contains("ip netns exec") && !refusal.contains('\n'),
        "refusal without bpffs: {refusal:?}"
    );
    ensure!(!ns_exists(&h1.container) && !ns_exists(&h2.container));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 2. Concurrency

/// 16 parallel `fdb append`s all land in the flood list, 30 rounds in a row.
#[test]
fn parallel_appends_all_land_in_the_flood_list() -> Result<()> {
    let tag = unique_tag("fnd");
    let bed = Testbed::new(&tag, [Stack::vtep(), Stack::vtep()])?;
    let h1 = bed.c1();
    // VNI 43: flushing it between rounds leaves the reference entries of VNI 42 alone.
    let cmds: Vec<Vec<String>> = (0..16)
        .map(|i| {
            strs(&[
                "-n",
                &h1.ns,
                "fdb",
                "append",
                "00:00:00:00:00:00",
                "dst",
                &format!("192.168.104.{}", 10 + i),
                "vni",
                "43",
            ])
        })
        .collect();
    for round in 0..30 {
        for (i, out) in vtep_parallel(&cmds, 16)?.iter().enumerate() {
            ensure!(
                out.status.success(),
                "round {round}: append {i} failed: {}",
                stderr(out)
            );
        }
        let fdb = json(h1, &["fdb", "show", "vni", "43"])?;
        let dsts: BTreeSet<&str> = array(&fdb)?
            .iter()
            .filter(|e| e["mac"] == "00:00:00:00:00:00")
            .filter_map(|e| e["dst"].as_str())
            .collect();
        ensure!(
            array(&fdb)?.len() == 16 && dsts.len() == 16,
            "round {round}: flood list is {fdb}"
        );
        h1.vtep(&["fdb", "flush", "vni", "43"])?;
        ensure!(array(&json(h1, &["fdb", "show", "vni", "43"])?)?.is_empty());
    }
    Ok(())
}

/// PEERS as bpftool sees it: (dst, vni) -> count.
fn peers_map(pin_dir: &std::path::Path) -> Result<BTreeMap<(String, u64), u64>> {
    let path = pin_dir.join("VTEP_PEERS");
    let dump: Value = serde_json::from_str(&run(
        "bpftool",
        &["map", "dump", "pinned", &path.display().to_string(), "-j"],
    )?)?;
    let byte = |v: &Value| -> Result<u8> {
        let s = v.as_str().context("bpftool byte")?;
        Ok(u8::from_str_radix(s.trim_start_matches("0x"), 16)?)
    };
    let mut peers = BTreeMap::new();
    for e in array(&dump)? {
        let k = array(&e["key"])?
            .iter()
            .map(byte)
            .collect::<Result<Vec<u8>>>()?;
        let v = array(&e["value"])?
            .iter()
            .map(byte)
            .collect::<Result<Vec<u8>>>()?;
        // Key: a 16-byte address (IPv4 mapped into IPv6), then the VNI.
        ensure!(k.len() == 20 && v.len() == 4, "PEERS entry {e}");
        let addr: [u8; 16] = k[..16].try_into()?;
        let ip = std::net::Ipv6Addr::from(addr).to_canonical().to_string();
        let vni = u32::from_le_bytes([k[16], k[17], k[18], k[19]]) as u64;
        peers.insert(
            (ip, vni),
            u32::from_le_bytes([v[0], v[1], v[2], v[3]]) as u64,
        );
    }
    Ok(peers)
}

/// What PEERS should hold given `vtep -j fdb show`: permanent entries and flood slots
/// naming each (dst, vni).
fn peers_expected(fdb: &Value) -> Result<BTreeMap<(String, u64), u64>> {
    let mut want = BTreeMap::new();
    for e in array(fdb)? {
        let (Some(dst), Some(vni)) = (e["dst"].as_str(), e["vni"].as_u64()) else {
            continue;
        };
        if e["origin"] == "learned" {
            continue;
        }
        *want.entry((dst.to_string(), vni)).or_insert(0) += 1;
    }
    Ok(want)
}

/// Many parallel `fdb add`/`fdb del` under `--strict-peers`: every command's effect lands,
/// PEERS matches the FDB, and the real peer still gets through.
#[test]
fn parallel_adds_and_dels_keep_peers_exact() -> Result<()> {
    let tag = unique_tag("fnd");
    let bed = Testbed::new(&tag, [Stack::vtep_with(&["--strict-peers"]), Stack::vtep()])?;
    let (h1, h2) = (bed.c1(), bed.c2());
    pings(&h1.container, &h2.container_ip)?;
    // About 2000 processes (1350 adds, and dels of half the entries added one wave
    // before), 75 at a time; the real peer's address is among the dsts, so its count goes
    // up and down too.
    const WAVES: usize = 27;
    const PER: usize = 50;
    let mac = |i: usize| format!("02:77:00:00:{:02x}:{:02x}", i >> 8, i & 255);
    let dst = |i: usize| format!("192.168.104.{}", 3 + (i % 7));
    let add = |i: usize| {
        strs(&[
            "-n",
            &h1.ns,
            "fdb",
            "add",
            &mac(i),
            "dst",
            &dst(i),
            "vni",
            "42",
        ])
    };
    let del = |i: usize| strs(&["-n", &h1.ns, "fdb", "del", &mac(i), "vni", "42"]);
    let mut kept = BTreeSet::new();
    for wave in 0..=WAVES {
        let mut cmds = Vec::new();
        if wave < WAVES {
            cmds.extend((wave * PER..(wave + 1) * PER).map(add));
        }
        if wave > 0 {
            // Delete the even entries of the previous wave.
            cmds.extend(
                ((wave - 1) * PER..wave * PER)
                    .filter(|i| i % 2 == 0)
                    .map(del),
            );
            kept.extend(((wave - 1) * PER..wave * PER).filter(|i| i % 2 == 1));
        }
        for (c, out) in cmds.iter().zip(vtep_parallel(&cmds, 75)?) {
            ensure!(
                out.status.success(),
                "wave {wave}: `vtep {}` failed: {}",
                c.join(" "),
                stderr(&out)
            );
        }
    }
    let fdb = json(h1, &["fdb", "show", "vni", "42"])?;
    let ours: BTreeSet<String> = array(&fdb)?
        .iter()
        .filter_map(|e| e["mac"].as_str())
        .filter(|m| m.starts_with("02:77:"))
        .map(String::from)
        .collect();
    let want: BTreeSet<String> = kept.iter().map(|&i| mac(i)).collect();
    ensure!(
        ours == want,
        "FDB after the churn: {ours:?}, expected {want:?}"
    );
    let peers = peers_map(&h1.pin_dir()?)?;
    let expected = peers_expected(&json(h1, &["fdb", "show"])?)?;
    ensure!(
        peers == expected,
        "PEERS {peers:?} differs from the FDB's {expected:?}"
    );
    ensure!(json(h1, &["show"])?["strict_peers"] == true);
    pings(&h1.container, &h2.container_ip)?;
    Ok(())
}

/// Two `vtep up` at once on a fresh host: each succeeds or fails cleanly, and the host
/// ends up attached. Then 8 parallel `port add`s in one VNI all succeed.
#[test]
fn parallel_up_and_port_add_on_a_fresh_host() -> Result<()> {
    let tag = unique_tag("fnd");
    let bed = bare(&tag)?;
    let h1 = bed.c1();
    let _down = Down(h1.ns.clone());
    let up_cmd = strs(&["-n", &h1.ns, "up", "--dev", "eth1", "--local", &h1.ip]);
    let outs = vtep_parallel(&[up_cmd.clone(), up_cmd], 2)?;
    let ok = outs.iter().filter(|o| o.status.success()).count();
    ensure!(ok >= 1, "neither parallel `vtep up` succeeded: {:?}", outs);
    for o in outs.iter().filter(|o| !o.status.success()) {
        one_line_error(o, "the losing parallel `vtep up`")?;
    }
    let show = json(h1, &["show"])?;
    ensure!(show["attached"] == true, "after parallel up: {show}");

    let names: Vec<String> = (0..8).map(|i| format!("{tag}p{i}")).collect();
    let _gone = Gone(names.clone());
    let cmds: Vec<Vec<String>> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            strs(&[
                "-n",
                &h1.ns,
                "port",
                "add",
                n,
                "--mac",
                &format!("02:42:c0:a8:01:{:02x}", i + 1),
                "--addr",
                &format!("12.12.13.{}/24", i + 1),
                "--vni",
                "42",
            ])
        })
        .collect();
    for (c, out) in cmds.iter().zip(vtep_parallel(&cmds, 8)?) {
        ensure!(
            out.status.success(),
            "`vtep {}` failed: {}",
            c.join(" "),
            stderr(&out)
        );
    }
    let ports = json(h1, &["port", "show"])?;
    let listed: BTreeSet<&str> = array(&ports)?
        .iter()
        .filter_map(|p| p["netns"].as_str())
        .collect();
    let want: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    ensure!(
        listed == want,
        "port show lists {listed:?}, expected {want:?}"
    );
    ensure!(
        array(&ports)?.iter().all(|p| p["health"] == "ok"),
        "{ports}"
    );
    // The ports of one VNI reach each other.
    pings(&names[0], "12.12.13.8")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 3. Identity

/// A host deleted without `vtep down` leaves state behind that a new namespace (even one
/// with the same inode number) never inherits; `vtep prune` removes it.
#[test]
fn a_new_namespace_never_inherits_a_dead_ones_state() -> Result<()> {
    let tag = unique_tag("fnd");
    let bed = bare(&tag)?;
    let old = bed.c1();
    let container = format!("{tag}old");
    let _gone = Gone(vec![container.clone()]);
    up(old, &[])?;
    old.port(&container, &old.mac, &old.container_ip, 42)?;
    let pin_dir = old.pin_dir()?;
    let inode = run(
        "stat",
        &["-L", "-c", "%i", &format!("/run/netns/{}", old.ns)],
    )?
    .trim()
    .to_string();
    ensure!(pin_dir.exists());
    run("ip", &["netns", "del", &old.ns])?;

    // Look for a new namespace with the dead one's inode number.
    let mut checked = Vec::new();
    let mut reused = None;
    for i in 0..200 {
        let name = format!("{tag}n{i}");
        let ns = Netns::add(&name)?;
        let ino = run("stat", &["-L", "-c", "%i", &format!("/run/netns/{name}")])?;
        if ino.trim() == inode {
            reused = Some(ns);
            break;
        }
        if i % 40 == 0 {
            checked.push(ns);
        }
    }
    eprintln!(
        "netns inode {inode} {}",
        if reused.is_some() {
            "reused"
        } else {
            "not reused within 200 namespaces"
        }
    );
    for ns in reused.iter().chain(checked.iter()) {
        fails(&ns.name, &["show"], "not up")?;
        fails(&ns.name, &["port", "show"], "not up")?;
        fails(&ns.name, &["down"], "not up")?;
        ensure!(vtep_veths(&ns.name)?.is_empty());
    }
    ensure!(
        pin_dir.exists(),
        "down on a new namespace removed the dead one's state"
    );
    ensure!(
        ns_exists(&container),
        "down on a new namespace removed a container"
    );

    // A live host warns about the dead state until `vtep prune`.
    let h2 = bed.c2();
    let _down = Down(h2.ns.clone());
    // Its eth1 went with the dead host's (a veth pair): give it another.
    run(
        "ip",
        &[
            "-n", &h2.ns, "link", "add", "eth1", "type", "veth", "peer", "name", "eth9",
        ],
    )?;
    h2.underlay_up()?;
    up(h2, &[])?;
    let show = vtep_output(&["-n", &h2.ns, "show"])?;
    ensure!(show.status.success());
    ensure!(
        stderr(&show).contains("vtep prune"),
        "show does not warn about dead state: {:?}",
        stderr(&show)
    );
    // A lock directory whose namespace is gone and whose state went with its bpffs (no
    // cookie this large is ever handed out).
    let orphan = std::path::PathBuf::from(format!(
        "/run/vtep/netns-{}",
        u64::MAX - u64::from(std::process::id())
    ));
    std::fs::create_dir_all(&orphan)?;
    std::fs::write(orphan.join("lock"), "")?;
    let pruned = vtep_output(&["prune"])?;
    ensure!(pruned.status.success(), "prune: {}", stderr(&pruned));
    ensure!(!orphan.exists(), "{} survived prune", orphan.display());
    let said = String::from_utf8_lossy(&pruned.stdout);
    ensure!(
        said.contains(&pin_dir.display().to_string()),
        "prune did not mention {}: {said}",
        pin_dir.display()
    );
    ensure!(!pin_dir.exists(), "{} survived prune", pin_dir.display());
    ensure!(
        !ns_exists(&container),
        "prune left the dead host's container"
    );
    let show = vtep_output(&["-n", &h2.ns, "show"])?;
    ensure!(
        show.status.success() && !stderr(&show).contains("vtep prune"),
        "show still warns after prune: {:?}",
        stderr(&show)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 4. Lifecycle

/// Sends 3 VXLAN frames for h1's container from `src` (an address of h2's), and waits
/// until h1 counted them as delivered or as dropped from an unknown peer: true if dropped.
fn injected_is_dropped(h1: &Host, h2: &Host, src: &str) -> Result<bool> {
    let (dropped, decap) = (h1.counter("drop_unknown_peer")?, h1.counter("decap")?);
    let frames = (0..3)
        .map(|_| inject::junk_frame([2, 0x42, 0xc0, 0xa8, 0, 2], [2, 0, 0, 0, 0, 9], b"fnd"))
        .collect();
    inject::send(&h2.ns, src, &h1.ip, 42, frames)?;
    let mut verdict = None;
    poll(
        "the injected frames to be counted",
        Duration::from_secs(5),
        || {
            if h1.counter("drop_unknown_peer")? >= dropped + 3 {
                verdict = Some(true);
            } else if h1.counter("decap")? >= decap + 3 {
                verdict = Some(false);
            }
            Ok(verdict.is_some())
        },
    )?;
    Ok(verdict == Some(true))
}

/// `up` without a flag keeps `--strict-peers` (an unknown VTEP is still dropped, the known
/// peer still gets through); `--no-strict-peers` turns it off.
#[test]
fn up_keeps_strict_peers_until_told_otherwise() -> Result<()> {
    let tag = unique_tag("fnd");
    let bed = Testbed::new(&tag, [Stack::vtep(), Stack::vtep()])?;
    let (h1, h2) = (bed.c1(), bed.c2());
    // An address h1 has no FDB entry for: the injecting host.
    let rogue = "192.168.104.9";
    run(
        "ip",
        &[
            "-n",
            &h2.ns,
            "addr",
            "add",
            &format!("{rogue}/24"),
            "dev",
            "eth1",
        ],
    )?;
    h1.vtep(&["up", "--strict-peers"])?;
    h1.vtep(&["up"])?;
    let show = json(h1, &["show"])?;
    ensure!(show["strict_peers"] == true, "after up: {show}");
    ensure!(show["attached"] == true && show["local"] == h1.ip.as_str());
    ensure!(
        injected_is_dropped(h1, h2, rogue)?,
        "VXLAN from an unknown VTEP got through after `up` without a flag"
    );
    ensure!(
        !injected_is_dropped(h1, h2, &h2.ip)?,
        "VXLAN from the known peer was dropped"
    );
    pings(&h1.container, &h2.container_ip)?;
    h1.vtep(&["up", "--no-strict-peers"])?;
    ensure!(json(h1, &["show"])?["strict_peers"] == false);
    ensure!(
        !injected_is_dropped(h1, h2, rogue)?,
        "VXLAN from any VTEP is accepted after --no-strict-peers"
    );
    pings(&h1.container, &h2.container_ip)?;
    Ok(())
}

/// A container namespace deleted behind vtep: `up` still works, `port show` flags it,
/// `port del` cleans it.
#[test]
fn a_container_deleted_behind_vteps_back_is_flagged_and_removable() -> Result<()> {
    let tag = unique_tag("fnd");
    let bed = Testbed::new(&tag, [Stack::vtep(), Stack::vtep()])?;
    let h1 = bed.c1();
    run("ip", &["netns", "del", &h1.container])?;
    h1.vtep(&["up"])?;
    let ports = json(h1, &["port", "show"])?;
    let port = array(&ports)?
        .iter()
        .find(|p| p["netns"] == h1.container.as_str())
        .with_context(|| format!("port show lost the port: {ports}"))?;
    ensure!(port["health"] == "netns-gone", "port show: {ports}");
    let text = h1.vtep(&["port", "show"])?;
    ensure!(
        text.to_lowercase().contains("gone"),
        "plain port show does not flag it: {text}"
    );
    h1.vtep(&["port", "del", &h1.container])?;
    ensure!(array(&json(h1, &["port", "show"])?)?.is_empty());
    ensure!(vtep_veths(&h1.ns)?.is_empty());
    ensure!(json(h1, &["show"])?["ports_broken"] == 0);
    Ok(())
}

/// The underlay deleted and made again: `show` says detached, `up` without arguments
/// re-attaches, and the containers talk again without `down`.
#[test]
fn up_reattaches_a_recreated_underlay() -> Result<()> {
    let tag = unique_tag("fnd");
    let bed = Testbed::new(&tag, [Stack::vtep(), Stack::vtep()])?;
    let (h1, h2) = (bed.c1(), bed.c2());
    pings(&h1.container, &h2.container_ip)?;
    run("ip", &["-n", &h1.ns, "link", "del", "eth1"])?;
    run(
        "ip",
        &[
            "link", "add", "eth1", "netns", &h1.ns, "type", "veth", "peer", "name", "eth1",
            "netns", &h2.ns,
        ],
    )?;
    for h in [h1, h2] {
        h.underlay_up()?;
        let show = json(h, &["show"])?;
        ensure!(show["attached"] == false, "{}: {show}", h.ns);
        let text = h.vtep(&["show"])?;
        ensure!(text.to_lowercase().contains("detached"), "{text}");
    }
    for h in [h1, h2] {
        h.vtep(&["up"])?;
        ensure!(json(h, &["show"])?["attached"] == true);
    }
    pings(&h1.container, &h2.container_ip)?;
    pings(&h2.container, &h1.container_ip)?;
    Ok(())
}

/// `--port 8472` on both hosts with the README's commands (FDB entries without a port):
/// the containers talk, over UDP 8472.
#[test]
fn port_8472_with_the_readmes_commands() -> Result<()> {
    let tag = unique_tag("fnd");
    let bed = Testbed::underlay(
        &tag,
        vec![
            Stack::vtep_with(&["--port", "8472"]),
            Stack::vtep_with(&["--port", "8472"]),
        ],
    )?;
    let (h1, h2) = (bed.c1(), bed.c2());
    h1.reference_entries(h2)?;
    h2.reference_entries(h1)?;
    ensure!(json(h1, &["show"])?["port"] == 8472);
    let fdb = json(h1, &["fdb", "show", "dst", &h2.ip])?;
    ensure!(
        array(&fdb)?.iter().all(|e| e["port"] == 8472),
        "fdb add without port should use the tunnel's: {fdb}"
    );
    pings(&h1.container, &h2.container_ip)?;
    let cap = Capture::start(&h2.ns, "eth1", "udp dst port 8472")?;
    ensure!(ping(&h1.container, &h2.container_ip, 3)?);
    let frames = cap.stop()?;
    ensure!(frames.len() >= 3, "{} frames to UDP 8472", frames.len());
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 5. Fault injection

/// `strace -f -e inject=SYSCALL:signal=KILL:when=N vtep args`: vtep killed at the N-th
/// call of SYSCALL (or not at all, if it makes fewer). True if it was killed.
fn killed_at(syscall: &str, n: u32, args: &[&str]) -> Result<bool> {
    let mut full = vec![
        "-f".to_string(),
        "-o".to_string(),
        "/dev/null".to_string(),
        "-e".to_string(),
        format!("inject={syscall}:signal=KILL:when={n}"),
        bin(),
    ];
    full.extend(args.iter().map(|s| s.to_string()));
    let out = Command::new("strace").args(&full).output()?;
    // strace exits with the tracee's status: 128+9 when killed.
    Ok(out.status.code() == Some(137) || out.status.code().is_none())
}

const PORT_KILLS: &[(&str, &[u32])] = &[
    ("sendto", &[1, 2, 3, 4, 5, 6, 7, 8]),
    ("bpf", &[1, 3, 6, 10, 20, 30, 40, 50, 55]),
    ("mount", &[1, 2]),
    ("unshare", &[1]),
    ("setns", &[1, 3, 5]),
    ("flock", &[1, 2]),
    ("write", &[1]),
    ("rename", &[1]),
    ("unlink", &[1]),
];

/// `port add` killed at each step: a retry succeeds or finds the port whole, and `port del`
/// leaves no veth and no container namespace.
#[test]
fn port_add_killed_at_any_step_is_recoverable() -> Result<()> {
    let tag = unique_tag("fnd");
    let bed = Testbed::underlay(&tag, vec![Stack::vtep(), Stack::vtep()])?;
    let h1 = bed.c1();
    let c = format!("{tag}k");
    let _gone = Gone(vec![c.clone()]);
    let add = [
        "-n",
        &h1.ns,
        "port",
        "add",
        &c,
        "--mac",
        "02:42:c0:a8:00:02",
        "--addr",
        "12.12.12.2/24",
        "--vni",
        "42",
    ];
    let mut kills = 0;
    for (syscall, ns) in PORT_KILLS {
        for &n in *ns {
            let what = format!("port add killed at {syscall} #{n}");
            kills += killed_at(syscall, n, &add)? as u32;
            let retry = vtep_output(&add)?;
            // Either the killed command's port was rolled back and the retry makes it, or
            // it was whole and the retry says so (like any second `port add`).
            if !retry.status.success() {
                ensure!(
                    stderr(&retry).contains("already exists"),
                    "{what}: retry failed: {}",
                    stderr(&retry)
                );
            }
            let ports = json(h1, &["port", "show"])?;
            ensure!(
                array(&ports)?.len() == 1 && ports[0]["health"] == "ok",
                "{what}: port show {ports}"
            );
            ensure!(
                json(h1, &["show"])?["used"]["ports"] == 1,
                "{what}: show counts the ports wrong"
            );
            h1.vtep(&["port", "del", &c])
                .with_context(|| what.clone())?;
            ensure!(
                vtep_veths(&h1.ns)?.is_empty(),
                "{what}: veths left {:?}",
                vtep_veths(&h1.ns)?
            );
            ensure!(!ns_exists(&c), "{what}: container namespace left");
            ensure!(array(&json(h1, &["port", "show"])?)?.is_empty());
        }
    }
    eprintln!("port add killed {kills} times");
    ensure!(kills >= 20, "only {kills} of the injections killed vtep");
    Ok(())
}

/// `up` and `fdb add` killed at several steps: a retry works, and `down` leaves nothing.
#[test]
fn up_and_fdb_add_killed_are_recoverable_and_down_leaves_nothing() -> Result<()> {
    let tag = unique_tag("fnd");
    let bed = bare(&tag)?;
    let h1 = bed.c1();
    let _down = Down(h1.ns.clone());
    let up_args = ["-n", &h1.ns, "up", "--dev", "eth1", "--local", &h1.ip];
    let mut pin_dirs = BTreeSet::new();
    let (mut up_kills, mut fdb_kills) = (0, 0);
    for (syscall, n) in [
        ("bpf", 1),
        ("bpf", 10),
        ("bpf", 30),
        ("bpf", 60),
        ("bpf", 85),
        ("mount", 1),
        ("setns", 1),
        ("setns", 2),
        ("flock", 1),
        ("flock", 2),
        ("sendto", 1),
        ("sendto", 2),
        ("write", 1),
        ("rename", 1),
    ] {
        let what = format!("up killed at {syscall} #{n}");
        up_kills += killed_at(syscall, n, &up_args)? as u32;
        let retry = vtep_output(&up_args)?;
        ensure!(
            retry.status.success(),
            "{what}: retry failed: {}",
            stderr(&retry)
        );
        let show = json(h1, &["show"])?;
        ensure!(show["attached"] == true, "{what}: {show}");
        pin_dirs.insert(h1.pin_dir()?);

        let mac = "02:42:c0:a8:00:03";
        let add = [
            "-n",
            &h1.ns,
            "fdb",
            "add",
            mac,
            "dst",
            "192.168.104.3",
            "vni",
            "42",
        ];
        for k in [1, 3, 6, 10] {
            let what = format!("{what}, fdb add killed at bpf #{k}");
            fdb_kills += killed_at("bpf", k, &add)? as u32;
            let out = vtep_output(&add)?;
            if !out.status.success() {
                ensure!(
                    stderr(&out).contains("exists"),
                    "{what}: retry {}",
                    stderr(&out)
                );
            }
            let fdb = json(h1, &["fdb", "show"])?;
            ensure!(
                array(&fdb)?.len() == 1 && fdb[0]["mac"] == mac,
                "{what}: {fdb}"
            );
            let peers = peers_map(&h1.pin_dir()?)?;
            ensure!(
                peers == peers_expected(&fdb)?,
                "{what}: PEERS {peers:?} for {fdb}"
            );
            h1.vtep(&["fdb", "del", mac, "vni", "42"])?;
        }

        h1.vtep(&["down"]).with_context(|| what.clone())?;
        for dir in &pin_dirs {
            ensure!(!dir.exists(), "{what}: {} left after down", dir.display());
        }
        fails(&h1.ns, &["show"], "not up")?;
        ensure!(vtep_veths(&h1.ns)?.is_empty());
    }
    eprintln!("up killed {up_kills} times, fdb add {fdb_kills} times");
    ensure!(
        up_kills >= 10 && fdb_kills >= 40,
        "too few injections killed vtep: up {up_kills}, fdb add {fdb_kills}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 6. Full tables

#[test]
fn a_full_table_refuses_with_its_name_and_size() -> Result<()> {
    let tag = unique_tag("fnd");
    let bed = Testbed::underlay(
        &tag,
        vec![
            Stack::vtep_with(&["--max-fdb", "4", "--max-neigh", "2"]),
            Stack::vtep(),
        ],
    )?;
    let h1 = bed.c1();
    for i in 1..=4 {
        h1.vtep(&[
            "fdb",
            "add",
            &format!("02:42:c0:a8:01:{i:02x}"),
            "dst",
            "192.168.104.3",
            "vni",
            "42",
        ])?;
    }
    let before = h1.vtep(&["fdb", "show"])?;
    let out = fails(
        &h1.ns,
        &[
            "fdb",
            "add",
            "02:42:c0:a8:01:05",
            "dst",
            "192.168.104.3",
            "vni",
            "42",
        ],
        "the FDB table is full (4 entries)",
    )?;
    ensure!(out.status.code() == Some(1), "exit code {:?}", out.status);
    ensure!(h1.vtep(&["fdb", "show"])? == before, "fdb show changed");

    for i in 1..=2 {
        h1.vtep(&[
            "neigh",
            "add",
            &format!("12.12.12.{}", 10 + i),
            "lladdr",
            &format!("02:42:c0:a8:01:{i:02x}"),
            "vni",
            "42",
        ])?;
    }
    let before = h1.vtep(&["neigh", "show"])?;
    let out = fails(
        &h1.ns,
        &[
            "neigh",
            "add",
            "12.12.12.13",
            "lladdr",
            "02:42:c0:a8:01:03",
            "vni",
            "42",
        ],
        "the neighbour table is full (2 entries)",
    )?;
    ensure!(out.status.code() == Some(1), "exit code {:?}", out.status);
    ensure!(h1.vtep(&["neigh", "show"])? == before, "neigh show changed");
    let show = json(h1, &["show"])?;
    ensure!(show["capacity"]["fdb"] == 4 && show["capacity"]["neigh"] == 2);
    ensure!(
        show["used"]["fdb"] == 4 && show["used"]["neigh"] == 2,
        "{show}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 7. JSON parity with iproute2

fn jq(filter: &str, input: &str) -> Result<String> {
    let mut child = Command::new("jq")
        .args(["-cS", filter])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running jq (apt-get install jq)")?;
    child
        .stdin
        .take()
        .context("jq stdin")?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(out.status.success(), "jq {filter}: {}", stderr(&out));
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The same entries in a kernel vxlan device and in vtep answer the same `jq` questions.
#[test]
fn jq_filters_answer_the_same_for_bridge_and_vtep() -> Result<()> {
    let tag = unique_tag("fnd");
    let bed = Testbed::underlay(&tag, vec![Stack::Kernel, Stack::vtep()])?;
    let (k, v) = (bed.c1(), bed.c2());
    run(
        "ip",
        &[
            "-n",
            &k.ns,
            "link",
            "add",
            "vxlan1",
            "type",
            "vxlan",
            "id",
            "42",
            "dstport",
            "4789",
            "local",
            &k.ip,
            "nolearning",
        ],
    )?;
    // (mac, dst, extern_learn)
    let entries = [
        ("02:42:c0:a8:00:03", "192.168.104.3", false),
        ("02:42:c0:a8:00:04", "192.168.104.3", false),
        ("02:42:c0:a8:00:05", "192.168.104.4", false),
        ("02:42:c0:a8:00:06", "192.168.104.4", true),
    ];
    for (mac, dst, ext) in entries {
        let mut b = vec![
            "-n", &k.ns, "fdb", "add", mac, "dev", "vxlan1", "self", "dst", dst, "vni", "42",
            "port", "4789",
        ];
        let mut t = vec!["fdb", "add", mac, "dst", dst, "vni", "42"];
        if ext {
            b.push("extern_learn");
            t.push("extern_learn");
        }
        run("bridge", &b)?;
        v.vtep(&t)?;
    }
    for dst in ["192.168.104.7", "192.168.104.8"] {
        run(
            "bridge",
            &[
                "-n",
                &k.ns,
                "fdb",
                "append",
                "00:00:00:00:00:00",
                "dev",
                "vxlan1",
                "self",
                "dst",
                dst,
            ],
        )?;
        v.vtep(&[
            "fdb",
            "append",
            "00:00:00:00:00:00",
            "dst",
            dst,
            "vni",
            "42",
        ])?;
    }
    for (ip, mac) in [
        ("12.12.12.3", "02:42:c0:a8:00:03"),
        ("12.12.12.5", "02:42:c0:a8:00:05"),
    ] {
        run(
            "ip",
            &[
                "-n", &k.ns, "neigh", "add", ip, "lladdr", mac, "dev", "vxlan1",
            ],
        )?;
        v.vtep(&["neigh", "add", ip, "lladdr", mac, "vni", "42"])?;
    }
    let kfdb = run(
        "bridge",
        &["-n", &k.ns, "-j", "fdb", "show", "dev", "vxlan1"],
    )?;
    let vfdb = v.vtep(&["-j", "fdb", "show"])?;
    for filter in [
        r#"[.[] | select(.dst=="192.168.104.3") | .mac] | sort"#,
        r#"[.[] | select(.dst=="192.168.104.4") | .mac] | sort"#,
        r#"[.[] | select(.state=="permanent") | .mac] | sort"#,
        r#"[.[] | select(.state=="") | .mac] | sort"#,
        r#"[.[] | select(.flags | index("extern_learn")) | .mac] | sort"#,
        r#"[.[] | select(.mac=="00:00:00:00:00:00") | .dst] | sort"#,
        r#"[.[] | select(.dst != null) | {mac, dst, state}] | sort_by(.mac, .dst)"#,
        r#"[.[] | select(.dst != null) | .flags] | sort"#,
        r#"[.[] | select(.dst != null)] | length"#,
    ] {
        let (a, b) = (jq(filter, &kfdb)?, jq(filter, &vfdb)?);
        ensure!(
            a == b,
            "jq '{filter}': bridge says {a}, vtep says {b}\nbridge: {kfdb}\nvtep: {vfdb}"
        );
    }
    let kneigh = run("ip", &["-n", &k.ns, "-j", "neigh", "show", "dev", "vxlan1"])?;
    let vneigh = v.vtep(&["-j", "neigh", "show"])?;
    for filter in [
        r#"[.[] | {dst, lladdr, state}] | sort_by(.dst)"#,
        r#"[.[] | select(.state | index("PERMANENT")) | .dst] | sort"#,
        r#"[.[] | select(.lladdr=="02:42:c0:a8:00:05") | .dst]"#,
    ] {
        let (a, b) = (jq(filter, &kneigh)?, jq(filter, &vneigh)?);
        ensure!(
            a == b,
            "jq '{filter}': ip says {a}, vtep says {b}\nip: {kneigh}\nvtep: {vneigh}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 8. Batch

#[test]
fn batch_of_100k_lines_and_a_bad_line() -> Result<()> {
    let tag = unique_tag("fnd");
    let bed = Testbed::underlay(&tag, vec![Stack::vtep(), Stack::vtep()])?;
    let h1 = bed.c1();
    let dir = std::env::temp_dir();
    let big = dir.join(format!("{tag}-big.batch"));
    let bad = dir.join(format!("{tag}-bad.batch"));
    struct Rm(Vec<std::path::PathBuf>);
    impl Drop for Rm {
        fn drop(&mut self) {
            for p in &self.0 {
                std::fs::remove_file(p).ok();
            }
        }
    }
    let _rm = Rm(vec![big.clone(), bad.clone()]);

    let mut text = String::new();
    for i in 0..100_000u32 {
        text.push_str(&format!(
            "fdb add 02:10:{:02x}:{:02x}:{:02x}:01 dst 192.168.104.{} vni 9\n",
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255,
            10 + i % 200
        ));
    }
    std::fs::write(&big, text)?;
    let start = Instant::now();
    h1.vtep(&["-batch", &big.display().to_string()])?;
    eprintln!("100,000-line batch in {:?}", start.elapsed());
    let n = array(&json(h1, &["fdb", "show", "vni", "9"])?)?.len();
    ensure!(n == 100_000, "fdb show vni 9 lists {n} entries");
    h1.vtep(&["fdb", "flush", "vni", "9"])?;
    ensure!(array(&json(h1, &["fdb", "show", "vni", "9"])?)?.is_empty());

    let mac = |i: u32| format!("02:20:00:00:00:{i:02x}");
    let mut lines: Vec<String> = (1..=8)
        .map(|i| format!("fdb add {} dst 192.168.104.3 vni 8", mac(i)))
        .collect();
    lines[4] = "fdb add 02:20:zz:00:00:05 dst 192.168.104.3 vni 8".to_string();
    std::fs::write(&bad, lines.join("\n") + "\n")?;
    let macs = || -> Result<BTreeSet<String>> {
        Ok(array(&json(h1, &["fdb", "show", "vni", "8"])?)?
            .iter()
            .filter_map(|e| e["mac"].as_str().map(String::from))
            .collect())
    };
    let path = bad.display().to_string();
    let out = vtep_output(&["-n", &h1.ns, "-batch", &path])?;
    ensure!(!out.status.success(), "a batch with a bad line succeeded");
    ensure!(stderr(&out).contains("line 5"), "stderr: {}", stderr(&out));
    let want: BTreeSet<String> = (1..=4).map(mac).collect();
    ensure!(macs()? == want, "after the stopped batch: {:?}", macs()?);

    let out = vtep_output(&["-n", &h1.ns, "--force", "-batch", &path])?;
    ensure!(!out.status.success(), "--force hid the failed line");
    ensure!(stderr(&out).contains("line 5"), "stderr: {}", stderr(&out));
    let want: BTreeSet<String> = [1, 2, 3, 4, 6, 7, 8].into_iter().map(mac).collect();
    ensure!(macs()? == want, "after --force: {:?}", macs()?);
    Ok(())
}
