//! The reference scenario over an IPv6 underlay (2001:db8::2 and ::3 on the hosts' eth1s):
//! vtep to vtep, and vtep with the kernel's vxlan device (`local 2001:db8::3`) both ways.

use anyhow::Result;
use vtep_testbed::{iperf, netns::unique_tag, ping, Stack, Testbed, Underlay};

fn pings_and_tcp_both_ways(stacks: [Stack; 2]) -> Result<()> {
    let bed = Testbed::new_on(&unique_tag("u6"), stacks, Underlay::V6)?;
    let (c1, c2) = (bed.c1(), bed.c2());
    assert!(
        ping(&c1.container, &c2.container_ip, 3)?,
        "12.12.12.2 -> 12.12.12.3 over IPv6 failed"
    );
    assert!(
        ping(&c2.container, &c1.container_ip, 3)?,
        "12.12.12.3 -> 12.12.12.2 over IPv6 failed"
    );
    for (from, to) in [(c1, c2), (c2, c1)] {
        let r = iperf::tcp(&from.container, &to.container, &to.container_ip, 3, 1)?;
        assert!(
            r.gbits > 1.0 && r.retransmit_ratio() < 0.01,
            "TCP {} -> {} over IPv6: {:.2} Gbit/s, {:.2}% retransmitted",
            from.container_ip,
            to.container_ip,
            r.gbits,
            100.0 * r.retransmit_ratio()
        );
    }
    let decap = c1.counter("decap")?;
    assert!(decap > 0, "host 1 decapsulated nothing");
    Ok(())
}

#[test]
fn vtep_to_vtep_over_ipv6_pings_and_carries_tcp() -> Result<()> {
    pings_and_tcp_both_ways([Stack::vtep(), Stack::vtep()])
}

#[test]
fn vtep_and_the_kernel_vxlan_over_ipv6_interoperate() -> Result<()> {
    pings_and_tcp_both_ways([Stack::vtep(), Stack::Kernel])
}
