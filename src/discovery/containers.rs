//! Containers behind `docker-proxy` holders.
//!
//! A port a Docker container publishes is held by dockerd's userland
//! forwarder, `docker-proxy`, one process per published host address. The
//! container, not the forwarder, is what a policy means, so each
//! `docker-proxy` holder is resolved to its container through the Docker
//! Engine API (see [`crate::docker`]).
//!
//! A member of the `docker` group who is not root cannot read docker-proxy's
//! fds (it runs as root), so its socket shows up as an unseen holder of uid
//! 0. Its argv in `/proc/PID/cmdline` is world-readable, though: such a
//! holder is matched to the docker-proxy whose argv publishes this port, and
//! the container resolved from there.
//!
//! No API call is made unless a holder is (or could be) a docker-proxy, so
//! discovery of ordinary ports costs nothing more.

use crate::docker::{parse_docker_proxy_argv, Client, ProxyArgs};
use crate::model::{Holder, PortState, Protocol, Unknown};
use std::net::SocketAddr;

/// Resolves the containers of `state`'s docker-proxy holders, first
/// identifying unseen root-owned holders as docker-proxies where their argv
/// shows it (`find_proxies` lists the docker-proxy processes there are).
pub fn identify(state: &mut PortState, find_proxies: impl FnOnce() -> Vec<Holder>) {
    let unseen_root =
        |h: &Holder| h.pid.is_none() && h.uid == 0 && h.unknown == Some(Unknown::NotYourProcess);
    if state.holders().iter().any(unseen_root) {
        let port = state.port;
        let proto = state.protocol;
        let mut proxies: Vec<Holder> = find_proxies()
            .into_iter()
            .filter(|p| publishes(p, port, proto))
            .collect();
        state.update_holders(|h| {
            if !unseen_root(h) {
                return;
            }
            let at = proxies.iter().position(|p| {
                let args = p.cmdline.as_deref().and_then(parse_docker_proxy_argv);
                args.is_some_and(|a| h.addrs.iter().any(|addr| listens_on(&a, *addr)))
            });
            if let Some(at) = at {
                let mut proxy = proxies.remove(at);
                proxy.addrs = h.addrs.clone();
                proxy.inodes = h.inodes.clone();
                proxy.user = h.user.clone();
                *h = proxy;
            }
        });
    }
    if !state.holders().iter().any(Holder::is_docker_proxy) {
        return;
    }
    let client = Client::from_env();
    state.update_holders(|h| {
        if !h.is_docker_proxy() || h.container.is_some() {
            return;
        }
        let Some(args) = h.cmdline.as_deref().and_then(parse_docker_proxy_argv) else {
            h.container_error =
                Some("its command line does not say which container it forwards to".into());
            return;
        };
        match client.as_ref().map(|c| c.find_container(&args)) {
            Ok(Ok(Some(container))) => h.container = Some(container),
            Ok(Ok(None)) => {
                h.container_error = Some(format!("no running container publishes {args}"));
            }
            Ok(Err(e)) => h.container_error = Some(e.to_string()),
            Err(e) => h.container_error = Some(e.to_string()),
        }
    });
}

/// Whether docker-proxy `p` publishes `port` over `proto`.
fn publishes(p: &Holder, port: u16, proto: Protocol) -> bool {
    p.cmdline
        .as_deref()
        .and_then(parse_docker_proxy_argv)
        .is_some_and(|a| a.host_port == port && a.proto == proto.as_str())
}

/// Whether a docker-proxy with `args` listens on the socket address `addr`
/// (its host address, or the wildcard of either family).
fn listens_on(args: &ProxyArgs, addr: SocketAddr) -> bool {
    args.host_port == addr.port() && (args.host_ip == addr.ip() || args.host_ip.is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{listening, HolderBuilder};

    fn proxy_argv(host_ip: &str, port: u16) -> Vec<String> {
        format!(
            "/usr/sbin/docker-proxy -proto tcp -host-ip {host_ip} -host-port {port} -container-ip 172.17.0.2 -container-port 80"
        )
        .split(' ')
        .map(String::from)
        .collect()
    }

    #[test]
    fn an_unseen_root_socket_is_matched_to_the_docker_proxy_publishing_it() {
        let unseen = HolderBuilder::unseen(0)
            .addr("127.0.0.1:45555")
            .with(|h| h.user = Some("root".into()))
            .build();
        let mut state = PortState::new(
            45555,
            Protocol::Tcp,
            vec![listening(45555, 77)],
            Vec::new(),
            vec![unseen],
        );
        let other = HolderBuilder::new(900)
            .with(|h| h.cmdline = Some(proxy_argv("127.0.0.1", 8080)))
            .build();
        let ours = HolderBuilder::new(901)
            .user(0, "root")
            .with(|h| h.cmdline = Some(proxy_argv("127.0.0.1", 45555)))
            .build();
        // No daemon is asked here: point DOCKER_HOST nowhere reachable.
        identify(&mut state, || vec![other, ours]);
        let h = &state.holders()[0];
        assert_eq!(h.pid, Some(901));
        assert!(h.is_docker_proxy());
        assert_eq!(h.inodes, vec![77]);
        assert!(h.container.is_some() || h.container_error.is_some());
    }

    #[test]
    fn ordinary_holders_are_left_alone_without_asking_docker() {
        let mut state = crate::fixtures::state(8787, vec![HolderBuilder::new(5).build()]);
        let before = state.clone();
        identify(&mut state, || {
            panic!("no docker-proxy lookup for an ordinary holder")
        });
        assert_eq!(state, before);
    }
}
