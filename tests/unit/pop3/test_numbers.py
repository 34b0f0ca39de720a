"""ByNumber (pop3/numbers.py) is a Mapping equal to the dict of the same items, whatever
numbers and values go in, in whatever order; it stays compact on a mailbox's numbers
and never grows its array for a hostile number."""

from __future__ import annotations

import tracemalloc

from hypothesis import given
from hypothesis import strategies as st

from popvault.pop3.numbers import SLACK, ByNumber

NUMBERS = st.one_of(
    st.integers(min_value=1, max_value=3000),
    st.integers(min_value=-5, max_value=2**62),
)
VALUES = st.one_of(st.integers(min_value=0, max_value=2**40), st.integers(-(2**40), 2**40))


@given(st.lists(st.tuples(NUMBERS, VALUES), max_size=300))
def test_equal_to_the_dict_of_the_same_items(items: list[tuple[int, int]]) -> None:
    want: dict[int, int] = {}
    got = ByNumber()
    for num, value in items:
        want[num] = value
        got[num] = value
        assert got[num] == value
    assert got == want
    assert len(got) == len(want)
    assert list(got) == sorted(want)
    for num, _ in items:
        assert num in got
        assert got.get(num) == want[num]
    assert 0 not in got or 0 in want
    assert got.get(3001 + 2**62) is None
    assert ByNumber(items) == want
    key: object = "x"
    assert key not in got


def test_a_mailbox_s_sizes_are_compact() -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        sizes = ByNumber((n, 3_000 + n) for n in range(1, 100_001))
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(sizes) == 100_000 and sizes[100_000] == 103_000
    assert used < 1_200_000  # a dict of the same: about 10 MB


def test_a_hostile_number_does_not_grow_the_array() -> None:
    sizes = ByNumber([(1, 10), (99_999_999_999, 5), (SLACK + 2, 7)])
    assert len(sizes._dense) == 1  # the far ones wait in the dict
    assert dict(sizes) == {1: 10, 99_999_999_999: 5, SLACK + 2: 7}
    sizes[2] = 3
    assert list(sizes) == [1, 2, SLACK + 2, 99_999_999_999]
