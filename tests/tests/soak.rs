//! A 30-second soak (`cargo xtask soak --seconds N` runs longer ones): no lost reply while
//! upgrades and FDB churn go on, and nothing accumulates.

use vtep_testbed::soak;

#[test]
fn thirty_second_soak_loses_nothing() -> anyhow::Result<()> {
    let r = soak::run(30)?;
    eprintln!("{r:?}");
    assert_eq!(r.lost(), 0, "{} of {} pings lost", r.lost(), r.pings_sent);
    assert!(r.pings_sent >= 30 * 400, "the ping ran: {r:?}");
    assert!(r.upgrades >= 10, "vtep up re-ran: {r:?}");
    assert!(r.fdb_ops >= 100, "the FDB churned: {r:?}");
    assert!(r.tcp_gbits > 0.1, "the TCP stream ran: {r:?}");
    // Only the one permanent remote entry remains: churned entries were all removed.
    assert_eq!(r.fdb_entries, 1, "{r:?}");
    assert!(
        r.loader_max_rss_kib < 64 * 1024,
        "vtep peaked at {} KiB",
        r.loader_max_rss_kib
    );
    Ok(())
}
