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
        if why is not None and why.startswith("BPF LSM is not enabled"):
            with pytest.raises(AttachError, match="BPF LSM is not enabled: the active LSMs are"):
                objs.programs.on_socket.attach()
            return
        with objs.programs.on_socket.attach():
            socket.socket().close()
            socket.socket().close()
        socket.socket().close()
        assert objs.variables.lsm_hits == 2
