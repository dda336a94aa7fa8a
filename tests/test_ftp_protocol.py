"""Behaviour of the sans-IO FTP pieces: command encoding, reply parsing, address codecs."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.ftp.protocol import (
    EXPECTED_REPLIES,
    TRANSFER_COMMANDS,
    CommandLineTooLongError,
    CommandParser,
    InvalidAddressError,
    InvalidCommandError,
    MalformedReplyError,
    Reply,
    ReplyLineTooLongError,
    ReplyParser,
    TooManyReplyLinesError,
    encode_command,
    encode_eprt,
    encode_epsv_reply,
    encode_pasv_reply,
    encode_port,
    parse_eprt,
    parse_epsv_reply,
    parse_pasv_reply,
    parse_port,
    reply_expected,
)

# -- commands -------------------------------------------------------------------------------------


def test_command_is_verb_space_argument_crlf() -> None:
    assert encode_command("retr", "pub/3M.bin") == b"RETR pub/3M.bin\r\n"
    assert encode_command("PASV") == b"PASV\r\n"


def test_argument_is_utf8_per_rfc2640() -> None:
    assert encode_command("STOR", "café.txt") == "STOR café.txt\r\n".encode()


@pytest.mark.parametrize(("char", "name"), [("\r", "CR"), ("\n", "LF"), ("\x00", "NUL")])
def test_control_characters_in_argument_are_refused_with_position(char: str, name: str) -> None:
    with pytest.raises(InvalidCommandError, match=rf"{name} at index 3"):
        encode_command("RETR", f"abc{char}DELE x")


@pytest.mark.parametrize("verb", ["", "RE", "RETRX", "RE T", "R3TR", "RETR\r\n"])
def test_malformed_verbs_are_refused(verb: str) -> None:
    with pytest.raises(InvalidCommandError):
        encode_command(verb)


def test_command_parser_reads_commands_split_anywhere() -> None:
    stream = b"USER anonymous\r\nPASS x@y\r\nPASV\r\nRETR dir/file name.txt\r\n"
    for step in (len(stream), 1, 3):
        parser = CommandParser()
        cmds = []
        for i in range(0, len(stream), step):
            cmds += parser.feed(stream[i : i + step])
        assert [(c.verb, c.arg) for c in cmds] == [
            ("USER", "anonymous"),
            ("PASS", "x@y"),
            ("PASV", None),
            ("RETR", "dir/file name.txt"),
        ]


def test_command_parser_bounds_line_length_then_recovers() -> None:
    parser = CommandParser(max_line_length=20)
    with pytest.raises(CommandLineTooLongError):
        parser.feed(b"A" * 30)
    assert parser.feed(b"more garbage\r\nNOOP\r\n")[0].verb == "NOOP"


# -- replies --------------------------------------------------------------------------------------

MULTI = (
    b"220-Welcome\r\n"
    b"220 is not the end when indented? it is: same code and space\r\n"
    b"226 Transfer complete.\r\n"
)

STREAM = (
    b"220 ProFTPD Server ready.\r\n"
    b"230-Welcome, archive user\r\n"
    b"  The local time is: Thu Nov 25\r\n"
    b"230-still going\r\n"
    b"123 a digit line in the middle\r\n"
    b"230 Anonymous access granted.\r\n"
    b"227 Entering Passive Mode (198,18,0,1,195,80).\r\n"
)

EXPECTED = [
    Reply(220, ("220 ProFTPD Server ready.",)),
    Reply(
        230,
        (
            "230-Welcome, archive user",
            "  The local time is: Thu Nov 25",
            "230-still going",
            "123 a digit line in the middle",
            "230 Anonymous access granted.",
        ),
    ),
    Reply(227, ("227 Entering Passive Mode (198,18,0,1,195,80).",)),
]


def feed_in_steps(parser: ReplyParser, data: bytes, step: int) -> list[Reply]:
    out: list[Reply] = []
    for i in range(0, len(data), step):
        out += parser.feed(data[i : i + step])
    return out


@pytest.mark.parametrize("step", [10_000, 1, 2, 7])
def test_replies_parse_the_same_whole_or_byte_by_byte(step: int) -> None:
    assert feed_in_steps(ReplyParser(), STREAM, step) == EXPECTED


def test_trailing_partial_line_is_kept_for_the_next_feed() -> None:
    parser = ReplyParser()
    assert parser.feed(STREAM + b"226 Transfer comp") == EXPECTED
    assert parser.pending == b"226 Transfer comp"
    assert parser.feed(b"lete.\r\n") == [Reply(226, ("226 Transfer complete.",))]


def test_unfinished_multiline_reply_is_not_returned() -> None:
    parser = ReplyParser()
    assert parser.feed(b"211-Features:\r\n MDTM\r\n") == []
    assert parser.in_multiline
    [reply] = parser.feed(b" SIZE\r\n211 End\r\n")
    assert reply.code == 211
    assert reply.text == "Features:\n MDTM\n SIZE\nEnd"


def test_multiline_ends_only_on_same_code_followed_by_space() -> None:
    [first, second] = ReplyParser().feed(MULTI)
    assert first.code == 220
    assert len(first.lines) == 2
    assert second == Reply(226, ("226 Transfer complete.",))


def test_reply_text_strips_code_prefixes() -> None:
    assert EXPECTED[0].text == "ProFTPD Server ready."
    assert EXPECTED[1].text.splitlines()[0] == "Welcome, archive user"
    assert EXPECTED[1].text.splitlines()[-1] == "Anonymous access granted."


def test_bare_lf_line_ends_are_accepted() -> None:
    assert ReplyParser().feed(b"200 ok\n250 fine\n") == [
        Reply(200, ("200 ok",)),
        Reply(250, ("250 fine",)),
    ]


def test_overlong_line_raises_keeps_earlier_replies_and_recovers() -> None:
    parser = ReplyParser(max_line_length=100)
    with pytest.raises(ReplyLineTooLongError) as info:
        parser.feed(b"200 ok\r\n500 " + b"x" * 200)
    assert info.value.replies == (Reply(200, ("200 ok",)),)
    assert parser.feed(b"x" * 50 + b"\r\n") == []  # rest of the bad line discarded
    assert parser.feed(b"221 bye\r\n") == [Reply(221, ("221 bye",))]


def test_overlong_line_detected_byte_by_byte() -> None:
    parser = ReplyParser(max_line_length=16)
    with pytest.raises(ReplyLineTooLongError):
        feed_in_steps(parser, b"200 " + b"y" * 40 + b"\r\n", 1)


def test_too_many_lines_in_one_reply_raises() -> None:
    parser = ReplyParser(max_lines=10)
    data = b"214-help\r\n" + b" line\r\n" * 20 + b"214 end\r\n"
    with pytest.raises(TooManyReplyLinesError, match="214"):
        parser.feed(data)


def test_line_without_code_is_malformed() -> None:
    with pytest.raises(MalformedReplyError):
        ReplyParser().feed(b"hello there\r\n")
    with pytest.raises(MalformedReplyError):
        ReplyParser().feed(b"2000 four digits\r\n")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, len(STREAM)), max_size=10))
def test_any_split_gives_the_same_replies(cuts: list[int]) -> None:
    parser = ReplyParser()
    out: list[Reply] = []
    prev = 0
    for cut in sorted(cuts):
        out += parser.feed(STREAM[prev:cut])
        prev = cut
    out += parser.feed(STREAM[prev:])
    assert out == EXPECTED


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_reply_parser_only_raises_its_own_errors(data: bytes) -> None:
    parser = ReplyParser(max_line_length=64, max_lines=5)
    for i in range(0, len(data), 17):
        with contextlib.suppress(
            MalformedReplyError, ReplyLineTooLongError, TooManyReplyLinesError
        ):
            parser.feed(data[i : i + 17])
    assert len(parser.pending) <= 64 + 17


# -- addresses ------------------------------------------------------------------------------------


def test_port_argument_round_trips() -> None:
    assert encode_port("198.18.0.2", 50000) == "198,18,0,2,195,80"
    assert parse_port("198,18,0,2,195,80") == ("198.18.0.2", 50000)
    assert parse_port(" 10, 0,0,1, 4 ,1 ") == ("10.0.0.1", 1025)


@pytest.mark.parametrize("arg", ["1,2,3,4,5", "1,2,3,4,5,6,7", "256,0,0,1,1,1", "a,b,c,d,e,f", ""])
def test_bad_port_arguments_raise(arg: str) -> None:
    with pytest.raises(InvalidAddressError):
        parse_port(arg)


def test_port_zero_is_refused() -> None:
    with pytest.raises(InvalidAddressError):
        parse_port("1,2,3,4,0,0")
    with pytest.raises(InvalidAddressError):
        encode_port("1.2.3.4", 70000)
    with pytest.raises(InvalidAddressError):
        encode_port("::1", 21)


def test_eprt_round_trips_ipv4_and_ipv6() -> None:
    assert encode_eprt("132.235.1.2", 6275) == "|1|132.235.1.2|6275|"
    assert encode_eprt("1080::8:800:200C:417A", 5282) == "|2|1080::8:800:200c:417a|5282|"
    assert parse_eprt("|1|132.235.1.2|6275|") == ("132.235.1.2", 6275)
    assert parse_eprt("|2|1080::8:800:200C:417A|5282|") == ("1080::8:800:200c:417a", 5282)
    assert parse_eprt("!1!10.0.0.1!21!") == ("10.0.0.1", 21)


@pytest.mark.parametrize(
    "arg", ["|3|1.2.3.4|21|", "|1|::1|21|", "|1|1.2.3.4|0|", "|1|1.2.3.4|21", "1.2.3.4", "|1|x|2|"]
)
def test_bad_eprt_arguments_raise(arg: str) -> None:
    with pytest.raises(InvalidAddressError):
        parse_eprt(arg)


def test_pasv_reply_parse_tolerates_text_around_the_numbers() -> None:
    assert parse_pasv_reply(encode_pasv_reply("198.18.0.1", 50000)) == ("198.18.0.1", 50000)
    assert parse_pasv_reply("=192,168,1,2,7,138") == ("192.168.1.2", 1930)
    assert parse_pasv_reply("Entering Passive Mode 10,0,0,1,4,1 ok") == ("10.0.0.1", 1025)
    with pytest.raises(InvalidAddressError):
        parse_pasv_reply("Entering Passive Mode")


def test_epsv_reply_round_trips_and_rejects_garbage() -> None:
    assert encode_epsv_reply(6446) == "Entering Extended Passive Mode (|||6446|)"
    assert parse_epsv_reply("Entering Extended Passive Mode (|||6446|)") == 6446
    assert parse_epsv_reply("ok (!!!21!)") == 21
    for bad in ("(||6446|)", "(|||99999|)", "(|||0|)", "no port"):
        with pytest.raises(InvalidAddressError):
            parse_epsv_reply(bad)


@settings(max_examples=100, deadline=None)
@given(st.ip_addresses(), st.integers(1, 65535))
def test_eprt_round_trip_property(addr: object, port: int) -> None:
    host = str(addr)
    assert parse_eprt(encode_eprt(host, port)) == (host, port)
    if ":" not in host:
        assert parse_port(encode_port(host, port)) == (host, port)
        assert parse_pasv_reply(encode_pasv_reply(host, port)) == (host, port)


# -- expected replies -----------------------------------------------------------------------------


def test_expected_reply_table_matches_rfc959_examples() -> None:
    assert reply_expected("RETR", 150)
    assert reply_expected("retr", 226)
    assert not reply_expected("RETR", 227)
    assert reply_expected("PASV", 227)
    assert reply_expected("EPSV", 229)
    assert not reply_expected("USER", 226)
    assert reply_expected("XYZZ", 200)  # unknown commands: anything goes
    assert set(TRANSFER_COMMANDS) <= set(EXPECTED_REPLIES)
