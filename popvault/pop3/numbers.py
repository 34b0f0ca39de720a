"""Values by message number, compact: a run keeps one for every message of a mailbox.

A POP3 session numbers its messages 1 to N (RFC 1939), and a backup keeps a value for
each (the size LIST gave, what RETR received). As a ``dict`` of ``int`` objects that is
about 100 bytes a message (10 MB for 100,000 messages, a tenth of a backup's memory);
:class:`ByNumber` keeps them in an array, 8 bytes a message. A number far beyond the
ones seen (a hostile server's ``LIST`` line ``99999999999 5``), below 1, or a negative
value goes to a ``dict`` beside it instead, so no input makes the array grow by more
than it has seen. It behaves as a ``Mapping`` of ``int`` to ``int`` (equal to the
``dict`` of the same items); iteration is in ascending number order.
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Iterable, Iterator, Mapping
from itertools import repeat

#: Numbers past the array's end it grows to take (beyond them: the dict), at least.
SLACK = 1024
_ABSENT = -1


class ByNumber(Mapping[int, int]):
    """Message number -> a number (a size), compact; see the module doc."""

    def __init__(self, items: Iterable[tuple[int, int]] = ()) -> None:
        self._dense = array("q")  # value of number i + 1; _ABSENT where there is none
        self._other: dict[int, int] = {}
        self._count = 0
        for num, value in items:
            self[num] = value

    def __setitem__(self, num: int, value: int) -> None:
        size = len(self._dense)
        if value >= 0 and 1 <= num <= size + max(SLACK, size):
            if num > size:
                self._dense.extend(repeat(_ABSENT, num - size))
            if self._dense[num - 1] == _ABSENT:
                if self._other.pop(num, None) is None:
                    self._count += 1
            self._dense[num - 1] = value
            return
        if self._in_dense(num):  # a negative value where the array has one
            self._dense[num - 1] = _ABSENT
            self._count -= 1
        if num not in self._other:
            self._count += 1
        self._other[num] = value

    def _in_dense(self, num: int) -> bool:
        return 1 <= num <= len(self._dense) and self._dense[num - 1] != _ABSENT

    def __getitem__(self, num: int) -> int:
        if self._in_dense(num):
            return self._dense[num - 1]
        return self._other[num]

    def __contains__(self, num: object) -> bool:
        return isinstance(num, int) and (self._in_dense(num) or num in self._other)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[int]:
        # the dict's numbers lie before, between or after the array's: merged in order
        dense = (i + 1 for i, v in enumerate(self._dense) if v != _ABSENT)
        return heapq.merge(dense, sorted(self._other))

    def __repr__(self) -> str:
        return f"ByNumber({dict(self.items())!r})"
