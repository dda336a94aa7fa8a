"""The reassembler: order, duplicates, overlap policy, window, holes, FIN, wrap, SACK, flush."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.tcp.reassembly import OverlapConflict, OverlapPolicy, Reassembler
from lab.wire.seq import MASK, seq_add

ISN = 1000


def fresh(**kwargs: object) -> Reassembler:
    return Reassembler(ISN, **kwargs)  # type: ignore[arg-type]


def at(offset: int, isn: int = ISN) -> int:
    """The sequence number of stream offset `offset`."""
    return seq_add(isn, offset)


# -- ordering ------------------------------------------------------------------------------------


def test_in_order_segments_are_delivered_immediately_and_once() -> None:
    r = fresh()
    first = r.push(at(0), b"hello ")
    second = r.push(at(6), b"world")
    assert (first.delivered, second.delivered) == (b"hello ", b"world")
    assert not first.out_of_order
    assert not first.duplicate
    assert not first.filled_gap
    assert r.next_offset == 11
    assert r.next_seq == ISN + 11
    assert r.held_bytes == 0
    assert r.stats.delivered_bytes == 11


def test_out_of_order_segment_is_held_until_the_gap_fills() -> None:
    r = fresh()
    held = r.push(at(5), b"56789")
    assert held.delivered == b""
    assert held.out_of_order
    assert r.held_bytes == 5
    assert r.next_offset == 0
    fill = r.push(at(0), b"01234")
    assert fill.delivered == b"0123456789"
    assert fill.filled_gap
    assert not fill.out_of_order
    assert r.held_bytes == 0
    assert r.stats.out_of_order_segments == 1


def test_filling_one_of_two_holes_delivers_only_up_to_the_next_hole() -> None:
    r = fresh()
    r.push(at(2), b"23")
    r.push(at(6), b"67")
    res = r.push(at(0), b"01")
    assert res.delivered == b"0123"
    assert r.gaps() == [(4, 6)]
    assert r.push(at(4), b"45").delivered == b"4567"


def test_empty_push_without_fin_does_nothing() -> None:
    r = fresh()
    res = r.push(at(0), b"")
    assert res.delivered == b""
    assert not res.duplicate
    assert not res.out_of_order
    assert r.stats.segments == 1


def test_push_accepts_bytearray_and_memoryview() -> None:
    r = fresh()
    assert r.push(at(0), bytearray(b"ab")).delivered == b"ab"
    assert r.push(at(2), memoryview(b"cd")).delivered == b"cd"


# -- duplicates and overlaps ---------------------------------------------------------------------


def test_exact_duplicate_of_delivered_data_is_a_duplicate_and_not_redelivered() -> None:
    r = fresh()
    r.push(at(0), b"abcdef")
    res = r.push(at(0), b"abcdef")
    assert res.duplicate
    assert res.delivered == b""
    assert res.conflicts == ()
    assert r.stats.duplicate_segments == 1
    assert r.stats.duplicate_bytes == 6


def test_exact_duplicate_of_held_data_is_a_duplicate_and_held_once() -> None:
    r = fresh()
    r.push(at(4), b"efgh")
    res = r.push(at(4), b"efgh")
    assert res.duplicate
    assert not res.out_of_order
    assert r.held_bytes == 4
    assert r.push(at(0), b"abcd").delivered == b"abcdefgh"


def test_retransmission_straddling_rcv_nxt_delivers_only_the_new_tail() -> None:
    r = fresh()
    r.push(at(0), b"abcd")
    res = r.push(at(2), b"cdef")
    assert res.delivered == b"ef"
    assert not res.duplicate
    assert r.stats.overlapping_segments == 1
    assert r.stats.duplicate_bytes == 2


def test_partial_overlap_on_the_left_of_a_held_run_adds_only_new_bytes() -> None:
    r = fresh()
    r.push(at(10), b"klmno")
    res = r.push(at(7), b"hijkl")
    assert not res.duplicate
    assert res.out_of_order
    assert r.held_bytes == 8
    assert r.gaps() == [(0, 7)]
    assert r.push(at(0), b"abcdefg").delivered == b"abcdefghijklmno"


def test_partial_overlap_on_the_right_of_a_held_run_adds_only_new_bytes() -> None:
    r = fresh()
    r.push(at(10), b"klmno")
    r.push(at(13), b"nopqr")
    assert r.held_bytes == 8
    assert r.held_ranges() == [(10, 18)]
    assert r.push(at(0), b"abcdefghij").delivered == b"abcdefghijklmnopqr"


def test_segment_spanning_several_held_runs_merges_them_into_one() -> None:
    r = fresh()
    r.push(at(2), b"c")
    r.push(at(5), b"fg")
    r.push(at(9), b"j")
    assert r.held_ranges() == [(2, 3), (5, 7), (9, 10)]
    res = r.push(at(1), b"bcdefghijk")
    assert res.conflicts == ()
    assert r.held_ranges() == [(1, 11)]
    assert r.held_bytes == 10
    assert r.push(at(0), b"a").delivered == b"abcdefghijk"


def test_adjacent_runs_merge_without_overlap() -> None:
    r = fresh()
    r.push(at(3), b"d")
    r.push(at(5), b"f")
    r.push(at(4), b"e")
    assert r.held_ranges() == [(3, 6)]
    assert r.gaps() == [(0, 3)]


@pytest.mark.parametrize("policy", ["first", "last"])
def test_conflicting_overlap_with_held_bytes_is_recorded_with_the_policy_winner(
    policy: OverlapPolicy,
) -> None:
    r = fresh(policy=policy)
    r.push(at(4), b"EFGH")
    res = r.push(at(4), b"EfgH")
    expected = OverlapConflict(
        offset=5,
        length=2,
        winner=policy,
        kept=b"FG" if policy == "first" else b"fg",
        discarded=b"fg" if policy == "first" else b"FG",
    )
    assert res.conflicts == (expected,)
    assert r.conflicts == [expected]
    assert r.stats.conflicts == 1
    delivered = r.push(at(0), b"abcd").delivered
    assert delivered == (b"abcdEFGH" if policy == "first" else b"abcdEfgH")


@pytest.mark.parametrize("policy", ["first", "last"])
def test_conflicting_retransmission_of_delivered_bytes_keeps_the_delivered_ones(
    policy: OverlapPolicy,
) -> None:
    r = fresh(policy=policy)
    r.push(at(0), b"abcdef")
    res = r.push(at(1), b"bXYe")
    assert res.delivered == b""
    assert res.conflicts == (
        OverlapConflict(offset=2, length=2, winner="first", kept=b"cd", discarded=b"XY"),
    )


@pytest.mark.parametrize("policy", ["first", "last"])
def test_new_segment_conflicting_with_several_held_runs_records_each_overlap(
    policy: OverlapPolicy,
) -> None:
    r = fresh(policy=policy)
    r.push(at(2), b"CD")
    r.push(at(6), b"GH")
    res = r.push(at(1), b"bcdefghi")
    assert [(c.offset, c.length, c.winner) for c in res.conflicts] == [
        (2, 2, policy),
        (6, 2, policy),
    ]
    delivered = r.push(at(0), b"a").delivered
    assert delivered == (b"abCDefGHi" if policy == "first" else b"abcdefghi")


@pytest.mark.parametrize(
    ("first_run", "second_run"),
    [((1, b"BCDEF"), (8, b"I")), ((2, b"C"), (5, b"FGHIJ"))],
    ids=["longer-prefix-kept", "longer-suffix-kept"],
)
def test_policy_last_keeps_held_bytes_only_outside_the_new_segment(
    first_run: tuple[int, bytes], second_run: tuple[int, bytes]
) -> None:
    r = fresh(policy="last")
    r.push(at(first_run[0]), first_run[1])
    r.push(at(second_run[0]), second_run[1])
    r.push(at(3), b"defgh")
    lo = first_run[0]
    hi = second_run[0] + len(second_run[1])
    assert r.held_ranges() == [(lo, hi)]
    expected = b"-" * lo + first_run[1][: 3 - lo] + b"defgh" + second_run[1][8 - second_run[0] :]
    assert r.push(at(0), b"-" * lo).delivered == expected


def test_policy_last_overwrites_the_middle_of_one_held_run() -> None:
    r = fresh(policy="last")
    r.push(at(2), b"cdefgh")
    r.push(at(4), b"EF")
    assert r.push(at(0), b"ab").delivered == b"abcdEFgh"


def test_conflict_reports_only_the_span_of_differing_bytes() -> None:
    r = fresh()
    r.push(at(10), b"0123456789")
    (conflict,) = r.push(at(10), b"01x345y789").conflicts
    assert (conflict.offset, conflict.length) == (12, 5)
    assert (conflict.kept, conflict.discarded) == (b"23456", b"x345y")


def test_retransmission_older_than_the_history_is_counted_not_compared() -> None:
    r = fresh(capacity=4)
    r.push(at(0), b"abcd")
    r.push(at(4), b"efgh")
    res = r.push(at(0), b"XXXX")
    assert res.conflicts == ()
    assert res.duplicate
    assert r.stats.uncompared_bytes == 4
    assert r.push(at(4), b"eXgh").conflicts[0].offset == 5


# -- window and holes ----------------------------------------------------------------------------


def test_bytes_beyond_the_window_are_trimmed_and_counted() -> None:
    r = fresh()
    res = r.push(at(0), b"abcdefgh", window=5)
    assert res.delivered == b"abcde"
    assert res.refused_bytes == 3
    assert r.stats.refused_bytes == 3
    assert r.stats.trimmed_segments == 1
    assert r.stats.refused_segments == 0


def test_segment_entirely_beyond_the_window_is_refused() -> None:
    r = fresh()
    res = r.push(at(10), b"xyz", window=10)
    assert res.refused_bytes == 3
    assert r.held_bytes == 0
    assert r.stats.refused_segments == 1
    assert not res.out_of_order


def test_window_is_measured_from_rcv_nxt_and_bounded_by_capacity() -> None:
    r = fresh(capacity=8)
    r.push(at(0), b"0123")
    res = r.push(at(4), b"456789abcdef", window=100)
    assert res.delivered == b"456789ab"
    assert res.refused_bytes == 4


def test_zero_window_refuses_data_but_takes_a_fin_at_rcv_nxt() -> None:
    r = fresh()
    r.push(at(0), b"ab")
    assert r.push(at(2), b"c", window=0).refused_bytes == 1
    res = r.push(at(2), b"", fin=True, window=0)
    assert res.fin_reached


def test_segment_that_would_open_one_hole_too_many_is_refused() -> None:
    r = fresh(max_holes=2)
    r.push(at(2), b"c")
    r.push(at(4), b"e")
    res = r.push(at(6), b"g")
    assert res.refused_bytes == 1
    assert r.stats.hole_limit_refusals == 1
    assert r.stats.refused_segments == 1
    assert r.held_ranges() == [(2, 3), (4, 5)]
    # Extending a held run or filling at RCV.NXT opens no hole: still accepted.
    assert r.push(at(5), b"f").refused_bytes == 0
    assert r.push(at(0), b"ab").delivered == b"abc"
    assert r.push(at(8), b"i").refused_bytes == 0
    assert r.gaps() == [(3, 4), (6, 8)]


def test_one_far_ahead_byte_holds_one_byte_not_a_zero_filled_buffer() -> None:
    r = fresh(capacity=1 << 30)
    r.push(at((1 << 30) - 1), b"z")
    assert r.held_bytes == 1
    assert r.gaps() == [(0, (1 << 30) - 1)]


def test_many_one_byte_segments_in_reverse_order_reassemble() -> None:
    data = random.Random(7).randbytes(20_000)
    r = fresh()
    out = [r.push(at(i), data[i : i + 1]).delivered for i in range(len(data) - 1, -1, -1)]
    assert b"".join(out) == data


# -- FIN -----------------------------------------------------------------------------------------


def test_fin_after_in_order_data_is_reached_at_once() -> None:
    r = fresh()
    res = r.push(at(0), b"bye", fin=True)
    assert res.delivered == b"bye"
    assert res.fin_reached
    assert r.finished
    assert r.fin_offset == 3
    assert r.next_seq == ISN + 3  # the FIN is not counted in RCV.NXT


def test_fin_beyond_a_hole_is_reached_only_when_the_hole_fills() -> None:
    r = fresh()
    res = r.push(at(3), b"def", fin=True)
    assert not res.fin_reached
    assert r.fin_offset == 6
    assert not r.finished
    fill = r.push(at(0), b"abc")
    assert fill.delivered == b"abcdef"
    assert fill.fin_reached
    assert r.finished


def test_data_beyond_a_known_fin_is_refused() -> None:
    r = fresh()
    r.push(at(0), b"ab", fin=True)
    res = r.push(at(2), b"cd")
    assert res.refused_bytes == 2
    assert res.delivered == b""
    trimmed = fresh()
    trimmed.push(at(4), b"", fin=True)
    assert trimmed.push(at(0), b"abcdef").delivered == b"abcd"
    assert trimmed.stats.refused_bytes == 2


def test_fin_at_another_position_is_counted_and_the_first_kept() -> None:
    r = fresh()
    r.push(at(5), b"", fin=True)
    r.push(at(7), b"", fin=True)
    assert r.fin_offset == 5
    assert r.stats.fin_conflicts == 1


def test_fin_contradicted_by_data_already_received_beyond_it_is_ignored() -> None:
    r = fresh()
    r.push(at(6), b"gh")
    r.push(at(0), b"ab", fin=True)
    assert r.fin_offset is None
    assert r.stats.fin_conflicts == 1


def test_retransmitted_fin_is_a_duplicate() -> None:
    r = fresh()
    r.push(at(0), b"ab", fin=True)
    res = r.push(at(0), b"ab", fin=True)
    assert res.duplicate
    assert res.fin_reached
    assert r.push(at(2), b"", fin=True).duplicate


def test_fin_on_a_segment_trimmed_by_the_window_is_not_taken() -> None:
    r = fresh()
    r.push(at(0), b"abcdef", fin=True, window=4)
    assert r.fin_offset is None
    assert r.next_offset == 4


# -- sequence-number wrap ------------------------------------------------------------------------


@pytest.mark.parametrize("isn", [MASK, MASK - 2, 0, 1 << 31])
def test_stream_crossing_2_32_reassembles_out_of_order(isn: int) -> None:
    r = Reassembler(isn)
    r.push(seq_add(isn, 4), b"efgh", fin=True)
    assert r.sack_blocks() == [(seq_add(isn, 4), seq_add(isn, 8))]
    assert r.push(isn, b"abcd").delivered == b"abcdefgh"
    assert r.next_seq == seq_add(isn, 8)
    assert r.finished


def test_stream_longer_than_4_gib_keeps_plain_offsets() -> None:
    r = Reassembler(MASK - 10, capacity=1 << 30)
    # Jump ahead with flush (one held byte at the window's edge, holes abandoned), five times.
    for _ in range(5):
        r.push(seq_add(r.next_seq, (1 << 30) - 1), b"x")
        r.flush()
    base = r.next_offset
    assert base == 5 << 30
    assert r.next_seq == seq_add(MASK - 10, base)
    r.push(seq_add(r.next_seq, 3), b"def")
    assert r.gaps() == [(base, base + 3)]
    assert r.push(r.next_seq, b"abc").delivered == b"abcdef"
    assert r.next_offset == base + 6


def test_constructor_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="initial_seq"):
        Reassembler(1 << 32)
    with pytest.raises(ValueError, match="capacity"):
        Reassembler(0, capacity=0)
    with pytest.raises(ValueError, match="policy"):
        Reassembler(0, policy="middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_holes"):
        Reassembler(0, max_holes=0)


# -- gaps, SACK, flush ---------------------------------------------------------------------------


def test_gaps_lists_missing_ranges_up_to_the_highest_held_byte() -> None:
    r = fresh()
    assert r.gaps() == []
    r.push(at(0), b"ab")
    r.push(at(4), b"ef")
    r.push(at(10), b"k")
    assert r.gaps() == [(2, 4), (6, 10)]


def test_sack_blocks_put_the_run_of_the_latest_segment_first_then_stream_order() -> None:
    r = fresh()
    r.push(at(10), b"k")
    r.push(at(20), b"u")
    r.push(at(30), b"E")
    r.push(at(40), b"O")
    r.push(at(21), b"v")  # extends the run at 20: it is now the most recent
    blocks = r.sack_blocks()
    assert blocks == [(at(20), at(22)), (at(40), at(41)), (at(30), at(31)), (at(10), at(11))]
    assert r.sack_blocks(limit=2) == blocks[:2]
    r.push(at(10), b"k")  # a duplicate of held data also reports its block first
    assert r.sack_blocks()[0] == (at(10), at(11))
    r.push(at(0), b"0123456789")
    assert (at(10), at(11)) not in r.sack_blocks()


def test_sack_blocks_fall_back_to_stream_order_for_runs_never_reported() -> None:
    r = fresh()
    r.push(at(8), b"i")
    r.push(at(4), b"e")
    for _k in range(20):  # pushes that push older arrivals out of the recency memory
        r.push(at(8), b"i")
    assert r.sack_blocks() == [(at(8), at(9)), (at(4), at(5))]
    assert fresh().sack_blocks() == []


def test_flush_hands_out_held_runs_and_records_the_holes_without_zero_fill() -> None:
    r = fresh()
    r.push(at(0), b"ab")
    r.push(at(4), b"ef")
    r.push(at(8), b"ij", fin=True)
    runs = r.flush()
    assert runs == [(4, b"ef"), (8, b"ij")]
    assert r.abandoned_gaps == [(2, 4), (6, 8)]
    assert r.stats.gap_bytes == 4
    assert r.stats.flushed_bytes == 4
    assert r.held_bytes == 0
    assert r.next_offset == 10
    assert r.finished


def test_flush_gives_up_a_hole_before_the_fin_and_later_data_continues() -> None:
    r = fresh()
    r.push(at(6), b"", fin=True)
    assert r.flush() == []
    assert r.abandoned_gaps == [(0, 6)]
    assert r.finished
    open_ended = fresh()
    open_ended.push(at(3), b"de")
    open_ended.flush()
    assert open_ended.push(at(5), b"fg").delivered == b"fg"
    (conflict,) = open_ended.push(at(3), b"dX").conflicts
    assert conflict.offset == 4


# -- properties ----------------------------------------------------------------------------------

isns = st.one_of(st.integers(0, MASK), st.integers(MASK - 70_000, MASK))


def segmentation(rng: random.Random, length: int, max_seg: int) -> list[tuple[int, int]]:
    """Random (offset, length) pieces that cover [0, length), with random extra retransmissions."""
    pieces = []
    offset = 0
    while offset < length:
        size = rng.randint(1, max_seg)
        pieces.append((offset, min(size, length - offset)))
        offset += size
    for _ in range(rng.randint(0, len(pieces))):
        lo = rng.randrange(length)
        pieces.append((lo, rng.randint(1, min(max_seg, length - lo))))
    return pieces


@settings(max_examples=200, deadline=None)
@given(
    length=st.integers(0, 65_536),
    isn=isns,
    policy=st.sampled_from(["first", "last"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_segmentation_order_and_duplication_delivers_the_stream_exactly_once(
    length: int, isn: int, policy: OverlapPolicy, seed: int
) -> None:
    # A seeded Random, not st.randoms(): a 64 KB stream cut into 8-byte pieces draws thousands of
    # numbers, past what hypothesis lets one example consume (its data_too_large health check).
    rng = random.Random(seed)
    stream = rng.randbytes(length)
    pieces = segmentation(rng, length, rng.choice([8, 200, 1460, 9000]))
    rng.shuffle(pieces)
    r = Reassembler(isn, capacity=1 << 17, policy=policy, max_holes=1 << 20)
    out = []
    for lo, size in pieces:
        res = r.push(seq_add(isn, lo), stream[lo : lo + size], fin=lo + size == length)
        out.append(res.delivered)
    out.append(r.push(seq_add(isn, length), b"", fin=True).delivered)
    assert b"".join(out) == stream
    assert r.conflicts == []
    assert r.finished
    assert r.held_bytes == 0
    assert r.stats.delivered_bytes == length
    assert r.next_seq == seq_add(isn, length)
    assert r.stats.refused_bytes == 0


def reference(
    pushes: list[tuple[int, bytes]], policy: OverlapPolicy
) -> tuple[bytes, list[list[tuple[int, int, OverlapPolicy]]]]:
    """A byte-at-a-time model: the delivered stream and, per push, (offset, kept, winner) of each
    byte whose two copies differ."""
    value: dict[int, int] = {}
    nxt = 0
    delivered = bytearray()
    per_push = []
    for lo, data in pushes:
        diffs: list[tuple[int, int, OverlapPolicy]] = []
        for k, b in enumerate(data):
            i = lo + k
            if i < nxt:
                if delivered[i] != b:
                    diffs.append((i, delivered[i], "first"))
            elif i in value:
                if value[i] != b:
                    if policy == "last":
                        value[i] = b
                    diffs.append((i, value[i], policy))
            else:
                value[i] = b
        while nxt in value:
            delivered.append(value.pop(nxt))
            nxt += 1
        per_push.append(diffs)
    return bytes(delivered), per_push


@settings(max_examples=250, deadline=None)
@given(
    length=st.integers(1, 3000),
    isn=isns,
    policy=st.sampled_from(["first", "last"]),
    rng=st.randoms(use_true_random=False),
)
def test_conflicting_overlaps_are_recorded_and_the_stream_follows_the_policy(
    length: int, isn: int, policy: OverlapPolicy, rng: random.Random
) -> None:
    versions = [rng.randbytes(length)]
    for _ in range(2):
        v = bytearray(versions[0])
        for _ in range(rng.randint(1, 20)):
            v[rng.randrange(length)] = rng.randrange(256)
        versions.append(bytes(v))
    pieces = [
        (lo, versions[rng.randrange(3)][lo : lo + size])
        for lo, size in segmentation(rng, length, rng.choice([4, 64, 700]))
    ]
    rng.shuffle(pieces)
    expected, diffs = reference(pieces, policy)
    r = Reassembler(isn, policy=policy, max_holes=1 << 20)
    out = []
    for (lo, data), want in zip(pieces, diffs, strict=True):
        res = r.push(seq_add(isn, lo), data)
        out.append(res.delivered)
        got = [
            (c.offset + k, c.kept[k], c.winner)
            for c in res.conflicts
            for k in range(c.length)
            if c.kept[k] != c.discarded[k]
        ]
        assert sorted(got) == sorted(want)
        for c in res.conflicts:
            assert c.kept[0] != c.discarded[0]
            assert c.kept[-1] != c.discarded[-1]
    assert b"".join(out) == expected
    assert r.stats.conflicts == len(r.conflicts)


@settings(max_examples=150, deadline=None)
@given(
    length=st.integers(1, 20_000),
    isn=isns,
    capacity=st.integers(1, 4096),
    max_holes=st.integers(1, 8),
    rng=st.randoms(use_true_random=False),
)
def test_windows_and_hole_cap_never_lose_order_or_exceed_memory(
    length: int, isn: int, capacity: int, max_holes: int, rng: random.Random
) -> None:
    stream = rng.randbytes(length)
    pieces = segmentation(rng, length, rng.choice([16, 500, 3000]))
    rng.shuffle(pieces)
    r = Reassembler(isn, capacity=capacity, max_holes=max_holes)
    out = bytearray()
    for lo, size in pieces:
        res = r.push(seq_add(isn, lo), stream[lo : lo + size], window=rng.randint(0, capacity))
        out += res.delivered
        assert out == stream[: len(out)]
        assert r.next_offset == len(out)
        held = r.held_ranges()
        assert r.held_bytes == sum(hi - lo for lo, hi in held) <= capacity
        assert len(held) <= max_holes
        assert all(a[1] < b[0] for a, b in itertools.pairwise(held))
        assert all(lo > r.next_offset for lo, _ in held)
        edges = [r.next_offset] + [hi for _, hi in held]
        assert r.gaps() == [(prev, lo) for prev, (lo, _) in zip(edges, held, strict=False)]
    # The peer retransmits everything in order: the rest arrives, nothing twice.
    for lo in range(0, length, capacity):
        out += r.push(seq_add(isn, lo), stream[lo : lo + capacity]).delivered
    assert out == stream
    assert r.held_bytes == 0
