"""BPF trampolines (fentry/fexit, LSM) and set_attach_target on the real kernel.

This host refuses them at load (EPERM although root): there the test checks that the error
says so instead of blaming capabilities. In the VM tier (Debian's 5.10/6.1/6.12, where
tests/vm/kernel_features.py records fentry as present) they must work, counts exact.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from ebpf_gen.runtime import AttachError, LoadError
from ebpf_gen.runtime.diagnose import bpf_lsm_disabled

from tests.vm.kernel_features import lacks, vm_kernel

pytestmark = pytest.mark.kernel

SRC = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

const volatile __u32 me = 0;
__u64 entries = 0, exits = 0, lsm_hits = 0;

/* Placeholder targets, retargeted with set_attach_target() before load (libbpf-tools' habit). */
SEC("fentry/dummy_entry")
int BPF_PROG(on_entry)
{
    if ((bpf_get_current_pid_tgid() >> 32) == me)
        __sync_fetch_and_add(&entries, 1);
    return 0;
}

SEC("fexit/dummy_exit")
int BPF_PROG(on_exit)
{
    if ((bpf_get_current_pid_tgid() >> 32) == me)
        __sync_fetch_and_add(&exits, 1);
    return 0;
}

SEC("lsm/socket_create")
int BPF_PROG(on_socket, int family, int type, int protocol, int kern)
{
    if ((bpf_get_current_pid_tgid() >> 32) == me)
        __sync_fetch_and_add(&lsm_hits, 1);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""

TARGET = "do_nanosleep"  # in every kernel's BTF since 5.5; time.sleep() reaches it


def load_retargeted(mod: ModuleType, **autoload: bool) -> Any:
    opened = mod.open()
    with opened:
        opened.set_constants({"me": os.getpid()})
        for name, on in autoload.items():
            opened.set_autoload(name, on)
        opened.set_attach_target("on_entry", TARGET)
        opened.set_attach_target("on_exit", TARGET)
        return opened.load()


def test_fentry_fexit_retargeted(skeleton: Callable[[str, str], ModuleType]) -> None:
    mod = skeleton("rt_tracing", SRC)
    if vm_kernel() is None:
        # The host tier: this machine refuses trampolines. Either they work (another host)
        # or the refusal is explained, never blamed on capabilities.
        try:
            objs = load_retargeted(mod, on_socket=False)
        except LoadError as e:
            assert "refused a BPF trampoline for fentry" in str(e) and e.errno == 1
            return
    else:
        assert not lacks("fentry")
        objs = load_retargeted(mod, on_socket=False)
    with objs:
        result = objs.attach_all()
        assert sorted(link.program.name for link in result.links) == ["on_entry", "on_exit"]
        assert result.skipped == {"on_socket": "not loaded (autoload off)"}
        for _ in range(3):
            time.sleep(0.001)
        for link in result.links:
            link.close()
        time.sleep(0.001)
        assert (objs.variables.entries, objs.variables.exits) == (3, 3)


def test_set_attach_target_unknown_function(skeleton: Callable[[str, str], ModuleType]) -> None:
    mod = skeleton("rt_tracing", SRC)
    with mod.open() as opened, pytest.raises(Exception, match="set_attach_target"):
        opened.set_attach_target("on_entry", "no_such_kernel_function_x")
    with mod.open() as opened, pytest.raises(KeyError, match="no program 'nope'"):
        opened.set_attach_target("nope", TARGET)


def test_lsm_attaches_or_says_why(skeleton: Callable[[str, str], ModuleType]) -> None:
    mod = skeleton("rt_tracing", SRC)
    try:
        objs = mod.load({"me": os.getpid()}, autoload={"on_entry": False, "on_exit": False})
    except LoadError as e:
        assert vm_kernel() is None, "the VM kernels load LSM programs"
        assert "refused a BPF trampoline for lsm" in str(e)
        return
    with objs:
        why = bpf_lsm_disabled()
        if vm_kernel() is not None:  # the table (probed) and the diagnosis must agree
            assert (why is not None) == lacks("bpf_lsm"), why
        if why is not None and why.startswith("BPF LSM is not enabled"):
            with pytest.raises(AttachError, match="BPF LSM is not enabled: the active LSMs are"):
                objs.programs.on_socket.attach()
            return
        with objs.programs.on_socket.attach():
            socket.socket().close()
            socket.socket().close()
        socket.socket().close()
        assert objs.variables.lsm_hits == 2


# --- freplace: one global function of a loaded XDP program replaced by another program ---

FREPLACE_TARGET = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Global (not static) and noinline: the verifier checks it apart, so it can be replaced. */
__attribute__((noinline)) int verdict(struct xdp_md *ctx)
{
    return ctx ? XDP_PASS : XDP_ABORTED;
}

SEC("xdp")
int xdp_main(struct xdp_md *ctx) { return verdict(ctx); }

char LICENSE[] SEC("license") = "GPL";
"""

