//! Verdict counters: one slot per outcome in the per-CPU STATS array.

macro_rules! counters {
    ($($id:ident = $idx:literal, $name:literal, $help:literal;)*) => {
        $(pub const $id: u32 = $idx;)*
        /// (name, meaning) of every counter, indexed by id.
        pub const ALL: &[(&str, &str)] = &[$(($name, $help)),*];
    };
}

counters! {
    ENCAP = 0, "encap", "unicast frames from a port encapsulated and handed to the underlay";
    DECAP = 1, "decap", "VXLAN frames decapsulated into a local port";
    LOCAL = 2, "local", "frames switched between two local ports of one VNI";
    ARP_REPLY = 3, "arp_reply", "ARP requests answered from the neighbour table";
    NEIGH_RESOLVE = 4, "neigh_resolve", "of those, frames handed to the kernel to resolve the underlay next hop";
    DROP_NO_FDB = 5, "drop_no_fdb", "unicast to a MAC neither local nor in the FDB, with nowhere to flood";
    DROP_ARP_MISS = 6, "drop_arp_miss", "broadcast ARP the neighbour table cannot answer, with nowhere to flood";
    DROP_BUM = 7, "drop_bum", "broadcast or multicast frames with nowhere to flood";
    DROP_MALFORMED = 8, "drop_malformed", "frames from a port too short to parse";
    PASS_NOT_PORT = 9, "pass_not_port", "frames on an interface that is not a configured port (left to the kernel)";
    DROP_NO_ROUTE = 10, "drop_no_route", "no underlay route or next hop to the remote VTEP";
    DROP_ENCAP_FAIL = 11, "drop_encap_fail", "the kernel refused to make room for the outer headers";
    DROP_NOT_READY = 12, "drop_not_ready", "frames from a port seen before the tunnel was configured";
    PASS_NOT_VXLAN = 13, "pass_not_vxlan", "underlay frames that are not VXLAN for this VTEP (left to the host)";
    PASS_BAD_VXLAN = 14, "pass_bad_vxlan", "VXLAN frames with bad flags, checksum or lengths (left to the host)";
    PASS_NO_PORT = 15, "pass_no_port", "VXLAN frames whose VNI and inner destination match no local port";
    DROP_DECAP_FAIL = 16, "drop_decap_fail", "the kernel refused to remove the outer headers";
    FLOOD_LOCAL = 17, "flood_local", "copies of broadcast/unknown frames delivered to local ports";
    FLOOD_REMOTE = 18, "flood_remote", "copies of broadcast/unknown frames sent to flood-list VTEPs";
    LEARNED = 19, "learned", "FDB entries learned or moved from received frames";
    AGED = 20, "aged", "learned FDB entries found expired and removed";
    REFLECT = 21, "reflect", "encapsulated frames routed through the underlay's ingress for neighbour resolution";
    MISS_LOST = 22, "miss_lost", "miss events lost because the monitor ring was full";
    DROP_SPOOF = 23, "drop_spoof", "frames from a port with a source MAC or IP not its own";
    DROP_UNKNOWN_PEER = 24, "drop_unknown_peer", "VXLAN from a VTEP outside the VNI's FDB and flood list (--strict-peers)";
    PASS_NOT_READY = 25, "pass_not_ready", "underlay frames seen before the tunnel was configured (left to the host)";
    FLOOD = 26, "flood", "broadcast, multicast and unknown-unicast frames from a port replicated (copies in flood_local and flood_remote)";
    ICMP_TOO_BIG = 27, "icmp_too_big", "frames too big for the underlay, answered with ICMP fragmentation needed (IPv4 with DF) or ICMPv6 packet too big";
    DROP_TOO_BIG = 28, "drop_too_big", "frames too big for the underlay that get no ICMP (IPv4 without DF, not IP, or ICMP not allowed)";
    DROP_ECN = 29, "drop_ecn", "VXLAN frames marked CE outside around a Not-ECT inner packet (RFC 6040)";
    DROP_VLAN = 30, "drop_vlan", "frames from a port with more than two VLAN tags";
    DROP_LINK_LOCAL = 31, "drop_link_local", "IEEE 802.1D link-local frames (01:80:c2:00:00:0x: STP, LACP, LLDP), which a bridge never forwards";
    MISS_SENT = 32, "miss_sent", "miss events written for `vtep monitor` (none while nobody reads)";
    MISS_LIMITED = 33, "miss_limited", "miss events held back: the same VNI and MAC or IP was reported less than a second ago";
    ND_REPLY = 34, "nd_reply", "IPv6 neighbour solicitations answered from the neighbour table";
    DROP_ND_MISS = 35, "drop_nd_miss", "multicast neighbour solicitations the neighbour table cannot answer, with nowhere to flood";
    ROUTER_SOLICIT = 36, "router_solicit", "of the multicast frames from ports, IPv6 router solicitations";
    ROUTER_ADVERT = 37, "router_advert", "of the multicast frames from ports, IPv6 router advertisements";
    MLD = 38, "mld", "of the multicast frames from ports, multicast listener queries, reports and dones (MLDv1 and v2)";
}

pub const COUNT: u32 = ALL.len() as u32;

#[cfg(test)]
mod tests {
    #[test]
    fn ids_index_names() {
        assert_eq!(super::ALL[super::PASS_NO_PORT as usize].0, "pass_no_port");
        assert_eq!(super::COUNT, 39);
    }
}
