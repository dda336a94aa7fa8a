"""RFC 5681 / RFC 6582 arithmetic of the congestion controller, without a connection."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.tcp.congestion import (
    DUP_ACK_THRESHOLD,
    INITIAL_SSTHRESH,
    NewRenoCongestion,
    initial_window,
)
from lab.wire.seq import seq_add

SMSS = 1000
ISS = 0xFFFFFF00  # close to the wrap, so `recover` comparisons must be modular


@pytest.mark.parametrize(
    ("smss", "iw"),
    [(536, 4 * 536), (1095, 4 * 1095), (1096, 3 * 1096), (1460, 3 * 1460), (2190, 3 * 2190),
     (2191, 2 * 2191), (8960, 2 * 8960)],
)  # fmt: skip
def test_initial_window_follows_rfc_5681_equation_1(smss: int, iw: int) -> None:
    assert initial_window(smss) == iw


def test_initial_window_can_be_configured_in_segments() -> None:
    cc = NewRenoCongestion(SMSS, ISS, initial_cwnd_segments=10)
    assert cc.cwnd == 10 * SMSS
    assert cc.ssthresh == INITIAL_SSTHRESH


def test_lost_syn_makes_the_initial_window_one_segment() -> None:
    cc = NewRenoCongestion(SMSS, ISS)
    cc.set_smss(SMSS, syn_was_retransmitted=True)
    assert cc.cwnd == SMSS


def test_slow_start_grows_by_at_most_one_smss_per_ack() -> None:
    cc = NewRenoCongestion(SMSS, ISS)
    start = cc.cwnd
    cc.on_new_ack(seq_add(ISS, 2000), 2 * SMSS, 0)  # a stretch ACK still adds one SMSS
    assert cc.cwnd == start + SMSS
    cc.on_new_ack(seq_add(ISS, 2100), 100, 0)
    assert cc.cwnd == start + SMSS + 100


def test_congestion_avoidance_grows_about_one_smss_per_window() -> None:
    cc = NewRenoCongestion(SMSS, ISS)
    cc.cwnd = cc.ssthresh = 10 * SMSS
    for i in range(10):  # one window of ACKs
        cc.on_new_ack(seq_add(ISS, (i + 1) * SMSS), SMSS, 0)
    assert 10 * SMSS + 900 <= cc.cwnd <= 11 * SMSS


def test_third_duplicate_ack_and_not_before_starts_fast_retransmit() -> None:
    cc = NewRenoCongestion(SMSS, ISS)
    ack = seq_add(ISS, 1 + SMSS)
    snd_nxt = seq_add(ISS, 1 + 9 * SMSS)
    assert cc.on_duplicate_ack(ack, 8 * SMSS, snd_nxt) is False
    assert cc.on_duplicate_ack(ack, 8 * SMSS, snd_nxt) is False
    assert cc.on_duplicate_ack(ack, 8 * SMSS, snd_nxt) is True
    assert cc.dup_acks == DUP_ACK_THRESHOLD
    assert cc.ssthresh == 4 * SMSS  # FlightSize / 2
    assert cc.cwnd == cc.ssthresh + 3 * SMSS
    assert cc.in_recovery
    assert cc.recover == seq_add(snd_nxt, -1)


def test_further_duplicate_acks_inflate_the_window_in_recovery() -> None:
    cc = NewRenoCongestion(SMSS, ISS)
    ack, snd_nxt = seq_add(ISS, 1), seq_add(ISS, 1 + 9 * SMSS)
    for _ in range(3):
        cc.on_duplicate_ack(ack, 9 * SMSS, snd_nxt)
    before = cc.cwnd
    assert cc.on_duplicate_ack(ack, 9 * SMSS, snd_nxt) is False
    assert cc.cwnd == before + SMSS


def test_partial_ack_deflates_and_asks_for_a_retransmission_full_ack_ends_recovery() -> None:
    cc = NewRenoCongestion(SMSS, ISS)
    ack, snd_nxt = seq_add(ISS, 1), seq_add(ISS, 1 + 10 * SMSS)
    for _ in range(3):
        cc.on_duplicate_ack(ack, 10 * SMSS, snd_nxt)
    inflated = cc.cwnd
    # Partial: 2 SMSS acknowledged, recover not covered.
    assert cc.on_new_ack(seq_add(ack, 2 * SMSS), 2 * SMSS, 8 * SMSS) is True
    assert cc.cwnd == inflated - 2 * SMSS + SMSS
    assert cc.in_recovery
    # Full: everything up to snd_nxt.
    assert cc.on_new_ack(snd_nxt, 8 * SMSS, 0) is False
    assert (cc.in_recovery, cc.dup_acks) == (False, 0)
    assert cc.cwnd == min(cc.ssthresh, SMSS + SMSS)


def test_duplicate_acks_not_beyond_recover_do_not_start_a_second_recovery() -> None:
    cc = NewRenoCongestion(SMSS, ISS)
    snd_nxt = seq_add(ISS, 1 + 10 * SMSS)
    cc.on_retransmit_timeout(10 * SMSS, snd_nxt)
    old = seq_add(ISS, 1 + 3 * SMSS)  # below recover: caused by our own go-back retransmissions
    assert not any(cc.on_duplicate_ack(old, 5 * SMSS, snd_nxt) for _ in range(5))


def test_timeout_sets_ssthresh_once_and_cwnd_to_the_loss_window() -> None:
    cc = NewRenoCongestion(SMSS, ISS)
    cc.cwnd = 20 * SMSS
    cc.on_retransmit_timeout(20 * SMSS, seq_add(ISS, 1 + 20 * SMSS))
    assert (cc.cwnd, cc.ssthresh) == (SMSS, 10 * SMSS)
    cc.on_retransmit_timeout(SMSS, seq_add(ISS, 1 + 20 * SMSS))  # backed-off repeat
    assert (cc.cwnd, cc.ssthresh) == (SMSS, 10 * SMSS)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["new", "dup", "rto"]), st.integers(1, 4 * SMSS)),
        max_size=60,
    )
)
def test_cwnd_and_ssthresh_never_fall_below_their_floors(ops: list[tuple[str, int]]) -> None:
    cc = NewRenoCongestion(SMSS, ISS)
    ack = seq_add(ISS, 1)
    for op, n in ops:
        snd_nxt = seq_add(ack, 20 * SMSS)
        if op == "new":
            ack = seq_add(ack, n)
            cc.on_new_ack(ack, n, 10 * SMSS)
        elif op == "dup":
            cc.on_duplicate_ack(ack, 10 * SMSS, snd_nxt)
        else:
            cc.on_retransmit_timeout(n, snd_nxt)
        assert cc.cwnd >= SMSS
        assert cc.ssthresh >= 2 * SMSS
