"""Test helpers: two network namespaces joined by a veth pair, entered per thread.

Only this test's own namespaces and addresses (10.200.x.0/24 inside them) are touched;
everything is removed on exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def in_ns(netns: str) -> list[str]:
    """The command prefix that runs a command in network namespace ``netns``.

    nsenter joins the network namespace only. ``ip -n``/``ip netns exec`` also make a mount
    namespace and run ``mount --make-rslave /``, which fails with EINVAL in a chroot whose
    root is not a mount point: the pristine roots of test-distros and fresh-machine.
    """
    return ["nsenter", f"--net=/run/netns/{netns}"]


def _ip(*args: str) -> None:
    _run(["ip", *args])


def _ip_in(netns: str, *args: str) -> None:
    _run([*in_ns(netns), "ip", *args])


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")


@contextlib.contextmanager
def inside(netns: str) -> Iterator[None]:
    """Run the block with this thread in network namespace ``netns`` (ip netns name)."""
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {netns}: {os.strerror(err)}")
        try:
            yield
        finally:
            if _libc.setns(back, CLONE_NEWNET) != 0:  # pragma: no cover - would be fatal
                raise OSError(ctypes.get_errno(), "setns back to the test's namespace")
    finally:
        os.close(target)
        os.close(back)


@dataclass
class VethPair:
    """``a`` (netns ``ns_a``, interface ``dev_a``, address ``addr_a``) <-> ``b``."""

    ns_a: str
    ns_b: str
    dev_a: str
    dev_b: str
    addr_a: str
    addr_b: str

    def mac(self, dev: str) -> str:
        ns = self.ns_a if dev == self.dev_a else self.ns_b
        out = subprocess.run([*in_ns(ns), "ip", "-o", "link", "show", dev],
                             capture_output=True, text=True, check=True).stdout
        return out.split("link/ether ")[1].split()[0]

    def udp_socket(self, side: str, port: int = 0) -> socket.socket:
        """A UDP socket bound in namespace ``side`` ("a" or "b") to its address:port."""
        with inside(self.ns_a if side == "a" else self.ns_b):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((self.addr_a if side == "a" else self.addr_b, port))
        s.settimeout(2.0)
        return s


@contextlib.contextmanager
def veth_pair(tag: str) -> Iterator[VethPair]:
    """Fresh namespaces ``<tag>a``/``<tag>b`` with veth ``<tag>va``/``<tag>vb``, static
    neighbour entries (so no ARP frames reach the programs) and addresses 10.200.N.1/.2."""
    n = os.getpid() % 200 + 20
    pair = VethPair(
        f"ebpfgen-{tag}-a-{os.getpid()}",
        f"ebpfgen-{tag}-b-{os.getpid()}",
        f"{tag}va",
        f"{tag}vb",
        f"10.200.{n}.1",
        f"10.200.{n}.2",
    )
    _ip("netns", "add", pair.ns_a)
    try:
        _ip("netns", "add", pair.ns_b)
        _ip_in(pair.ns_a, "link", "add", pair.dev_a, "type", "veth", "peer", "name",
            pair.dev_b, "netns", pair.ns_b)
        for ns, dev, addr in (
            (pair.ns_a, pair.dev_a, pair.addr_a),
            (pair.ns_b, pair.dev_b, pair.addr_b),
        ):
            _ip_in(ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip_in(ns, "link", "set", dev, "up")
            _ip_in(ns, "link", "set", "lo", "up")
        mac = {dev: pair.mac(dev) for dev in (pair.dev_a, pair.dev_b)}
        _ip_in(pair.ns_a, "neigh", "replace", pair.addr_b, "lladdr", mac[pair.dev_b],
            "dev", pair.dev_a, "nud", "permanent")
        _ip_in(pair.ns_b, "neigh", "replace", pair.addr_a, "lladdr", mac[pair.dev_a],
            "dev", pair.dev_b, "nud", "permanent")
        yield pair
    finally:
        subprocess.run(["ip", "netns", "del", pair.ns_b], capture_output=True)
        subprocess.run(["ip", "netns", "del", pair.ns_a], capture_output=True)


def receive_all(sock: socket.socket, expect_at_most: int, timeout: float = 0.3) -> list[bytes]:
    """Every datagram waiting (up to a short quiet ``timeout`` after the last one)."""
    got: list[bytes] = []
    sock.settimeout(timeout)
    for _ in range(expect_at_most + 10):  # bounded: a bug cannot make this spin forever
        try:
            got.append(sock.recv(65536))
        except TimeoutError:
            break
    return got
