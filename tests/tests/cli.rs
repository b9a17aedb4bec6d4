//! Bad input: one clear error line, a non-zero exit, and nothing changed.

use anyhow::Result;
use vtep_testbed::{
    cmd::{run, vtep_output},
    netns::unique_tag,
    Netns, Stack, Testbed,
};

/// Everything a user could inspect that a failed command must not have changed.
fn snapshot(bed: &Testbed, tag: &str) -> Result<String> {
    let h1 = bed.c1();
    let namespaces: Vec<String> = run("ip", &["netns", "list"])?
        .lines()
        .filter(|l| l.starts_with(tag))
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
        .collect();
    Ok(format!(
        "{}\n{}\n{}\n{}\n{:?}",
        h1.vtep(&["port", "show"])?,
        h1.vtep(&["fdb", "show"])?,
        h1.vtep(&["neigh", "show"])?,
        run("ip", &["-n", &h1.ns, "-o", "link", "show"])?,
        namespaces
    ))
}

#[test]
fn bad_input_is_one_error_line_a_nonzero_exit_and_no_change() -> Result<()> {
    let tag = unique_tag("cli");
    let bed = Testbed::new(&tag, [Stack::vtep(), Stack::vtep()])?;
    let idle = Netns::add(&format!("{tag}idle"))?;
    let h1 = bed.c1().ns.clone();
    let c1 = bed.c1().container.clone();
    let fresh = format!("{tag}new");
    let mac = "02:42:c0:a8:00:09";
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "malformed MAC",
            vec![
                "-n",
                &h1,
                "fdb",
                "add",
                "02:42:zz:a8:00:09",
                "dst",
                "192.168.104.3",
                "vni",
                "42",
            ],
            "invalid MAC",
        ),
        (
            "short MAC",
            vec![
                "-n",
                &h1,
                "neigh",
                "add",
                "12.12.12.9",
                "lladdr",
                "02:42:c0",
                "vni",
                "42",
            ],
            "invalid MAC",
        ),
        (
            "port MAC",
            vec![
                "-n",
                &h1,
                "port",
                "add",
                &fresh,
                "--mac",
                "02-42",
                "--addr",
                "12.12.12.9/24",
                "--vni",
                "42",
            ],
            "invalid MAC",
        ),
        (
            "malformed IP",
            vec![
                "-n",
                &h1,
                "fdb",
                "add",
                mac,
                "dst",
                "192.168.104",
                "vni",
                "42",
            ],
            "invalid IP address",
        ),
        (
            "malformed neighbour IP",
            vec![
                "-n",
                &h1,
                "neigh",
                "add",
                "12.12.12.300",
                "lladdr",
                mac,
                "vni",
                "42",
            ],
            "invalid IP address",
        ),
        (
            "malformed prefix",
            vec![
                "-n",
                &h1,
                "port",
                "add",
                &fresh,
                "--mac",
                mac,
                "--addr",
                "12.12.12.9",
                "--vni",
                "42",
            ],
            "invalid address",
        ),
        (
            "VNI too large",
            vec![
                "-n",
                &h1,
                "fdb",
                "add",
                mac,
                "dst",
                "192.168.104.3",
                "vni",
                "16777216",
            ],
            "invalid VNI",
        ),
        (
            "port VNI too large",
            vec![
                "-n",
                &h1,
                "port",
                "add",
                &fresh,
                "--mac",
                mac,
                "--addr",
                "12.12.12.9/24",
                "--vni",
                "16777216",
            ],
            "invalid VNI",
        ),
        (
            "UDP port 0",
            vec![
                "-n",
                &h1,
                "fdb",
                "add",
                mac,
                "dst",
                "192.168.104.3",
                "vni",
                "42",
                "port",
                "0",
            ],
            "invalid UDP port",
        ),
        (
            "UDP port 65536",
            vec![
                "-n",
                &h1,
                "up",
                "--dev",
                "eth1",
                "--local",
                "192.168.104.2",
                "--port",
                "65536",
            ],
            "invalid UDP port",
        ),
        (
            "unknown keyword",
            vec![
                "-n",
                &h1,
                "fdb",
                "add",
                mac,
                "via",
                "192.168.104.3",
                "vni",
                "42",
            ],
            "unknown argument",
        ),
        (
            "missing vni",
            vec!["-n", &h1, "fdb", "add", mac, "dst", "192.168.104.3"],
            "missing \"vni\"",
        ),
        (
            "unknown namespace",
            vec!["-n", "vtep-no-such-ns", "fdb", "show"],
            "does not exist",
        ),
        (
            "fdb add before up",
            vec![
                "-n",
                &idle.name,
                "fdb",
                "add",
                mac,
                "dst",
                "192.168.104.3",
                "vni",
                "42",
            ],
            "not up",
        ),
        (
            "port add twice",
            vec![
                "-n",
                &h1,
                "port",
                "add",
                &c1,
                "--mac",
                mac,
                "--addr",
                "12.12.12.9/24",
                "--vni",
                "42",
            ],
            "already exists",
        ),
        (
            "fdb add on an existing entry",
            vec![
                "-n",
                &h1,
                "fdb",
                "add",
                "02:42:c0:a8:00:03",
                "dst",
                "192.168.104.9",
                "vni",
                "42",
            ],
            "already exists",
        ),
        (
            "up again on another device",
            vec!["-n", &h1, "up", "--dev", "lo", "--local", "192.168.104.2"],
            "moving it to another device",
        ),
        (
            "up again with another learned-table size",
            vec![
                "-n",
                &h1,
                "up",
                "--dev",
                "eth1",
                "--local",
                "192.168.104.2",
                "--max-learned",
                "10",
            ],
            "--max-learned",
        ),
        (
            "TTL 0",
            vec![
                "-n",
                &idle.name,
                "up",
                "--dev",
                "eth1",
                "--local",
                "192.168.104.2",
                "--ttl",
                "0",
            ],
            "invalid TTL",
        ),
        (
            "empty source port range",
            vec![
                "-n",
                &idle.name,
                "up",
                "--dev",
                "lo",
                "--local",
                "127.0.0.1",
                "--srcport",
                "5000",
                "4000",
            ],
            "is empty",
        ),
        (
            "TOS too large",
            vec![
                "-n",
                &h1,
                "up",
                "--dev",
                "eth1",
                "--local",
                "192.168.104.2",
                "--tos",
                "300",
            ],
            "invalid TOS",
        ),
        (
            "no learned entries",
            vec![
                "-n",
                &h1,
                "up",
                "--dev",
                "eth1",
                "--local",
                "192.168.104.2",
                "--max-learned",
                "0",
            ],
            "invalid table size",
        ),
        (
            "xdp mode with tc decap",
            vec![
                "-n",
                &h1,
                "up",
                "--dev",
                "eth1",
                "--local",
                "192.168.104.2",
                "--decap",
                "tc",
                "--xdp-mode",
                "native",
            ],
            "--xdp-mode needs",
        ),
        (
            "append of a unicast MAC",
            vec![
                "-n",
                &h1,
                "fdb",
                "append",
                mac,
                "dst",
                "192.168.104.3",
                "vni",
                "42",
            ],
            "fdb append",
        ),
        (
            "flood-list VTEP not on the list",
            vec![
                "-n",
                &h1,
                "fdb",
                "del",
                "00:00:00:00:00:00",
                "dst",
                "192.168.104.9",
                "vni",
                "42",
            ],
            "no flood list",
        ),
        (
            "neighbour del of a missing entry",
            vec!["-n", &h1, "neigh", "del", "12.12.12.9", "vni", "42"],
            "no neighbour",
        ),
        (
            "port del of a missing port",
            vec!["-n", &h1, "port", "del", &fresh],
            "no port",
        ),
        (
            "monitor before up",
            vec!["-n", &idle.name, "monitor"],
            "not up",
        ),
        ("stats before up", vec!["-n", &idle.name, "stats"], "not up"),
        ("down before up", vec!["-n", &idle.name, "down"], "not up"),
        (
            "port add before up",
            vec![
                "-n",
                &idle.name,
                "port",
                "add",
                &fresh,
                "--mac",
                mac,
                "--addr",
                "12.12.12.9/24",
                "--vni",
                "42",
            ],
            "not up",
        ),
        (
            "unknown underlay",
            vec![
                "-n",
                &idle.name,
                "up",
                "--dev",
                "eth9",
                "--local",
                "192.168.104.2",
            ],
            "does not exist",
        ),
        (
            "local address not on the host",
            vec![
                "-n",
                &idle.name,
                "up",
                "--dev",
                "lo",
                "--local",
                "192.168.104.2",
            ],
            "not an address",
        ),
        (
            "del of a missing entry",
            vec!["-n", &h1, "fdb", "del", mac, "vni", "42"],
            "no FDB entry",
        ),
        (
            "port with the MAC of a permanent FDB entry",
            vec![
                "-n",
                &h1,
                "port",
                "add",
                &fresh,
                "--mac",
                "02:42:c0:a8:00:03",
                "--addr",
                "12.12.12.9/24",
                "--vni",
                "42",
            ],
            "has a permanent FDB entry",
        ),
        (
            "port add failing half-way",
            vec![
                "-n",
                &h1,
                "port",
                "add",
                &fresh,
                "--mac",
                mac,
                "--addr",
                "12.12.12.9/24",
                "--vni",
                "42",
                "--ifname",
                "lo",
            ],
            "creating veth",
        ),
    ];
    for (what, args, expect) in cases {
        let before = snapshot(&bed, &tag)?;
        let out = vtep_output(&args)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: succeeded");
        assert_eq!(stderr.lines().count(), 1, "{what}: not one line: {stderr}");
        assert!(stderr.starts_with("vtep: "), "{what}: {stderr}");
        assert!(
            stderr.contains(expect),
            "{what}: expected \"{expect}\" in: {stderr}"
        );
        assert!(
            out.stdout.is_empty(),
            "{what}: printed {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(snapshot(&bed, &tag)?, before, "{what}: state changed");
    }
    Ok(())
}

