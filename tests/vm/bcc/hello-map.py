#!/usr/bin/python3
# BCC reference for examples/hello_map.py: Learning eBPF chapter 2's hello-map program
# (same BPF logic and output format). Run with Debian's python3 (python3-bpfcc).
from time import sleep

from bcc import BPF

program = r"""
BPF_HASH(counter_table);

int hello(void *ctx) {
   u64 uid;
   u64 counter = 0;
   u64 *p;

   uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;
   p = counter_table.lookup(&uid);
   if (p != 0) {
      counter = *p;
   }
   counter++;
   counter_table.update(&uid, &counter);
   return 0;
}
"""

b = BPF(text=program)
syscall = b.get_syscall_fnname("execve")
b.attach_kprobe(event=syscall, fn_name="hello")
print("attached", flush=True)  # parity harness: BCC's compile is slow under emulation

while True:
    sleep(2)
    s = ""
    for k, v in b["counter_table"].items():
        s += f"ID {k.value}: {v.value}\t"
    print(s, flush=True)
