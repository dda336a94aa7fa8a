"""Two endpoints over a faulty memory wire: every byte arrives once, in order, and both close.

These are the properties the whole TCP core exists for, checked under seeded schedules of loss,
duplication, reordering and delay, and with ISNs anywhere in the sequence space, including just
below the 2**32 wrap so that the transfer crosses it.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from lab.link.impairment import Impairment
from lab.sim.transfer import Transfer
from lab.sim.wire import BitFlipCorrupter
from lab.tcp.connection import State, TcpConfig
from lab.wire import fast
from lab.wire.frame import Ipv4Header, TcpFrame
from lab.wire.segment import AddressedSegment

# Short TIME-WAIT so a run ends soon after the data; generous retries so that a 20% loss rate in
# both directions cannot, by bad luck, exhaust the SYN retries (0.36**7 per handshake otherwise).
CONFIG = TcpConfig(msl=1_000_000, syn_retries=12, data_retries=20)
NEAR_WRAP = st.integers(2**32 - 2**20, 2**32 - 1)
ANY_ISN = st.one_of(st.integers(0, 2**32 - 1), NEAR_WRAP)


@st.composite
def impairments(draw: st.DrawFn, max_rate: float = 0.2) -> Impairment:
    delay = draw(st.integers(0, 50_000))
    return Impairment(
        loss=draw(st.floats(0, max_rate)),
        duplicate=draw(st.floats(0, max_rate)),
        reorder=draw(st.floats(0, max_rate)),
        corrupt=draw(st.floats(0, max_rate / 4)),
        delay=delay,
        jitter=draw(st.integers(0, delay // 2)),
        reorder_delay=draw(st.integers(1_000, 100_000)),
        seed=draw(st.integers(0, 2**32)),
    )


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def check(
    upload: bytes,
    download: bytes,
    imp: Impairment,
    client_iss: int,
    server_iss: int,
    server_closes_first: bool = False,
) -> None:
    result = Transfer(
        upload,
        download,
        imp,
        config=CONFIG,
        client_iss=client_iss,
        server_iss=server_iss,
        server_closes_first=server_closes_first,
    ).run()
    assert len(result.received_by_server) == len(upload)
    assert result.received_by_server == upload
    assert len(result.received_by_client) == len(download)
    assert result.received_by_client == download
    assert result.both_closed
    assert result.client.state is State.CLOSED
    assert result.server is not None
    assert result.server.state is State.CLOSED


DIRECTIONS = st.sampled_from(["up", "down", "both"])


def split(direction: str, data: bytes, other: bytes) -> tuple[bytes, bytes]:
    if direction == "up":
        return data, b""
    if direction == "down":
        return b"", data
    return data, other


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.integers(0, 30_000),
    other=st.integers(0, 10_000),
    direction=DIRECTIONS,
    imp=impairments(),
    client_iss=ANY_ISN,
    server_iss=ANY_ISN,
    seed=st.integers(0, 1000),
    server_closes_first=st.booleans(),
)
def test_bytes_arrive_exactly_once_in_order_and_both_sides_close(
    size: int,
    other: int,
    direction: str,
    imp: Impairment,
    client_iss: int,
    server_iss: int,
    seed: int,
    server_closes_first: bool,
) -> None:
    up, down = split(direction, payload(size, seed), payload(other, seed + 1))
    check(up, down, imp, client_iss, server_iss, server_closes_first)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.integers(0, 3_000), imp=impairments(max_rate=0.2))
def test_tiny_transfers_and_empty_ones_close_cleanly(size: int, imp: Impairment) -> None:
    check(payload(size, 0), b"", imp, 12345, 67890)


@pytest.mark.slow
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # shrinking megabytes takes minutes
)
@given(
    size=st.integers(200_000, 1_000_000),
    direction=DIRECTIONS,
    imp=impairments(),
    client_iss=NEAR_WRAP,
    server_iss=NEAR_WRAP,
)
def test_a_megabyte_survives_faults_across_the_sequence_wrap(
    size: int, direction: str, imp: Impairment, client_iss: int, server_iss: int
) -> None:
    up, down = split(direction, payload(size, 1), payload(size // 4, 2))
    check(up, down, imp, client_iss, server_iss)


@pytest.mark.slow
def test_one_megabyte_under_five_percent_loss_and_reordering_crosses_the_wrap() -> None:
    imp = Impairment(loss=0.05, reorder=0.05, duplicate=0.02, delay=5_000, jitter=500, seed=99)
    data = payload(1_000_000, 7)
    check(data, b"", imp, client_iss=2**32 - 500_000, server_iss=2**32 - 1)


def test_same_seed_same_run() -> None:
    imp = Impairment(loss=0.1, reorder=0.1, duplicate=0.05, delay=2_000, jitter=300, seed=4)
    runs = [Transfer(payload(50_000, 3), b"", imp, config=CONFIG).run() for _ in range(2)]
    assert runs[0].finished_at == runs[1].finished_at
    assert runs[0].wire.log == runs[1].wire.log
    assert runs[0].retransmissions == runs[1].retransmissions


def test_loss_causes_retransmissions_and_data_still_arrives() -> None:
    imp = Impairment(loss=0.1, delay=1_000, seed=8)
    result = Transfer(payload(100_000, 1), b"", imp, config=CONFIG).run()
    assert result.wire.stats.faults["loss"] > 0
    assert result.retransmissions > 0
    assert result.received_by_server == payload(100_000, 1)


def test_small_receive_buffer_and_a_rate_limited_wire_still_deliver_everything() -> None:
    config = TcpConfig(msl=1_000_000, recv_buffer=4096, send_buffer=8192, data_retries=20)
    imp = Impairment(loss=0.05, delay=3_000, rate_bps=2_000_000, seed=12)
    data = payload(120_000, 5)
    result = Transfer(data, payload(30_000, 6), imp, config=config).run()
    assert result.received_by_server == data
    assert result.received_by_client == payload(30_000, 6)
    assert result.both_closed


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), rate=st.floats(0.01, 0.2), size=st.integers(0, 50_000))
def test_bit_flips_on_the_encoded_wire_never_reach_the_application(
    seed: int, rate: float, size: int
) -> None:
    mac = "02:00:00:00:00:01"

    def encode(p: AddressedSegment) -> bytes:
        return fast.encode(TcpFrame(mac, mac, Ipv4Header(p.src, p.dst), p.segment))

    def decode(raw: bytes) -> AddressedSegment | None:
        frame = fast.decode_ethernet(raw)
        if isinstance(frame, TcpFrame) and isinstance(frame.ip, Ipv4Header):
            return AddressedSegment(frame.ip.src, frame.ip.dst, frame.segment)
        return None

    result = Transfer(
        payload(size, seed),
        payload(size // 3, seed + 1),
        Impairment(corrupt=rate, delay=1_000, seed=seed),
        config=CONFIG,
        server_closes_first=True,
        # One flip per corrupted frame: the Internet checksum catches every single-bit error, but
        # two or three flips can cancel out (+2**b in one word, -2**b in another) and pass it.
        corrupter=BitFlipCorrupter(encode, decode, flips=1),
    ).run()
    assert result.received_by_server == payload(size, seed)
    assert result.received_by_client == payload(size // 3, seed + 1)
    assert result.both_closed
