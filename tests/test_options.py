"""TCP options and the Segment value: round trips, padding, hostile lengths, truncation, flags."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.wire.options import (
    MAX_OPTIONS_LEN,
    EndOfOptions,
    MalformedOptionsError,
    MaxSegmentSize,
    NoOperation,
    SackBlocks,
    SackPermitted,
    TcpOption,
    Timestamps,
    UnknownOption,
    WindowScale,
    decode_options,
    encode_option,
    encode_options,
    options_length,
)
from lab.wire.segment import Flags, Segment

u32 = st.integers(0, 0xFFFFFFFF)
KNOWN_KINDS = {0, 1, 2, 3, 4, 5, 8}

options_st: st.SearchStrategy[TcpOption] = st.one_of(
    st.just(NoOperation()),
    st.builds(MaxSegmentSize, st.integers(0, 0xFFFF)),
    st.builds(WindowScale, st.integers(0, 255)),
    st.just(SackPermitted()),
    st.builds(SackBlocks, st.lists(st.tuples(u32, u32), max_size=4).map(tuple)),
    st.builds(Timestamps, u32, u32),
    st.builds(
        UnknownOption,
        st.integers(0, 255).filter(lambda k: k not in KNOWN_KINDS),
        st.binary(max_size=20),
    ),
)


def fits(options: list[TcpOption]) -> bool:
    return sum(len(encode_option(o)) for o in options) <= MAX_OPTIONS_LEN


option_lists = st.lists(options_st, max_size=8).filter(fits)


@settings(max_examples=300)
@given(options=option_lists)
def test_every_option_kind_survives_a_round_trip(options: list[TcpOption]) -> None:
    raw = encode_options(tuple(options))
    decoded = decode_options(raw)
    unpadded = sum(len(encode_option(o)) for o in options)
    # Padding is zero bytes, which read back as one End of Option List.
    expected = tuple(options) + ((EndOfOptions(),) if unpadded % 4 else ())
    assert decoded == expected


@given(options=option_lists)
def test_encoded_options_are_padded_to_a_multiple_of_four_with_zeros(
    options: list[TcpOption],
) -> None:
    raw = encode_options(tuple(options))
    unpadded = b"".join(encode_option(o) for o in options)
    assert len(raw) % 4 == 0
    assert raw.startswith(unpadded)
    assert set(raw[len(unpadded) :]) <= {0}
    assert len(raw) - len(unpadded) < 4
    assert options_length(tuple(options)) == len(raw)


@settings(max_examples=200)
@given(options=option_lists)
def test_every_truncation_decodes_or_raises_malformed_options_only(
    options: list[TcpOption],
) -> None:
    raw = encode_options(tuple(options))
    for cut in range(len(raw) + 1):
        with contextlib.suppress(MalformedOptionsError):
            decode_options(raw[:cut])


@settings(max_examples=300)
@given(raw=st.binary(max_size=MAX_OPTIONS_LEN))
def test_arbitrary_bytes_decode_or_raise_malformed_options_only(raw: bytes) -> None:
    with contextlib.suppress(MalformedOptionsError):
        decode_options(raw)


def test_known_wire_forms() -> None:
    assert encode_option(MaxSegmentSize(1460)) == bytes.fromhex("020405b4")
    assert encode_option(WindowScale(7)) == bytes.fromhex("030307")
    assert encode_option(SackPermitted()) == bytes.fromhex("0402")
    assert encode_option(Timestamps(1, 2)) == bytes.fromhex("080a0000000100000002")
    assert encode_option(SackBlocks(((1, 2),))) == bytes.fromhex("050a0000000100000002")
    assert encode_option(UnknownOption(30, b"\xab")) == bytes.fromhex("1e03ab")
    assert encode_options((MaxSegmentSize(1460), WindowScale(7))) == bytes.fromhex(
        "020405b403030700"
    )


def test_a_linux_syn_option_block_decodes() -> None:
    raw = bytes.fromhex("020405b40402080a0011223300000000" + "01030307")
    assert decode_options(raw) == (
        MaxSegmentSize(1460),
        SackPermitted(),
        Timestamps(0x00112233, 0),
        NoOperation(),
        WindowScale(7),
    )


def test_bytes_after_end_of_options_are_ignored() -> None:
    assert decode_options(b"\x01\x00\x02\x01\xff") == (NoOperation(), EndOfOptions())


def test_empty_option_space_decodes_to_nothing() -> None:
    assert decode_options(b"") == ()
    assert encode_options(()) == b""


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"\x02", id="kind-without-length"),
        pytest.param(b"\x02\x01\x05\xb4", id="length-below-two"),
        pytest.param(b"\x1e\x00", id="unknown-length-zero"),
        pytest.param(b"\x02\x06\x05\xb4", id="length-past-end"),
        pytest.param(b"\x02\x03\x05", id="mss-wrong-length"),
        pytest.param(b"\x03\x04\x07\x00", id="wscale-wrong-length"),
        pytest.param(b"\x04\x03\x00", id="sack-permitted-wrong-length"),
        pytest.param(b"\x08\x06\x00\x00\x00\x00", id="timestamps-wrong-length"),
        pytest.param(b"\x05\x06\x00\x00\x00\x00", id="sack-not-whole-blocks"),
        pytest.param(b"\x01\x01\x08\x0a\x00", id="timestamps-truncated-after-nops"),
    ],
)
def test_malformed_lengths_raise_malformed_options(raw: bytes) -> None:
    with pytest.raises(MalformedOptionsError):
        decode_options(raw)


def test_malformed_options_is_a_value_error() -> None:
    assert issubclass(MalformedOptionsError, ValueError)


def test_options_longer_than_forty_bytes_are_refused_on_encode() -> None:
    too_long = (SackBlocks(((1, 2),) * 4), Timestamps(1, 2))
    with pytest.raises(ValueError, match="more than 40"):
        encode_options(too_long)


# -- Segment ---------------------------------------------------------------------------------------

BASE = Segment(src_port=40000, dst_port=21, seq=100)


@pytest.mark.parametrize(
    ("flags", "payload", "seg_len"),
    [
        (Flags.ACK, b"", 0),
        (Flags.ACK | Flags.PSH, b"abc", 3),
        (Flags.SYN, b"", 1),
        (Flags.SYN | Flags.ACK, b"x", 2),
        (Flags.FIN | Flags.ACK, b"", 1),
        (Flags.FIN | Flags.ACK, b"tail", 5),
        (Flags.SYN | Flags.FIN, b"ab", 4),
        (Flags.RST, b"", 0),
    ],
)
def test_seg_len_counts_payload_and_one_each_for_syn_and_fin(
    flags: Flags, payload: bytes, seg_len: int
) -> None:
    assert replace(BASE, flags=flags, payload=payload).seg_len == seg_len


def test_header_len_is_twenty_plus_padded_options() -> None:
    assert BASE.header_len == 20
    assert replace(BASE, options=(WindowScale(7),)).header_len == 24
    syn_options = (MaxSegmentSize(1460), SackPermitted(), Timestamps(1, 0), NoOperation())
    assert replace(BASE, options=syn_options).header_len == 20 + 20  # 17 bytes, padded to 20
    assert replace(BASE, options=(*syn_options, WindowScale(7))).header_len == 40  # exactly 20
    assert replace(BASE, options=(*syn_options, WindowScale(7), NoOperation())).header_len == 44


@pytest.mark.parametrize(
    ("flags", "letters"),
    [
        (Flags(0), "none"),
        (Flags.SYN, "S"),
        (Flags.SYN | Flags.ACK, "S."),
        (Flags.FIN | Flags.PSH | Flags.ACK, "FP."),
        (Flags.RST | Flags.ACK, "R."),
        (Flags.PSH | Flags.ACK, "P."),
        (Flags.SYN | Flags.ECE | Flags.CWR, "SEW"),
        (Flags.URG | Flags.ACK, ".U"),
    ],
)
def test_flag_string_uses_tcpdump_letters(flags: Flags, letters: str) -> None:
    assert replace(BASE, flags=flags).flag_string() == letters


def test_flag_properties_and_option_lookup() -> None:
    seg = replace(BASE, flags=Flags.SYN | Flags.ACK, options=(MaxSegmentSize(1400), WindowScale(2)))
    assert seg.syn
    assert seg.has_ack
    assert not seg.fin
    assert not seg.rst
    assert seg.option(WindowScale) == WindowScale(2)
    assert seg.option(Timestamps) is None
    assert "[S.]" in seg.summary()


def test_describe_is_tcpdump_like_with_the_option_values() -> None:
    syn = replace(
        BASE,
        flags=Flags.SYN,
        window=64240,
        options=(MaxSegmentSize(1460), SackPermitted(), Timestamps(7, 0), WindowScale(7)),
    )
    assert syn.describe() == (
        "[S] seq=100 ack=0 win=64240 len=0 <mss 1460, sackOK, TS 7/0, wscale 7>"
    )
    data = replace(BASE, ack=5, flags=Flags.ACK | Flags.PSH, window=501, payload=b"hello")
    assert data.describe() == "[P.] seq=100 ack=5 win=501 len=5"
    sacked = replace(BASE, flags=Flags.ACK, options=(SackBlocks(((1, 2), (3, 4))),))
    assert sacked.describe().endswith(" <sack 2>")
