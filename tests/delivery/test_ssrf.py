"""The SSRF guard: which addresses a hook may reach, and resolving names to them."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest
import trio
import trio.testing

from engine.delivery.ssrf import (
    Address,
    Network,
    Refused,
    Unresolvable,
    resolve,
    vet,
    vetted_address,
)

ALLOW = "allow it with [delivery] allow_networks"


def ip(text: str) -> Address:
    return ipaddress.ip_address(text)


def nets(*texts: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(t) for t in texts)


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "2001:4860:4860::8888",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",  # IPv4-mapped: judged by the IPv4 address
        "64:ff9b::808:808",  # NAT64 of 8.8.8.8
        "2002:808:808::1",  # 6to4 of 8.8.8.8
    ],
)
def test_global_addresses_pass(address: str) -> None:
    assert vet("example.com", [ip(address)]) == ip(address)


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("10.0.0.5", "a private address"),
        ("10.255.255.255", "a private address"),
        ("172.16.0.1", "a private address"),
        ("172.31.255.254", "a private address"),
        ("192.168.1.1", "a private address"),
        ("127.0.0.1", "a loopback address"),
        ("127.1.2.3", "a loopback address"),
        ("::1", "a loopback address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("169.254.169.254", "a link-local address (cloud metadata)"),
        ("169.254.1.1", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("fe80::1%eth0", "a link-local address"),
        ("fc00::1", "a unique-local address"),
        ("fd12:3456:789a::1", "a unique-local address"),
        ("fec0::1", "a site-local address"),
        ("100.64.0.1", "a shared (carrier-grade NAT) address"),
        ("100.127.255.254", "a shared (carrier-grade NAT) address"),
        ("224.0.0.1", "a multicast address"),
        ("239.255.255.250", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("240.0.0.1", "a reserved address"),
        ("255.255.255.255", "a reserved address"),
        ("::a00:1", "a reserved address"),  # IPv4-compatible, deprecated
        ("100::1", "a reserved address"),  # discard-only
        ("0.1.2.3", "a special-purpose, non-public address"),  # "this network"
        ("192.0.2.1", "a special-purpose, non-public address"),  # documentation
        ("198.18.0.1", "a special-purpose, non-public address"),  # benchmarking
        ("2001:db8::1", "a special-purpose, non-public address"),  # documentation
        ("2001::1", "a special-purpose, non-public address"),  # Teredo
    ],
)
def test_non_global_addresses_are_refused(address: str, problem: str) -> None:
    with pytest.raises(Refused) as caught:
        vet("api.internal", [ip(address)])
    assert str(caught.value) == f"api.internal resolves to {address}, {problem}; {ALLOW}"
    assert caught.value.reason == str(caught.value)
    assert caught.value.host == "api.internal"
    assert caught.value.addresses == (ip(address),)


@pytest.mark.parametrize(
    ("address", "target", "problem"),
    [
        ("::ffff:10.0.0.1", "10.0.0.1", "a private address"),
        ("::ffff:127.0.0.1", "127.0.0.1", "a loopback address"),
        ("::ffff:169.254.169.254", "169.254.169.254", "a link-local address (cloud metadata)"),
        ("::ffff:0.0.0.0", "0.0.0.0", "an unspecified address"),
        ("::ffff:100.64.0.1", "100.64.0.1", "a shared (carrier-grade NAT) address"),
        ("64:ff9b::a00:1", "10.0.0.1", "a private address"),
        ("64:ff9b::7f00:1", "127.0.0.1", "a loopback address"),
        ("2002:a00:1::", "10.0.0.1", "a private address"),
        ("2002:a9fe:a9fe::1", "169.254.169.254", "a link-local address (cloud metadata)"),
    ],
)
def test_ipv6_forms_of_ipv4_are_judged_by_the_ipv4_address(
    address: str, target: str, problem: str
) -> None:
    with pytest.raises(Refused) as caught:
        vet("api.internal", [ip(address)])
    assert str(caught.value) == (
        f"api.internal resolves to {ip(address)}, which is {target}, {problem}; {ALLOW}"
    )


def test_the_first_reachable_address_is_chosen() -> None:
    addresses = [ip("10.0.0.5"), ip("::1"), ip("8.8.8.8"), ip("1.1.1.1")]
    assert vet("mixed.example", addresses) == ip("8.8.8.8")


def test_all_refused_names_every_address() -> None:
    with pytest.raises(Refused) as caught:
        vet("api.internal", [ip("10.0.0.5"), ip("::ffff:127.0.0.1"), ip("fd00::5")])
    assert str(caught.value) == (
        "api.internal resolves only to addresses a hook may not reach: "
        "10.0.0.5 (a private address), ::ffff:7f00:1 (127.0.0.1, a loopback address), "
        "fd00::5 (a unique-local address); allow them with [delivery] allow_networks"
    )


def test_a_long_refusal_stays_one_line() -> None:
    addresses = [ip(f"10.0.0.{n}") for n in range(1, 11)]
    with pytest.raises(Refused) as caught:
        vet("big.internal", addresses)
    assert "10.0.0.4 (a private address) and 6 more;" in str(caught.value)
    assert "10.0.0.5" not in str(caught.value)
    assert len(caught.value.addresses) == 10


def refusal(host: str, addresses: list[Address]) -> str:
    with pytest.raises(Refused) as caught:
        vet(host, addresses)
    return str(caught.value)


def test_an_ip_literal_is_named_once() -> None:
    assert refusal("10.0.0.5", [ip("10.0.0.5")]) == f"10.0.0.5 is a private address; {ALLOW}"
    assert refusal("::1", [ip("::1")]) == f"::1 is a loopback address; {ALLOW}"
    assert refusal("::ffff:10.0.0.5", [ip("::ffff:10.0.0.5")]) == (
        f"::ffff:10.0.0.5 leads to 10.0.0.5, a private address; {ALLOW}"
    )


def test_no_addresses_is_refused() -> None:
    with pytest.raises(Refused, match=r"^nothing\.example resolves to no address$"):
        vet("nothing.example", [])


@pytest.mark.parametrize(
    ("allow", "address"),
    [
        (("10.0.0.0/8",), "10.0.0.5"),
        (("10.0.0.0/8",), "::ffff:10.0.0.5"),  # the mapped form of an allowed address
        (("::ffff:10.0.0.0/104",), "::ffff:10.0.0.5"),
        (("192.168.1.0/24", "fd00::/8"), "fd00::5"),
        (("127.0.0.0/8", "::1/128"), "::1"),
        (("169.254.169.254/32",), "169.254.169.254"),
        (("100.64.0.0/10",), "100.64.0.1"),
        (("0.0.0.0/0",), "127.0.0.1"),
    ],
)
def test_allow_networks_let_addresses_through(allow: tuple[str, ...], address: str) -> None:
    assert vet("api.internal", [ip(address)], nets(*allow)) == ip(address)


@pytest.mark.parametrize(
    ("allow", "address"),
    [
        (("10.0.0.0/16",), "10.1.0.5"),
        (("::1/128",), "127.0.0.1"),
        (("127.0.0.0/8",), "::1"),
        (("192.168.1.0/24",), "192.168.2.1"),
        (("::/0",), "10.0.0.5"),  # an IPv6 network does not hold IPv4 addresses
    ],
)
def test_allow_networks_are_exact(allow: tuple[str, ...], address: str) -> None:
    with pytest.raises(Refused):
        vet("api.internal", [ip(address)], nets(*allow))


# Resolving. A fake resolver stands in for DNS where the answer must be exact.


class FakeResolver(trio.abc.HostnameResolver):
    def __init__(self, answer: Any = None, error: Exception | None = None, hang: bool = False):
        self.answer = answer or []
        self.error = error
        self.hang = hang
        self.asked: list[bytes | str] = []

    async def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        self.asked.append(host)
        if self.hang:
            await trio.sleep_forever()
        if self.error is not None:
            raise self.error
        return self.answer

    async def getnameinfo(self, sockaddr: Any, flags: int) -> Any:
        raise NotImplementedError


def tcp(family: socket.AddressFamily, address: str, port: int) -> Any:
    sockaddr = (address, port) if family == socket.AF_INET else (address, port, 0, 0)
    return (family, socket.SOCK_STREAM, 6, "", sockaddr)


async def test_resolve_localhost() -> None:
    addresses = await resolve("localhost", 80)
    assert addresses
    assert all(a.is_loopback for a in addresses)


async def test_localhost_is_refused_unless_allowed() -> None:
    with pytest.raises(Refused, match=r"^localhost resolves to (127\.0\.0\.1|::1), a loopback"):
        await vetted_address("localhost", 80)
    got = await vetted_address("localhost", 80, nets("127.0.0.0/8", "::1/128"))
    assert ip(got).is_loopback


@pytest.mark.parametrize(
    ("host", "address"),
    [("10.0.0.5", "10.0.0.5"), ("::1", "::1"), ("[::1]", "::1"), ("8.8.8.8", "8.8.8.8")],
)
async def test_an_ip_literal_skips_dns(host: str, address: str) -> None:
    resolver = FakeResolver(error=AssertionError("asked the resolver"))
    trio.socket.set_custom_hostname_resolver(resolver)
    assert await resolve(host, 443) == [ip(address)]
    assert resolver.asked == []


async def test_resolve_keeps_the_resolvers_order_without_duplicates() -> None:
    answer = [
        tcp(socket.AF_INET6, "2606:4700::1", 443),
        tcp(socket.AF_INET, "93.184.216.34", 443),
        tcp(socket.AF_INET6, "2606:4700::1", 443),
    ]
    trio.socket.set_custom_hostname_resolver(FakeResolver(answer))
    assert await resolve("example.com", 443) == [ip("2606:4700::1"), ip("93.184.216.34")]
    assert await vetted_address("example.com", 443) == "2606:4700::1"


async def test_a_resolver_answer_is_vetted() -> None:
    answer = [tcp(socket.AF_INET, "169.254.169.254", 80)]
    trio.socket.set_custom_hostname_resolver(FakeResolver(answer))
    with pytest.raises(Refused, match=r"^metadata\.example resolves to 169\.254\.169\.254, "):
        await vetted_address("metadata.example", 80)


async def test_an_invalid_name_is_unresolvable() -> None:
    # .invalid is reserved (RFC 2606) and never resolves: no network is involved.
    with pytest.raises(Unresolvable, match=r"^cannot resolve api\.example\.invalid: .") as caught:
        await resolve("api.example.invalid", 443)
    assert caught.value.host == "api.example.invalid"
    with pytest.raises(Unresolvable):
        await vetted_address("api.example.invalid", 443)


async def test_the_resolvers_reason_is_kept() -> None:
    error = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    trio.socket.set_custom_hostname_resolver(FakeResolver(error=error))
    with pytest.raises(Unresolvable) as caught:
        await resolve("api.example.invalid", 443)
    assert str(caught.value) == "cannot resolve api.example.invalid: Name or service not known"


async def test_an_empty_answer_is_unresolvable() -> None:
    trio.socket.set_custom_hostname_resolver(FakeResolver([]))
    with pytest.raises(Unresolvable, match=r"^cannot resolve empty\.example: no addresses$"):
        await resolve("empty.example", 443)


async def test_a_resolver_that_does_not_answer_times_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    trio.socket.set_custom_hostname_resolver(FakeResolver(hang=True))
    start = trio.current_time()
    with pytest.raises(Unresolvable) as caught:
        await resolve("slow.example", 443, timeout=2.5)
    assert str(caught.value) == "cannot resolve slow.example: no answer within 2.5 s"
    assert trio.current_time() - start == 2.5
    with pytest.raises(Unresolvable, match=r"no answer within 10 s$"):
        await vetted_address("slow.example", 443)
    with pytest.raises(Unresolvable, match=r"no answer within 0\.5 s$"):
        await vetted_address("slow.example", 443, (), 0.5)


async def test_a_name_trio_cannot_encode_is_unresolvable() -> None:
    with pytest.raises(Unresolvable, match=r"^cannot resolve a\.\.b\.example: "):
        await resolve("a..b.example", 443)
