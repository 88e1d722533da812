"""The journal's hash chain: every record's bytes folded into one running hash.

``c[0]`` is 32 zero bytes; ``c[seq] = BLAKE2b-256(c[seq - 1] || payload of record seq)``, the
payload being the exact bytes of the record's frame. The chain is defined over every record of
a journal, whatever segment format holds it, so its value is the same however the records were
batched, and an export or an import can state it record by record.

A chained segment (format 3) stores it: each batch ends with a LINK frame whose payload is the
first 8 bytes of the chain after each record but the last, then the 32 bytes of the chain
after the last (``link_payload``); a segment starts with a LINK frame alone, the chain before
its first record. An edit of a record that keeps its CRC right breaks the chain at that record;
an attacker who also rewrites every later link changes the head hash, which a reviewer who
pinned it notices. See "Tamper evidence" in docs/guarantees.md.
"""

from __future__ import annotations

from hashlib import blake2b

GENESIS = bytes(32)
SIZE = 32  # bytes of a chain value
PREFIX = 8  # bytes of each record's chain value kept in a link, but the last's


def step(chain: bytes, payload) -> bytes:
    """The chain after a record whose frame payload is ``payload`` (bytes or a memoryview)."""
    h = blake2b(chain, digest_size=SIZE)
    h.update(payload)
    return h.digest()


def link_payload(chain: bytes, payloads: list[bytes]) -> tuple[bytes, bytes]:
    """(the LINK frame's payload for a batch of ``payloads`` following ``chain``, the chain after it)."""
    if len(payloads) == 1:
        chain = blake2b(chain + payloads[0], digest_size=SIZE).digest()
        return chain, chain
    parts = []
    for p in payloads:
        chain = blake2b(chain + p, digest_size=SIZE).digest()
        parts.append(chain[:PREFIX])
    parts[-1] = chain
    return b"".join(parts), chain


def link_size(records: int) -> int:
    """The size of the link payload of a batch of ``records`` records (0: a segment's start)."""
    return PREFIX * max(records - 1, 0) + SIZE


def head_of(link: bytes) -> bytes:
    """The chain value a link payload ends on."""
    return link[-SIZE:]
