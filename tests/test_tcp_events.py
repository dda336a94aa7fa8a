"""Recovery events (lab.tcp.events): each recovery path of a Connection tells what it did.

The scenarios are those of tests/test_connection.py (its helpers build them), here with an
event listener attached; the events must agree with what went on the wire.
"""

from __future__ import annotations

import pytest
from test_connection import ACK, ISS, drive, out, sack_sender_with_srtt

from lab.link.impairment import Impairment
from lab.sim.transfer import Transfer
from lab.tcp.connection import Connection, State, TcpConfig
from lab.tcp.events import (
    KIND,
    CongestionWindowChanged,
    FastRetransmitted,
    LossDetected,
    RecoveryEvent,
    Resent,
    RtoFired,
    TailLossProbeSent,
    ZeroWindowProbed,
    describe,
)
from lab.wire.options import SackBlocks
from lab.wire.seq import seq_add


def listen(c: Connection) -> list[RecoveryEvent]:
    told: list[RecoveryEvent] = []
    c.event_listener = told.append
    return told


def test_an_rto_tells_the_value_that_fired_and_the_backed_off_one() -> None:
    c, _ = drive(State.ESTABLISHED)
    told = listen(c)
    c.send(b"r" * 4000, 0)
    first = out(c, 0)
    c.on_timer(1_000_000)
    out(c, 1_000_000)
    c.on_timer(3_000_000)
    out(c, 3_000_000)
    rtos = [e for e in told if isinstance(e, RtoFired)]
    assert rtos == [
        RtoFired(1_000_000, first[0].seq, 1_000_000, 2_000_000, 1),
        RtoFired(3_000_000, first[0].seq, 2_000_000, 4_000_000, 2),
    ]
    cuts = [e for e in told if isinstance(e, CongestionWindowChanged)]
    assert [(e.cwnd, e.why) for e in cuts] == [(c.effective_mss, "timeout")] * 2
    assert describe(rtos[1], ISS) == (
        "RTO after 2000 ms: resend 0, timer backed off to 4000 ms (retry 2)"
    )


def test_three_duplicate_acks_tell_the_loss_the_retransmit_and_the_new_window() -> None:
    c, p = drive(State.ESTABLISHED, TcpConfig(delayed_ack=0, initial_cwnd_segments=10))
    told = listen(c)
    c.send(b"f" * 14600, 0)
    sent = out(c, 0)
    for i in range(3):
        p.send(ACK, at=10 + i, ack=ISS + 1)
    [resent] = out(c, 12)
    assert told == [
        LossDetected(12, sent[0].seq, 1, "dupacks"),
        FastRetransmitted(12, resent.seq, len(resent.payload)),
        CongestionWindowChanged(12, 8 * 1460, 5 * 1460, "fast recovery"),
        Resent(12, resent.seq, len(resent.payload), "fast_retransmit"),
    ]


def test_a_tail_loss_probe_is_told_and_its_sack_starts_recovery_by_the_scoreboard() -> None:
    c, p = sack_sender_with_srtt(10_000)
    told = listen(c)
    c.send(b"p" * 2920, 20_000)
    first, second = out(c, 20_000)
    c.on_timer(40_000)
    [probe] = out(c, 40_000)
    assert told == [
        TailLossProbeSent(40_000, probe.seq, len(probe.payload), False),
        Resent(40_000, probe.seq, len(probe.payload), "tail_loss_probe"),
    ]
    block = SackBlocks(((second.seq, seq_add(second.seq, 1460)),))
    p.send(ACK, at=50_000, ack=first.seq, options=(block,))
    [again] = out(c, 50_000)
    kinds = [type(e) for e in told[2:]]
    assert kinds == [LossDetected, FastRetransmitted, CongestionWindowChanged, Resent]
    loss = told[2]
    assert isinstance(loss, LossDetected)
    assert (loss.seq, loss.by) == (again.seq, "rack")  # a later-sent segment was SACKed first


def test_a_zero_window_probe_is_told_with_its_backed_off_interval() -> None:
    c, p = drive(State.ESTABLISHED)
    told = listen(c)
    p.send(ACK, window=0)
    c.send(b"w" * 3000, 0)
    assert out(c, 0) == []  # the window is closed
    c.on_timer(1_000_000)
    [probe] = out(c, 1_000_000)
    p.send(ACK, at=1_000_100, ack=ISS + 1, window=0)
    c.on_timer(3_000_000)
    out(c, 3_000_000)
    assert told == [
        ZeroWindowProbed(1_000_000, probe.seq, 2_000_000),
        Resent(3_000_000, probe.seq, 1, "window_probe"),
        ZeroWindowProbed(3_000_000, probe.seq, 4_000_000),
    ]


def test_a_connection_without_a_listener_runs_the_same() -> None:
    quiet, _ = drive(State.ESTABLISHED)
    loud, _ = drive(State.ESTABLISHED)
    listen(loud)
    for c in (quiet, loud):
        c.send(b"r" * 4000, 0)
        c.on_timer(1_000_000)
    assert out(quiet, 1_000_000) == out(loud, 1_000_000)


@pytest.mark.parametrize("seed", [2, 3])
def test_events_account_for_the_retransmissions_of_a_lossy_transfer(seed: int) -> None:
    transfer = Transfer(bytes(200_000), b"", Impairment(loss=0.05, reorder=0.05, delay=5_000,
                                                        seed=seed), seed=seed)  # fmt: skip
    told = listen(transfer.client)
    result = transfer.run()
    counts = dict.fromkeys(KIND.values(), 0)
    for event in told:
        counts[KIND[type(event)]] += 1
    stats = result.client.stats
    assert counts["rtos"] == stats.timeouts
    assert counts["tail_loss_probes"] == stats.tail_loss_probes
    # fast retransmits at recovery entry, plus partial-ACK resends
    assert counts["fast_retransmits"] >= stats.fast_retransmits
    assert counts["loss_detected"] >= 1
    assert all(e.time <= result.finished_at for e in told)
    # Every retransmission is a Resent event, with the reason of the event that announced it.
    resent = [e for e in told if isinstance(e, Resent)]
    assert len(resent) == stats.retransmissions
    assert sum(e.why == "rto" for e in resent) == stats.timeouts
    fast = [e for e in told if isinstance(e, FastRetransmitted)]
    assert [(e.seq, e.time) for e in resent if e.why == "fast_retransmit"] == [
        (e.seq, e.time) for e in fast
    ]
