//! The bind probe: can a server bind the port right now?
//!
//! The socket table says who listens; only the kernel's bind says whether a
//! server can start. A port that is the local end of an outgoing connection
//! has no listener, yet a bind fails; sockets in TIME_WAIT after a server
//! stopped let a SO_REUSEADDR bind through but stop a server that does not
//! set it. So "free" is decided here: on the wildcard addresses (IPv4 and
//! IPv6, as a server binds), a plain bind first — when it succeeds nothing
//! at all is on the port, which is the common case and costs two syscalls
//! each — and only when it fails, a bind with SO_REUSEADDR.
//!
//! Only "address in use" counts: a bind refused for another reason (a
//! privileged port as non-root, IPv6 disabled) says nothing about the port,
//! and the verdict is left to the socket table.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketType};

use crate::model::{BindProbe, Protocol};

/// Probes `port` the way a server would bind it.
pub fn probe(port: u16, proto: Protocol) -> BindProbe {
    let families = [
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    ];
    match proto {
        Protocol::Udp => {
            let in_use = families.into_iter().any(|ip| {
                matches!(UdpSocket::bind(SocketAddr::new(ip, port)),
                    Err(e) if e.kind() == io::ErrorKind::AddrInUse)
            });
            if in_use {
                BindProbe::InUse
            } else {
                BindProbe::Free
            }
        }
        Protocol::Tcp => {
            let in_use = |reuse: bool| {
                families
                    .into_iter()
                    .any(|ip| tcp_bind(SocketAddr::new(ip, port), reuse) == Err(Errno::ADDRINUSE))
            };
            if !in_use(false) {
                BindProbe::Free
            } else if !in_use(true) {
                BindProbe::Lingering
            } else {
                BindProbe::InUse
            }
        }
    }
}

/// Binds a TCP socket to `addr` (without listening), with or without
/// SO_REUSEADDR, and closes it.
fn tcp_bind(addr: SocketAddr, reuse: bool) -> Result<(), Errno> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let socket = rustix::net::socket(family, SocketType::STREAM, None)?;
    if reuse {
        rustix::net::sockopt::set_socket_reuseaddr(&socket, true)?;
    }
    rustix::net::bind(&socket, &addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn a_listener_is_in_use_and_a_closed_one_is_free() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(probe(port, Protocol::Tcp), BindProbe::InUse);
        drop(listener);
        assert_eq!(probe(port, Protocol::Tcp), BindProbe::Free);
    }

    #[test]
    fn the_local_end_of_an_outgoing_connection_is_in_use() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(server.local_addr().unwrap()).unwrap();
        let port = client.local_addr().unwrap().port();
        // No listener on the client's port, yet no server could bind it.
        assert_eq!(probe(port, Protocol::Tcp), BindProbe::InUse);
        assert!(TcpListener::bind(("0.0.0.0", port)).is_err());
    }

    #[test]
    fn time_wait_of_a_server_lingers() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (accepted, _) = server.accept().unwrap();
        // The server closes first, so its side goes to TIME_WAIT; the
        // accepted socket inherited SO_REUSEADDR from the listener.
        drop(accepted);
        drop(server);
        drop(client);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(probe(port, Protocol::Tcp), BindProbe::Lingering);
        assert!(TcpListener::bind(("0.0.0.0", port)).is_ok());
    }

    #[test]
    fn udp() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        assert_eq!(probe(port, Protocol::Udp), BindProbe::InUse);
        drop(socket);
        assert_eq!(probe(port, Protocol::Udp), BindProbe::Free);
    }
}
