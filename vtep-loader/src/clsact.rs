//! Removing a clsact qdisc, which aya 0.14 can add (`tc::qdisc_add_clsact`) but not
//! delete: one RTM_DELQDISC on a plain, blocking rtnetlink socket (the callers are sync
//! code that may run inside the tokio runtime, where rtnetlink's async handle cannot be
//! blocked on).

use std::io;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_route::{
    tc::{TcAttribute, TcHandle, TcMessage},
    RouteNetlinkMessage,
};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// Deletes the clsact qdisc of `ifindex` (and with it every filter on it). Naming the kind
/// makes the kernel refuse to delete an `ingress` qdisc in its place.
pub fn delete(ifindex: u32) -> io::Result<()> {
    let mut tc = TcMessage::default();
    tc.header.index = ifindex as i32;
    tc.header.parent = TcHandle::CLSACT;
    tc.header.handle = TcHandle {
        major: 0xffff,
        minor: 0,
    };
    tc.attributes.push(TcAttribute::Kind("clsact".into()));
    let mut req = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::from(RouteNetlinkMessage::DelQueueDiscipline(tc)),
    );
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    req.header.sequence_number = 1;
    req.finalize();
    let mut buf = vec![0; req.buffer_len()];
    req.serialize(&mut buf);

    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    socket.send(&buf, 0)?;
    let (reply, _) = socket.recv_from_full()?;
    let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    match reply.payload {
        NetlinkPayload::Error(e) if e.code.is_some() => Err(e.to_io()),
        _ => Ok(()),
    }
}
