//! The reference scenario between two virtual machines, on Debian 12's kernel (6.1) and on
//! a current one (6.12 from bookworm-backports), over virtio_net. Slow (TCG): one pair of
//! VMs at a time, each test well under two minutes.

use anyhow::Result;
use vtep_testbed::{
    netns::unique_tag,
    vm::{
        reference::{tcp_result, udp_result, Stack},
        Pair, Series,
    },
};

fn both_ways(pair: &Pair) -> Result<()> {
    for from in [0, 1] {
        let got = pair.ping(from, 3)?;
        assert_eq!(got, 3, "ping from VM {} got {got} of 3 replies", from + 1);
    }
    Ok(())
}

fn classic_between_vms(series: Series) -> Result<()> {
    let pair = Pair::boot(series, &unique_tag("vm"))?;
    pair.configure([&Stack::Kernel, &Stack::Kernel])?;
    both_ways(&pair)
}

#[test]
fn kernel_vxlan_between_vms_on_6_1() -> Result<()> {
    classic_between_vms(Series::V6_1)
}

#[test]
fn kernel_vxlan_between_vms_on_6_12() -> Result<()> {
    classic_between_vms(Series::V6_12)
}

fn vtep(up_args: &str) -> Stack {
    Stack::Vtep(up_args.to_string())
}

/// The README's commands on both VMs, ping both ways, then a short TCP and UDP iperf3.
fn vtep_between_vms(series: Series, up_args: &str) -> Result<Pair> {
    let pair = Pair::boot(series, &unique_tag("vm"))?;
    let stack = vtep(up_args);
    pair.configure([&stack, &stack])?;
    both_ways(&pair)?;
    let (gbits, retransmits) = tcp_result(&pair.iperf(3, None)?)?;
    assert!(gbits > 0.01, "TCP through the tunnel: {gbits} Gbit/s");
    eprintln!(
        "TCP {:.0} Mbit/s, {retransmits} retransmits",
        gbits * 1000.0
    );
    let (packets, lost) = udp_result(&pair.iperf(2, Some("20M"))?)?;
    assert!(
        packets > 100 && lost < 5.0,
        "UDP: {packets} packets, {lost}% lost"
    );
    let stats: serde_json::Value = serde_json::from_str(&pair.vms[1].run("vtep -j stats")?)?;
    assert!(stats["decap"].as_u64().unwrap_or(0) > 1000, "{stats}");
    Ok(pair)
}

#[test]
fn vtep_tc_decap_between_vms_on_6_12() -> Result<()> {
    let pair = vtep_between_vms(Series::V6_12, "")?;
    let eth1 = pair.vms[1].run("ip -d link show eth1")?;
    assert!(
        !eth1.contains("xdp"),
        "no XDP expected with TC decap: {eth1}"
    );
    Ok(())
}

#[test]
fn vtep_native_xdp_decap_on_virtio_net_on_6_12() -> Result<()> {
    let pair = vtep_between_vms(Series::V6_12, "--decap xdp --xdp-mode native")?;
    // `ip link` says xdpgeneric for skb mode and plain xdp for the driver's own hook.
    for vm in &pair.vms {
        let eth1 = vm.run("ip link show eth1")?;
        assert!(
            eth1.contains(" xdp ") && !eth1.contains("xdpgeneric"),
            "[{}] native XDP not attached: {eth1}",
            vm.name
        );
    }
    Ok(())
}

#[test]
fn vtep_interoperates_with_kernel_vxlan_between_vms_on_6_12() -> Result<()> {
    let pair = Pair::boot(Series::V6_12, &unique_tag("vm"))?;
    pair.configure([&vtep(""), &Stack::Kernel])?;
    both_ways(&pair)?;
    let (gbits, _) = tcp_result(&pair.iperf(3, None)?)?;
    assert!(gbits > 0.01, "TCP vtep -> kernel vxlan: {gbits} Gbit/s");
    Ok(())
}
