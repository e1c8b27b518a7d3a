"""An archive stream as per-member events, for writers that route each member's bytes somewhere.

The :class:`ArchiveScanner` parses (and refuses what Go would read
differently); this only slices each chunk by the member data ranges the
scanner records (``Member.offset``/``size``), so no tar parsing happens twice.
Events come in archive order: ``("start", m, None)``, ``("data", m, piece)``
zero or more times, ``("end", m, None)``. Pieces are views into the chunks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Literal

from airflow_provider_artiload.oci.archive import ArchiveScanner, Member

Event = tuple[Literal["start", "data", "end"], Member, "memoryview | None"]


def member_events(chunks: Iterable[bytes], scanner: ArchiveScanner) -> Iterator[Event]:
    """Feed ``chunks`` to ``scanner``; yield each regular member's start, data and end. Call ``scanner.finish()`` after."""
    seen = 0
    current: Member | None = None
    for chunk in chunks:
        if not chunk:
            continue
        begin = scanner.offset
        scanner.feed(chunk)
        end = scanner.offset
        view = memoryview(chunk).cast("B")
        members = scanner.index.members
        new = list(islice(members.values(), seen, None)) if len(members) > seen else []
        seen = len(members)
        for member in ([current] if current is not None else []) + new:
            if member is not current:
                yield "start", member, None
            lo, hi = max(begin, member.offset), min(end, member.offset + member.size)
            if hi > lo:
                yield "data", member, view[lo - begin : hi - begin]
            if member.offset + member.size <= end:
                yield "end", member, None
                current = None
            else:
                current = member


__all__ = ["Event", "member_events"]
