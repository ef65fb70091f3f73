"""The SSRF guard: which addresses a user-supplied URL may reach.

A client hands us a URL and we fetch it from inside the operator's network,
so without a guard anyone could read the cloud metadata service, an admin
panel on localhost or a database on the private network. Rules:

- the host name is resolved and **every** address it resolves to is checked
  (one private address among public ones is enough to refuse: the connection
  would go wherever the resolver's order says);
- refused: loopback, private (RFC 1918, ULA), link-local (incl. 169.254.169.254),
  multicast, reserved, unspecified, CGNAT 100.64/10 and anything else the
  ``ipaddress`` module does not call global; IPv6 addresses embedding an IPv4
  address (IPv4-mapped, 6to4, NAT64) are judged by the embedded address;
- ``FETCH_ALLOW_HOSTS`` entries (host names or CIDRs) lift the rule for the
  operator's own file servers (and the test suite's local one);
- the fetcher calls :meth:`FetchGuard.resolve` again on every redirect hop and
  connects to the address it checked (no second lookup), see ``fetch.py``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedAddress(Exception):
    """The URL's host is, or resolves to, an address user URLs may not reach."""


class Unresolvable(Exception):
    """The host name does not resolve."""


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (gevent makes this cooperative once patched)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolvable(str(exc)) from None
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone id
        if address not in seen:
            seen.append(address)
    return seen


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped, 6to4 or NAT64 IPv6 address."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def blocked_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` must not be fetched from, or None when it is a public address."""
    inner = embedded_ipv4(ip)
    if inner is not None:
        reason = blocked_reason(inner)
        return f"{reason} (embedded in {ip})" if reason else None
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("shared (CGNAT)", isinstance(ip, ipaddress.IPv4Address) and ip in CGNAT),
        ("reserved", ip.is_reserved),
        ("non-global", not ip.is_global),
    )
    for name, hit in checks:
        if hit:
            return name
    return None


@dataclass(frozen=True)
class AllowList:
    """``FETCH_ALLOW_HOSTS``: exact host names (case-insensitive) and networks."""

    names: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        names, networks = set(), []
        for entry in entries:
            entry = entry.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                names.add(_idna(entry))
        return cls(frozenset(names), tuple(networks))

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.names

    def allows_ip(self, ip: IPAddress) -> bool:
        candidates = [ip]
        inner = embedded_ipv4(ip)
        if inner is not None:
            candidates.append(inner)
        return any(c.version == n.version and c in n for c in candidates for n in self.networks)


class FetchGuard:
    """Resolves a host and returns the addresses a fetch may connect to, or refuses."""

    def __init__(self, allow: AllowList, resolver: Resolver = system_resolver) -> None:
        self.allow = allow
        self.resolver = resolver

    def resolve(self, host: str, port: int) -> list[str]:
        """Checked addresses for ``host`` (first one is used); raises ``BlockedAddress``."""
        literal = _ip_literal(host)
        addresses = [str(literal)] if literal is not None else self.resolver(host, port)
        if not addresses:
            raise Unresolvable(f"{host} has no address")
        if self.allow.allows_host(host):
            return addresses
        for address in addresses:
            ip = ipaddress.ip_address(address)
            if self.allow.allows_ip(ip):
                continue
            reason = blocked_reason(ip)
            if reason is not None:
                # Only the literal the caller wrote is described; where a name
                # points stays unsaid, or the message would map internal DNS.
                if literal is not None:
                    raise BlockedAddress(f"{host} is a {reason} address")
                raise BlockedAddress(f"the host {host} is not allowed")
        return addresses


def _idna(name: str) -> str:
    """A host name as the fetcher sees it (punycode), so allow-list entries match."""
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return name


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