FREPLACE = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__u64 replaced = 0;

/* The target program is set before load (set_attach_target): libbpf checks this
 * signature against verdict()'s BTF there. */
SEC("freplace/verdict")
int drop_instead(struct xdp_md *ctx)
{
    __sync_fetch_and_add(&replaced, 1);
    return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
"""

PACKET = bytes(14) + b"\x45" + bytes(40)  # an Ethernet frame: the verdict ignores it
XDP_DROP, XDP_PASS = 1, 2


def test_freplace_changes_the_verdict(skeleton: Callable[[str, str], ModuleType]) -> None:
    target_mod = skeleton("rt_freplace_target", FREPLACE_TARGET)
    repl_mod = skeleton("rt_freplace", FREPLACE)
    with target_mod.load() as target:
        xdp = target.programs.xdp_main
        assert xdp.test_run(PACKET).retval == XDP_PASS
        opened = repl_mod.open()
        with opened:
            opened.set_attach_target("drop_instead", "verdict", target_program=xdp)
            try:
                repl = opened.load()
            except LoadError as e:
                # This host refuses trampolines (an freplace link is one); the VM kernels
                # run them.
                assert vm_kernel() is None, f"the VM kernels load freplace programs: {e}"
                assert "refused a BPF trampoline for freplace" in str(e) and e.errno == 1, e
                return
        with repl:
            with repl.programs.drop_instead.attach_freplace(xdp, "verdict"):
                assert [xdp.test_run(PACKET).retval for _ in range(3)] == [XDP_DROP] * 3
            assert xdp.test_run(PACKET).retval == XDP_PASS  # the link gone, the original
            assert repl.variables.replaced == 3


# --- fmod_ret: a security_* hook's return value replaced -----------------------------------

# The kernel selftests (modify_return.c) use bpf_modify_return_test, reached through
# BPF_PROG_TEST_RUN; but a function is modifiable only if it is on the error injection list,
# which needs CONFIG_FUNCTION_ERROR_INJECTION, off in all three Debian kernels (the 6.1
# verifier: "bpf_modify_return_test() is not modifiable"). security_* functions are always
# modifiable (check_attach_modify_return), with or without BPF LSM active: this one makes
# socket() fail with EPERM for this process's UDP sockets while armed.
FMOD_RET = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define AF_INET 2
#define SOCK_DGRAM 2
#define EPERM 1

const volatile __u32 me = 0;
__u32 armed = 0;
__u64 seen = 0, denied = 0;

SEC("fmod_ret/security_socket_create")
int BPF_PROG(deny_udp, int family, int type, int protocol, int kern, int ret)
{
    if ((bpf_get_current_pid_tgid() >> 32) != me || kern || family != AF_INET)
        return ret;
    __sync_fetch_and_add(&seen, 1);
    if (ret || !armed || (type & 0xf) != SOCK_DGRAM)  /* type carries SOCK_CLOEXEC too */
        return ret;
    __sync_fetch_and_add(&denied, 1);
    return -EPERM;  /* non-zero: security_socket_create's body is skipped */
}

char LICENSE[] SEC("license") = "GPL";
"""


def test_fmod_ret_replaces_a_security_hooks_return(
    skeleton: Callable[[str, str], ModuleType],
) -> None:
    mod = skeleton("rt_fmod_ret", FMOD_RET)
    try:
        objs = mod.load({"me": os.getpid()})
    except LoadError as e:
        assert vm_kernel() is None, f"the VM kernels load fmod_ret programs: {e}"
        assert "refused a BPF trampoline for fmod_ret" in str(e) and e.errno == 1, e
        return
    with objs:
        v = objs.variables
        with objs.programs.deny_udp.attach():
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()  # not armed yet
            v.armed = 1
            for _ in range(2):
                with pytest.raises(PermissionError):
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()  # TCP: let through
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()  # detached: allowed again
        assert (v.seen, v.denied) == (4, 2)
