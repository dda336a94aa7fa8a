"""The connection's receive buffer: payloads kept by reference, reads exact or at boundaries."""

from __future__ import annotations

import random

from lab.tcp.recvbuf import ReceiveBuffer


def test_reads_return_the_stream_in_order_whatever_the_chunking() -> None:
    rng = random.Random(7)
    for _ in range(500):
        buf = ReceiveBuffer()
        model = bytearray()
        for _ in range(40):
            if rng.random() < 0.5:
                data = rng.randbytes(rng.randrange(0, 30))
                buf.append(data if rng.random() < 0.7 else bytearray(data))
                model += data
            elif rng.random() < 0.5:
                n = rng.randrange(-1, 50)
                got = buf.read(n)
                expected = bytes(model) if n < 0 else bytes(model[:n])
                assert got == expected
                del model[: len(got)]
            else:
                n = rng.randrange(0, 50)
                got = buf.read_some(n)
                assert len(got) <= n
                assert got == bytes(model[: len(got)])
                assert got or not model or n == 0  # never empty while bytes wait
                del model[: len(got)]
            assert len(buf) == len(model)


def test_read_some_hands_out_a_whole_payload_without_copying_it() -> None:
    buf = ReceiveBuffer()
    merged = bytes(range(256)) * 255  # a GRO-merged payload of ~64 KB
    buf.append(merged)
    following = b"n" * 1000  # does not fit beside it in one 64 KiB read
    buf.append(following)
    assert buf.read_some(65536) is merged
    assert buf.read_some(65536) is following


def test_read_some_stops_at_a_payload_boundary_but_takes_what_fits() -> None:
    buf = ReceiveBuffer()
    for part in (b"a" * 10, b"b" * 10, b"c" * 10):
        buf.append(part)
    assert buf.read_some(25) == b"a" * 10 + b"b" * 10
    assert buf.read_some(4) == b"cccc"  # the first payload alone is too big: its start
    assert buf.read(-1) == b"c" * 6
    assert len(buf) == 0


def test_a_mutable_buffer_is_copied_on_append() -> None:
    buf = ReceiveBuffer()
    data = bytearray(b"abc")
    buf.append(data)
    data[0] = ord("x")
    assert buf.read() == b"abc"


def test_reassembler_history_kept_by_chunk_still_finds_a_changed_retransmission() -> None:
    # The reassembler keeps delivered payloads by reference; a retransmission that spans
    # several of them is still compared byte for byte with what was delivered.
    from lab.tcp.reassembly import Reassembler

    r = Reassembler(1000, capacity=64)
    for i in range(10):
        assert r.take_in_order(bytes([65 + i]) * 10)  # 100 bytes in ten payloads
    retransmitted = bytearray(b"".join(bytes([65 + i]) * 10 for i in range(4, 9)))
    retransmitted[17] = ord("z")  # stream offset 40 + 17
    res = r.push(1040, bytes(retransmitted))
    assert [(c.offset, c.length, c.kept, c.discarded) for c in res.conflicts] == [
        (57, 1, b"F", b"z")
    ]
    # Older than the last `capacity` (64) bytes: counted, not compared.
    r.push(1000, b"A" * 10)
    assert r.stats.uncompared_bytes == 10


def test_read_chunks_returns_the_exact_bytes_in_order_across_payload_boundaries() -> None:
    rng = random.Random(11)
    for _ in range(300):
        buf = ReceiveBuffer()
        model = bytearray()
        for _ in range(40):
            if rng.random() < 0.5:
                data = rng.randbytes(rng.randrange(0, 40))
                buf.append(data)
                model += data
            else:
                n = rng.randrange(0, 90)
                chunks = buf.read_chunks(n)
                got = b"".join(chunks)
                assert len(got) <= n
                assert got == bytes(model[: len(got)])
                assert got or not model or n == 0  # never empty while bytes wait
                assert all(chunks)  # no empty pieces
                del model[: len(got)]
            assert len(buf) == len(model)


def test_read_chunks_hands_out_the_payloads_themselves_and_stops_at_one_that_does_not_fit() -> None:
    buf = ReceiveBuffer()
    payloads = [bytes([i]) * 1000 for i in range(5)]
    for payload in payloads:
        buf.append(payload)
    first = buf.read_chunks(2500)
    assert first == payloads[:2]
    assert all(a is b for a, b in zip(first, payloads, strict=False))
    assert buf.read_chunks(300) == [b"\x02" * 300]  # the next payload alone is too big: its start
    rest = buf.read_chunks(1 << 20)
    assert rest == [b"\x02" * 700, payloads[3], payloads[4]]
    assert rest[1] is payloads[3]
    assert buf.read_chunks(10) == []
    assert len(buf) == 0


def test_a_view_of_bytes_is_kept_by_reference_and_reads_still_give_bytes() -> None:
    # A GRO-merged payload comes as a view of its frame (lab.host.prediction): it cannot
    # change, so it is queued as it is and read_chunks hands it out as it is; read and
    # read_some, whose callers expect bytes, give bytes. A view of a mutable buffer is copied.
    frame = bytes(range(256)) * 256
    view = memoryview(frame)[54:]
    mutable = bytearray(b"m" * 10)
    buf = ReceiveBuffer()
    buf.append(view)
    buf.append(memoryview(mutable))
    mutable[0] = ord("x")  # too late: the buffer holds a copy
    chunks = buf.read_chunks(1 << 20)
    assert chunks[0] is view
    assert chunks[1] == b"m" * 10
    assert type(chunks[1]) is bytes
    for read in (buf.read, buf.read_some):
        buf.append(view)
        got = read(len(view))
        assert type(got) is bytes
        assert got == frame[54:]
    buf.append(view)
    assert type(buf.read(10)) is bytes  # part of a view, too
    assert buf.read(-1) == frame[64:]
