//! The reference scenario between two virtual machines, on Debian 12's kernel (6.1) and on
//! a current one (6.12 from bookworm-backports), over virtio_net. Slow (TCG): one pair of
//! VMs at a time, each test well under two minutes.

use anyhow::Result;
use vtep_testbed::{
    netns::unique_tag,
    vm::{reference::Stack, Pair, Series},
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