#[test]
fn show_commands_speak_json() -> Result<()> {
    let bed = Testbed::new(&unique_tag("j"), [Stack::vtep(), Stack::vtep()])?;
    let h1 = bed.c1();
    let ports: serde_json::Value = serde_json::from_str(&h1.vtep(&["-j", "port", "show"])?)?;
    assert_eq!(ports[0]["netns"], h1.container.as_str());
    assert_eq!(ports[0]["mac"], "02:42:c0:a8:00:02");
    assert_eq!(ports[0]["addr"], "12.12.12.2/24");
    assert_eq!(ports[0]["vni"], 42);
    assert_eq!(ports[0]["mtu"], 1450);
    let fdb: serde_json::Value = serde_json::from_str(&h1.vtep(&["-j", "fdb", "show"])?)?;
    let remote = fdb
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["mac"] == "02:42:c0:a8:00:03")
        .expect("remote entry");
    assert_eq!(remote["dst"], "192.168.104.3");
    assert_eq!(remote["port"], 4789);
    assert_eq!(remote["state"], "permanent");
    let neigh: serde_json::Value = serde_json::from_str(&h1.vtep(&["-j", "neigh", "show"])?)?;
    assert_eq!(neigh[0]["dst"], "12.12.12.3");
    assert_eq!(neigh[0]["lladdr"], "02:42:c0:a8:00:03");
    let text = h1.vtep(&["fdb", "show"])?;
    assert!(
        text.contains("02:42:c0:a8:00:03 dst 192.168.104.3 vni 42 port 4789 permanent"),
        "{text}"
    );
    // The container side looks like the classic setup's.
    let link = run(
        "ip",
        &["-n", &h1.container, "-o", "addr", "show", "dev", "eth0"],
    )?;
    assert!(link.contains("12.12.12.2/24"), "{link}");
    let details = run("ip", &["-n", &h1.container, "link", "show", "eth0"])?;
    assert!(
        details.contains("mtu 1450") && details.contains("02:42:c0:a8:00:02"),
        "{details}"
    );
    // fdb del / replace / neigh del round-trip.
    h1.vtep(&[
        "fdb",
        "replace",
        "02:42:c0:a8:00:03",
        "dst",
        "192.168.104.9",
        "vni",
        "42",
        "port",
        "8472",
    ])?;
    assert!(h1
        .vtep(&["fdb", "show"])?
        .contains("dst 192.168.104.9 vni 42 port 8472"));
    h1.vtep(&["fdb", "del", "02:42:c0:a8:00:03", "vni", "42"])?;
    h1.vtep(&["neigh", "del", "12.12.12.3", "vni", "42"])?;
    assert!(!h1.vtep(&["fdb", "show"])?.contains("02:42:c0:a8:00:03"));
    assert_eq!(h1.vtep(&["neigh", "show"])?, "");
    Ok(())
}

#[test]
fn without_root_vtep_says_so_in_one_line() -> Result<()> {
    let bin = vtep_testbed::vtep_bin();
    let out = vtep_testbed::cmd::output(
        "setpriv",
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            &bin.to_string_lossy(),
            "fdb",
            "show",
        ],
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("must run as root"), "{stderr}");
    Ok(())
}
