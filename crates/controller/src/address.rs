//! Where a controller listens and which address it writes into the connection file for engines
//! and clients on other hosts. The two differ when the controller listens on every interface
//! (`0.0.0.0`): that address means "this host" only on this host, so the connection file gets
//! the address of a named interface instead, or the start is refused.

use std::net::{IpAddr, SocketAddr};

use crate::error::ClusterError;

/// The address to bind and the one to advertise, from `--ip`, `--interface` and `--port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddress {
    /// What the listener binds (`ip:port`, IPv6 in brackets).
    pub bind: String,
    /// What the connection file carries instead of the bound address (`None`: the bound one).
    pub advertise: Option<IpAddr>,
}

/// Resolves the command line's `--ip` and `--interface` (either may be absent):
/// - neither: `127.0.0.1` (this host only);
/// - `--ip ADDR`: bind and advertise ADDR; `0.0.0.0`/`::` alone is refused (engines elsewhere
///   could not connect to it);
/// - `--interface NAME`: bind and advertise that interface's address;
/// - `--ip 0.0.0.0 --interface NAME`: listen everywhere, advertise the interface's address.
///
/// # Errors
/// [`ClusterError::Address`] for an unknown interface, one without an address, an `--ip` that
/// is not an IP address, a wildcard with nothing to advertise, or two different addresses.
pub fn resolve(ip: Option<&str>, interface: Option<&str>, port: u16) -> Result<ListenAddress, ClusterError> {
    let ip = match ip {
        Some(text) => Some(
            text.parse::<IpAddr>()
                .map_err(|_| ClusterError::Address(format!("--ip {text:?} is not an IP address")))?,
        ),
        None => None,
    };
    let named = interface.map(interface_address).transpose()?;
    let (bind, advertise) = match (ip, named) {
        (None, None) => (IpAddr::from([127, 0, 0, 1]), None),
        (None, Some(addr)) => (addr, None),
        (Some(ip), Some(addr)) if ip.is_unspecified() => (ip, Some(addr)),
        (Some(ip), Some(addr)) if ip == addr => (ip, None),
        (Some(ip), Some(addr)) => {
            return Err(ClusterError::Address(format!(
                "--ip {ip} and --interface {} ({addr}) name different addresses: give one, or \
                 --ip 0.0.0.0 with --interface to listen everywhere",
                interface.unwrap_or_default()
            )))
        }
        (Some(ip), None) if ip.is_unspecified() => return Err(wildcard_alone(ip)),
        (Some(ip), None) => (ip, None),
    };
    Ok(ListenAddress { bind: SocketAddr::new(bind, port).to_string(), advertise })
}

/// The address the connection file carries for a listener bound at `bound`.
///
/// # Errors
/// [`ClusterError::Address`] if `bound` is a wildcard and nothing is to be advertised.
pub fn advertised(bound: SocketAddr, advertise: Option<IpAddr>) -> Result<SocketAddr, ClusterError> {
    match advertise {
        Some(ip) => Ok(SocketAddr::new(ip, bound.port())),
        None if bound.ip().is_unspecified() => Err(wildcard_alone(bound.ip())),
        None => Ok(bound),
    }
}

fn wildcard_alone(ip: IpAddr) -> ClusterError {
    ClusterError::Address(format!(
        "the controller would listen on {ip}, which engines on other hosts cannot connect to: \
         give --interface NAME as well (its address goes into the connection file), or --ip with \
         the address engines should use"
    ))
}

/// The address of network interface `name`: its first IPv4 address, else its first IPv6
/// address that is not link-local (those need a scope id a connection file does not carry).
///
/// # Errors
/// [`ClusterError::Address`] if there is no such interface or it has no usable address.
pub fn interface_address(name: &str) -> Result<IpAddr, ClusterError> {
    let addrs = nix::ifaddrs::getifaddrs()
        .map_err(|e| ClusterError::Address(format!("cannot list the network interfaces: {e}")))?;
    let mut found = false;
    let mut v6 = None;
    for ifa in addrs.filter(|ifa| ifa.interface_name == name) {
        found = true;
        let Some(addr) = ifa.address else { continue };
        if let Some(v4) = addr.as_sockaddr_in() {
            return Ok(IpAddr::V4(v4.ip()));
        }
        if let Some(sin6) = addr.as_sockaddr_in6() {
            let ip = sin6.ip();
            let link_local = (ip.segments()[0] & 0xffc0) == 0xfe80;
            if !link_local && v6.is_none() {
                v6 = Some(IpAddr::V6(ip));
            }
        }
    }
    match (found, v6) {
        (_, Some(ip)) => Ok(ip),
        (true, None) => Err(ClusterError::Address(format!("interface {name} has no usable IP address"))),
        (false, None) => {
            Err(ClusterError::Address(format!("no network interface named {name:?} (see `ip addr`)")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_by_default_and_by_name() {
        let none = resolve(None, None, 0).unwrap();
        assert_eq!(none, ListenAddress { bind: "127.0.0.1:0".into(), advertise: None });
        assert_eq!(interface_address("lo").unwrap(), IpAddr::from([127, 0, 0, 1]));
        let lo = resolve(None, Some("lo"), 5000).unwrap();
        assert_eq!(lo, ListenAddress { bind: "127.0.0.1:5000".into(), advertise: None });
        assert_eq!(resolve(Some("127.0.0.1"), Some("lo"), 0).unwrap().advertise, None);
    }

    #[test]
    fn a_wildcard_advertises_the_interface_or_is_refused() {
        let any = resolve(Some("0.0.0.0"), Some("lo"), 0).unwrap();
        assert_eq!(any, ListenAddress { bind: "0.0.0.0:0".into(), advertise: Some([127, 0, 0, 1].into()) });
        for ip in ["0.0.0.0", "::"] {
            let e = resolve(Some(ip), None, 0).unwrap_err().to_string();
            assert!(e.contains("--interface NAME"), "{e}");
        }
        let bound: SocketAddr = "0.0.0.0:4000".parse().unwrap();
        assert!(advertised(bound, None).is_err());
        assert_eq!(advertised(bound, Some([10, 0, 0, 1].into())).unwrap().to_string(), "10.0.0.1:4000");
        let v6 = resolve(Some("::1"), None, 7).unwrap();
        assert_eq!(v6.bind, "[::1]:7");
    }

    #[test]
    fn bad_names_and_conflicts_are_refused() {
        let e = resolve(None, Some("no-such-if0"), 0).unwrap_err().to_string();
        assert!(e.contains("no network interface named \"no-such-if0\""), "{e}");
        assert!(resolve(Some("localhost"), None, 0).unwrap_err().to_string().contains("not an IP address"));
        let e = resolve(Some("10.1.2.3"), Some("lo"), 0).unwrap_err().to_string();
        assert!(e.contains("different addresses"), "{e}");
    }
}
