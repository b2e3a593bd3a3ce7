"""The SSRF guard: hooks reach public addresses only, unless a network is allowed.

A hook's URL is a template, so whoever can publish events may steer where it points. Every
request therefore goes to an address this module has vetted: resolved once, checked, and
then connected to as is, so that a second DNS answer cannot slip in an internal address.
`vet` is the pure rule; `resolve` and `vetted_address` do the DNS look-up.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

import trio

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_SETTING = "[delivery] allow_networks"  # where an operator allows internal networks
RESOLVE_TIMEOUT = 10.0  # seconds: a resolver that has not answered by now will not help
_SHOW_ADDRESSES = 4  # a refusal names this many addresses at most: one line in a log

_IPV4_PRIVATE = tuple(
    ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT: the ISP's inside
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # reaches the IPv4 address in its low bits
_CLOUD_METADATA = ipaddress.IPv4Address("169.254.169.254")


class Refused(Exception):
    """The destination resolves to no address a hook may reach; the message says why."""

    def __init__(self, reason: str, host: str, addresses: Sequence[Address]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.host = host
        self.addresses = tuple(addresses)


class Unresolvable(Exception):
    """The destination's name does not resolve (or the resolver did not answer in time)."""

    def __init__(self, reason: str, host: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.host = host


def vet(host: str, addresses: Sequence[Address], allow: tuple[Network, ...] = ()) -> Address:
    """The first of ``host``'s ``addresses`` a hook may reach, or `Refused`.

    An address passes if it lies in one of the ``allow`` networks, or if it is global:
    not private, loopback, link-local, shared (CGNAT), unique- or site-local, multicast,
    unspecified or reserved. An IPv6 address that carries an IPv4 one (IPv4-mapped,
    6to4, NAT64) is judged by the IPv4 address it reaches.
    """
    problems: list[tuple[Address, str]] = []
    for address in addresses:
        target = _embedded_ipv4(address) or address
        if any(address in net or target in net for net in allow):
            return address
        problem = _problem(target)
        if problem is None:
            return address
        problems.append((address, problem))
    raise Refused(_refusal(host, problems), host, addresses)


async def resolve(
    host: str,
    port: int,
    timeout: float = RESOLVE_TIMEOUT,  # noqa: ASYNC109 - Unresolvable says how long it waited
) -> list[Address]:
    """The addresses of ``host``, in the resolver's order; an IP literal skips DNS."""
    literal = _ip_literal(host)
    if literal is not None:
        return [literal]
    results: list[Address] = []
    with trio.move_on_after(timeout) as scope:
        try:
            infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as problem:
            reason = problem.strerror or str(problem)
            raise Unresolvable(f"cannot resolve {host}: {reason}", host) from None
        except (OSError, UnicodeError) as problem:
            raise Unresolvable(f"cannot resolve {host}: {problem}", host) from None
        for *_, sockaddr in infos:
            address = ipaddress.ip_address(sockaddr[0])
            if address not in results:
                results.append(address)
    if scope.cancelled_caught:
        raise Unresolvable(f"cannot resolve {host}: no answer within {timeout:g} s", host)
    if not results:
        raise Unresolvable(f"cannot resolve {host}: no addresses", host)
    return results


async def vetted_address(
    host: str,
    port: int,
    allow: tuple[Network, ...] = (),
    timeout: float = RESOLVE_TIMEOUT,  # noqa: ASYNC109 - see resolve
) -> str:
    """The address to connect to for ``host``, resolved and vetted (`Unresolvable`, `Refused`)."""
    return str(vet(host, await resolve(host, port, timeout=timeout), allow))


def _ip_literal(host: str) -> Address | None:
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        return None


def _embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one leads to, when it is a transition form."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _problem(address: Address) -> str | None:
    """Why a hook may not reach ``address`` ("a private address"), or None if it may."""
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address == _CLOUD_METADATA:
        return "a link-local address (cloud metadata)"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address):
        if any(address in net for net in _IPV4_PRIVATE):
            return "a private address"
        if address in _SHARED:
            return "a shared (carrier-grade NAT) address"
    else:
        if address in _UNIQUE_LOCAL:
            return "a unique-local address"
        if address.is_site_local:
            return "a site-local address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private or not address.is_global:
        return "a special-purpose, non-public address"
    return None


def _refusal(host: str, problems: list[tuple[Address, str]]) -> str:
    if not problems:
        return f"{host} resolves to no address"
    if len(problems) == 1:
        address, problem = problems[0]
        target = _embedded_ipv4(address)
        if _ip_literal(host) == address:
            what = f"{host} is" if target is None else f"{host} leads to {target},"
        else:
            what = f"{host} resolves to {address},"
            if target is not None:
                what += f" which is {target},"
        return f"{what} {problem}; allow it with {ALLOW_SETTING}"
    shown = ", ".join(_show(a, p) for a, p in problems[:_SHOW_ADDRESSES])
    if len(problems) > _SHOW_ADDRESSES:
        shown += f" and {len(problems) - _SHOW_ADDRESSES} more"
    return (
        f"{host} resolves only to addresses a hook may not reach: {shown}; "
        f"allow them with {ALLOW_SETTING}"
    )


def _show(address: Address, problem: str) -> str:
    target = _embedded_ipv4(address)
    return f"{address} ({target}, {problem})" if target is not None else f"{address} ({problem})"
