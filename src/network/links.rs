//! The node's links over rtnetlink: the bridge, a pod's veth pair, the pod side of it
//! (inside the pod's namespace) and their removal. Each call is idempotent where the
//! node needs it to be (an existing bridge or address is adopted, a missing link is
//! already deleted), so `NodeNetwork` can repeat a half-done setup after a crash.

use super::netns;
use super::NetworkError;
use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoPortKind, InfoVeth, LinkAttribute};
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth,
    RouteMessageBuilder,
};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

const ENODEV: i32 = 19;
const EEXIST: i32 = 17;

pub(super) fn netlink(what: &str) -> impl FnOnce(rtnetlink::Error) -> NetworkError + '_ {
    move |e| NetworkError::Netlink(format!("{what}: {e}"))
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> NetworkError {
    move |source| NetworkError::Io {
        what: what.into(),
        source,
    }
}

fn errno_of(e: &rtnetlink::Error) -> i32 {
    match e {
        rtnetlink::Error::NetlinkError(m) => -m.raw_code(),
        _ => 0,
    }
}

/// `Ok(())` for success and for the one errno that means "already so".
fn tolerate(r: Result<(), rtnetlink::Error>, errno: i32, what: &str) -> Result<(), NetworkError> {
    match r {
        Err(e) if errno_of(&e) != errno => Err(netlink(what)(e)),
        _ => Ok(()),
    }
}

/// A link by name: its message, or `None` if there is no such link.
async fn link(
    rtnl: &Handle,
    name: &str,
) -> Result<Option<rtnetlink::packet_route::link::LinkMessage>, NetworkError> {
    let mut links = rtnl.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(l) => Ok(l),
        Err(e) if errno_of(&e) == ENODEV => Ok(None),
        Err(e) => Err(netlink("looking up a link")(e)),
    }
}

pub(super) async fn link_index(rtnl: &Handle, name: &str) -> Result<Option<u32>, NetworkError> {
    Ok(link(rtnl, name).await?.map(|l| l.header.index))
}

/// Creates (or adopts) the bridge, gives it the gateway address and brings it up.
pub(super) async fn ensure_bridge(
    rtnl: &Handle,
    name: &str,
    mtu: u32,
    gateway: Ipv4Addr,
    prefix: u8,
) -> Result<u32, NetworkError> {
    let index = match link_index(rtnl, name).await? {
        Some(i) => i,
        None => {
            let msg = LinkBridge::new(name).mtu(mtu).build();
            tolerate(
                rtnl.link().add(msg).execute().await,
                EEXIST,
                "creating the bridge",
            )?;
            link_index(rtnl, name)
                .await?
                .ok_or_else(|| NetworkError::Netlink(format!("bridge {name} vanished")))?
        }
    };
    let add = rtnl.address().add(index, IpAddr::V4(gateway), prefix);
    tolerate(add.execute().await, EEXIST, "adding the gateway address")?;
    rtnl.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(netlink("setting the bridge up"))?;
    Ok(index)
}

/// A new rtnetlink connection, its task spawned on the current runtime; it ends when the
/// last clone of the handle is dropped.
pub(super) fn connect() -> Result<Handle, NetworkError> {
    let (conn, rtnl, _) = rtnetlink::new_connection().map_err(io("netlink socket"))?;
    tokio::spawn(conn);
    Ok(rtnl)
}

/// Hairpin mode on a bridge port, as CNI's bridge plugin with `hairpinMode: true`
/// (flannel, k3s): with br_netfilter loaded, a pod's connection to its own hostPort is
/// DNATed while being bridged and must go back out the port it came in on.
async fn set_hairpin(rtnl: &Handle, veth: &str) -> Result<(), NetworkError> {
    let msg = LinkMessageBuilder::<LinkBridgePort>::default()
        .name(veth.to_string())
        .set_port_kind(InfoPortKind::Bridge)
        .hairpin(true)
        .build();
    rtnl.link()
        .set_port(msg)
        .execute()
        .await
        .map_err(netlink("setting hairpin mode on the pod's veth"))
}

