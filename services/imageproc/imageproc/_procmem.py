"""A process's memory as Linux counts it, for the pool's limits: private resident bytes
now (``statm``) and at the process's peak (``status``). Read by the parent about its
workers (``workers``) and by each worker about itself (``_worker``)."""

from __future__ import annotations

import os

_PAGE = os.sysconf("SC_PAGE_SIZE")


def private_resident(pid: int | str = "self") -> int:
    """Bytes of private resident memory (anonymous pages; shared libraries not counted);
    0 when the process is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            fields = statm.read().split()
    except OSError:
        return 0
    return (int(fields[1]) - int(fields[2])) * _PAGE


def peak_private_resident(pid: int) -> int:
    """Bytes of private resident memory at the process's peak: its peak resident set
    (``VmHWM``) less its shared pages now (files, shared memory), which a pipeline does not
    grow, as ``private_resident`` counts them."""
    fields: dict[bytes, int] = {}
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                name, _, value = line.partition(b":")
                if name in (b"VmHWM", b"RssFile", b"RssShmem"):
                    fields[name] = int(value.split()[0]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        return 0
    return fields.get(b"VmHWM", 0) - fields.get(b"RssFile", 0) - fields.get(b"RssShmem", 0)