/// The pod's veth pair: `veth` on the bridge (up, hairpin) and its peer created right
/// inside the pod's namespace, already named eth0. `replace_stale` lets an existing link of
/// that name (this pod's previous veth, not freed yet) be deleted first.
pub(super) async fn create_pod_veth(
    rtnl: &Handle,
    veth: &str,
    mtu: u32,
    bridge: u32,
    ns: &File,
    replace_stale: bool,
) -> Result<(), NetworkError> {
    let msg = || {
        let peer = LinkUnspec::new_with_name("eth0")
            .mtu(mtu)
            .setns_by_fd(ns.as_raw_fd())
            .build();
        LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(veth.to_string())
            .mtu(mtu)
            .controller(bridge)
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build()
    };
    match rtnl.link().add(msg()).execute().await {
        // The veth of this pod's previous sandbox, its namespace released but not freed by
        // the kernel yet: take it down now and create the new one.
        Err(e) if errno_of(&e) == EEXIST && replace_stale => {
            delete_link(rtnl, veth).await?;
            rtnl.link()
                .add(msg())
                .execute()
                .await
                .map_err(netlink("creating the pod's veth"))?
        }
        r => r.map_err(netlink("creating the pod's veth"))?,
    }
    set_hairpin(rtnl, veth).await
}

/// Whether `veth` exists; one that lost its bridge (the bridge was deleted and made
/// again) is put back on it, so the pod keeps its namespace.
pub(super) async fn ensure_attached(
    rtnl: &Handle,
    veth: &str,
    bridge: u32,
) -> Result<bool, NetworkError> {
    let Some(link) = link(rtnl, veth).await? else {
        return Ok(false);
    };
    let attached = link
        .attributes
        .iter()
        .any(|a| matches!(a, LinkAttribute::Controller(i) if *i == bridge));
    if !attached {
        let msg = LinkUnspec::new_with_index(link.header.index)
            .controller(bridge)
            .up()
            .build();
        rtnl.link()
            .set(msg)
            .execute()
            .await
            .map_err(netlink("attaching the pod's veth to the bridge"))?;
        set_hairpin(rtnl, veth).await?;
    }
    Ok(true)
}

/// Deletes a link by name (a veth takes its peer with it); a missing one is fine.
pub(super) async fn delete_link(rtnl: &Handle, name: &str) -> Result<(), NetworkError> {
    if let Some(index) = link_index(rtnl, name).await? {
        tolerate(
            rtnl.link().del(index).execute().await,
            ENODEV,
            "deleting a link",
        )?;
    }
    Ok(())
}

pub(super) async fn delete_link_index(rtnl: &Handle, index: u32) -> Result<(), NetworkError> {
    tolerate(
        rtnl.link().del(index).execute().await,
        ENODEV,
        "deleting a link",
    )
}

/// Inside the pod's namespace (see `netns::run_in`): loopback and eth0 up, the address,
/// the default route via the bridge. The netlink socket is opened on this thread, so it
/// belongs to the pod's namespace.
pub(super) async fn configure_pod_side(
    pin: &std::path::Path,
    ip: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
) -> Result<(), NetworkError> {
    netns::run_in(pin, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(io("starting the namespace's netlink runtime"))?;
        rt.block_on(pod_side(ip, prefix, gateway))
    })
    .await
    .map_err(io("entering the pod's namespace"))?
}

async fn pod_side(ip: Ipv4Addr, prefix: u8, gateway: Ipv4Addr) -> Result<(), NetworkError> {
    let rtnl = connect()?;
    rtnl.link()
        .set(LinkUnspec::new_with_name("lo").up().build())
        .execute()
        .await
        .map_err(netlink("setting lo up"))?;
    let idx = link_index(&rtnl, "eth0")
        .await?
        .ok_or_else(|| NetworkError::Netlink("eth0 missing in the pod namespace".into()))?;
    let add = rtnl.address().add(idx, IpAddr::V4(ip), prefix);
    tolerate(add.execute().await, EEXIST, "adding the pod address")?;
    rtnl.link()
        .set(LinkUnspec::new_with_index(idx).up().build())
        .execute()
        .await
        .map_err(netlink("setting eth0 up"))?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .output_interface(idx)
        .build();
    tolerate(
        rtnl.route().add(route).execute().await,
        EEXIST,
        "adding the default route",
    )
}
