"""Pictures (`lab.viz`): what each one draws, from the in-memory wire and from captures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch

from lab.cli.main import main as lab_main
from lab.link.impairment import Impairment
from lab.sim.transfer import Transfer, TransferResult
from lab.tcp.connection import TcpConfig
from lab.viz import (
    Conversation,
    WireRecorder,
    conversation_from_capture,
    infer_states,
    ladder,
    picture_paths,
    save,
    state_timeline,
    time_sequence,
)
from lab.viz.records import RETRANSMISSION, _Raw, build_conversation, ftp_text
from lab.wire.options import SackBlocks
from lab.wire.segment import Flags, Segment
from lab.wire.seq import MASK

PEER = Path(__file__).resolve().parent.parent / "captures" / "peer"
FTP_RETR = PEER / "ftp_retr.pcap"
ACTIVE = PEER / "tests_ftp_ftp-download-active_input.pcap"
RST_DATA = PEER / "bug-6244-tcp-rst-with-data__tcp-rst-with-data.pcap"
CLIENT_ISS = MASK - 99  # sequence numbers wrap during the transfer: relative numbers must not


@dataclass
class Session:
    result: TransferResult
    recorder: WireRecorder
    conv: Conversation


def run_session(
    size: int, impairment: Impairment, *, seed: int, config: TcpConfig | None = None
) -> Session:
    transfer = Transfer(
        bytes(range(256)) * (size // 256),
        b"",
        impairment,
        seed=seed,
        client_iss=CLIENT_ISS,
        server_iss=1000,
        config=config,
    )
    recorder = WireRecorder()
    transfer.sim.observer = recorder
    result = transfer.run()
    assert result.server is not None
    conv = recorder.conversation([result.client, result.server], title="test")
    return Session(result, recorder, conv)


@pytest.fixture(scope="module")
def clean() -> Session:
    return run_session(8192, Impairment(delay=5_000), seed=1)


@pytest.fixture(scope="module")
def lossy() -> Session:
    s = run_session(40_960, Impairment(loss=0.1, delay=5_000, seed=3), seed=3)
    assert s.result.client.stats.retransmissions > 0, "the seeded loss must cause retransmissions"
    return s


def gid_artists(fig: Figure, gid: str) -> list[object]:
    return [a for a in fig.findobj() if getattr(a, "get_gid", lambda: None)() == gid]


# -- ladder ------------------------------------------------------------------------------------


def test_ladder_draws_one_arrow_per_segment_on_the_wire(clean: Session) -> None:
    fig, desc = ladder(clean.conv)
    arrows = [a for a in gid_artists(fig, "segment") if isinstance(a, FancyArrowPatch)]
    assert desc.arrows == len(clean.recorder) == len(arrows)
    assert desc.total_segments == len(clean.recorder)
    assert desc.hosts == (clean.conv.client, clean.conv.server)


def test_ladder_labels_show_flags_and_numbers_relative_to_each_isn(clean: Session) -> None:
    _, desc = ladder(clean.conv)
    assert desc.labels[0] == "[S] seq 0 len 0"
    assert desc.labels[1] == "[S.] seq 0 ack 1 len 0"
    assert desc.labels[2] == "[.] seq 1 ack 1 len 0"
    data = [label for label in desc.labels if " len 0" not in label]
    assert data[0].startswith("[.] seq 1 ack 1 len ")
    # the client's ISN is 100 before the wrap: 8192 bytes later the numbers still count up
    fin = next(label for label in desc.labels if label.startswith("[F") and "seq 8193" in label)
    assert "ack 1" in fin
    assert any("ack 8194" in label for label in desc.labels)


def test_ladder_marks_retransmitted_and_lost_segments(lossy: Session) -> None:
    _, desc = ladder(lossy.conv, max_arrows=10_000)
    rtx = lossy.result.client.stats.retransmissions + lossy.result.server.stats.retransmissions  # type: ignore[union-attr]
    assert desc.retransmissions == rtx
    assert sum("(retransmission" in label for label in desc.labels) == rtx
    assert desc.lost == lossy.result.wire.stats.faults["loss"] > 0


def test_ladder_draws_at_most_max_arrows_and_says_so(lossy: Session) -> None:
    fig, desc = ladder(lossy.conv, max_arrows=12)
    assert desc.arrows == 12 < desc.total_segments
    assert len(gid_artists(fig, "segment")) == 12
    assert f"first 12 of {desc.total_segments}" in fig.axes[0].get_title()


def test_ladder_shows_ftp_text_from_a_capture() -> None:
    conv = conversation_from_capture(FTP_RETR, 0)
    _, desc = ladder(conv)
    assert any(label.endswith('\n"USER anonymous"') for label in desc.labels)
    assert any('"230 User anonymous logged in"' in label for label in desc.labels)
    assert desc.labels[3].startswith('[P.] seq 1 ack 1 len 93\n"220 ')


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        (b"USER anonymous\r\n", "USER anonymous"),
        (b"230-Welcome\r\n230 ok\r\n", "230-Welcome"),
        (b"226 Transfer complete.\r\n", "226 Transfer complete."),
        (b"retr x\r\n", "retr x"),
        (b"\x89PNG\r\n\x1a\n", None),
        (b"hello world\r\n", None),
        (b"", None),
        (b"220 caf\xc3\xa9\r\n", None),
    ],
)
def test_ftp_text_is_the_first_line_of_ftp_commands_and_replies_only(
    payload: bytes, text: str | None
) -> None:
    assert ftp_text(payload) == text


# -- time-sequence graph -------------------------------------------------------------------------


def test_time_sequence_marks_exactly_the_senders_retransmissions(lossy: Session) -> None:
    fig, desc = time_sequence(lossy.conv, "c2s")
    assert desc.sender == lossy.conv.client
    assert desc.retransmissions == lossy.result.client.stats.retransmissions
    (rtx,) = [a for a in gid_artists(fig, "retransmission") if isinstance(a, LineCollection)]
    assert len(rtx.get_segments()) == desc.retransmissions
    (data,) = [a for a in gid_artists(fig, "data") if isinstance(a, LineCollection)]
    sent = [r for r in lossy.conv.records if r.direction == "c2s" and r.segment.payload]
    assert len(data.get_segments()) + desc.retransmissions == desc.data_segments == len(sent)


def test_time_sequence_rings_every_retransmission_at_its_top(lossy: Session) -> None:
    """One segment's bar is a few pixels on a long transfer's axis: each retransmission is
    ringed."""
    fig, desc = time_sequence(lossy.conv, "c2s")
    (rings,) = [a for a in gid_artists(fig, "retransmission-ring") if isinstance(a, Line2D)]
    (rtx,) = [a for a in gid_artists(fig, "retransmission") if isinstance(a, LineCollection)]
    tops = sorted((float(seg[1][0]), float(seg[1][1])) for seg in rtx.get_segments())
    xs: list[float] = list(rings.get_xdata())  # type: ignore[arg-type]
    ys: list[float] = list(rings.get_ydata())  # type: ignore[arg-type]
    ringed = sorted(zip(xs, ys, strict=True))
    assert len(ringed) == desc.retransmissions > 0
    assert ringed == tops
    _, clean_desc = time_sequence(conversation_from_capture(FTP_RETR, 1))
    assert clean_desc.retransmissions == 0


def test_time_sequence_draws_ack_and_window_lines(lossy: Session) -> None:
    conv = lossy.conv
    fig, desc = time_sequence(conv, "c2s")
    (ack,) = [a for a in gid_artists(fig, "ack") if isinstance(a, Line2D)]
    (window,) = [a for a in gid_artists(fig, "window") if isinstance(a, Line2D)]
    acks = [r for r in conv.records if r.direction == "s2c" and r.segment.has_ack]
    assert desc.ack_points == desc.window_points == len(acks) > 0
    # the window line is the ACK plus the window scaled by the server's shift (RFC 7323)
    shift = conv.window_shift[conv.server]
    assert shift > 0
    last = acks[-1].segment
    expected_edge = conv.relative_seq(conv.client, last.ack) + (last.window << shift)
    assert list(window.get_ydata())[-1] == pytest.approx(expected_edge)  # type: ignore[arg-type]
    assert list(ack.get_ydata())[-1] == conv.relative_seq(conv.client, last.ack)  # type: ignore[arg-type]


def test_time_sequence_marks_every_sack_block(lossy: Session) -> None:
    fig, desc = time_sequence(lossy.conv, "c2s")
    blocks = sum(
        len(o.blocks)
        for r in lossy.conv.records
        if r.direction == "s2c"
        for o in r.segment.options
        if isinstance(o, SackBlocks)
    )
    assert desc.sack_blocks == blocks > 0
    (sack,) = [a for a in gid_artists(fig, "sack") if isinstance(a, LineCollection)]
    assert len(sack.get_segments()) == blocks


def test_time_sequence_defaults_to_the_direction_with_more_data() -> None:
    conv = conversation_from_capture(FTP_RETR, 1)  # the data connection: the server sends
    _, desc = time_sequence(conv)
    assert desc.sender == conv.server
    assert desc.data_segments > 10
    assert desc.retransmissions == 0


def test_retransmission_is_a_segment_starting_before_the_highest_byte_sent() -> None:
    def seg(seq: int, n: int, flags: Flags = Flags.ACK) -> Segment:
        return Segment(1234, 21, seq, 1, flags, 100, payload=b"x" * n)

    a, b = "10.0.0.1:1234", "10.0.0.2:21"
    start = MASK - 1  # wraps after the SYN
    raw = [
        _Raw(0, a, b, seg(start, 0, Flags.SYN)),
        _Raw(1, a, b, seg(start + 1, 10)),
        _Raw(2, a, b, seg((start + 11) & MASK, 10)),
        _Raw(3, a, b, seg(start + 1, 10)),  # again: retransmission
        _Raw(4, a, b, seg((start + 21) & MASK, 10)),
        _Raw(5, a, b, seg((start + 16) & MASK, 10)),  # starts inside sent data: retransmission
    ]
    conv = build_conversation(raw)
    marks = [RETRANSMISSION in r.annotations for r in conv.records]
    assert marks == [False, False, False, True, False, True]
    assert [conv.relative_seq(a, r.segment.seq) for r in conv.records] == [0, 1, 11, 1, 21, 16]


# -- state timeline -----------------------------------------------------------------------------


def test_state_timeline_shows_each_ends_states_from_the_connections(clean: Session) -> None:
    fig, desc = state_timeline(clean.conv)
    assert not desc.inferred
    assert desc.states_of(clean.conv.client) == (
        "CLOSED",
        "SYN-SENT",
        "ESTABLISHED",
        "FIN-WAIT-1",
        "FIN-WAIT-2",
        "TIME-WAIT",
        "CLOSED",
    )
    server = desc.states_of(clean.conv.server)
    assert server[-5:] == ("SYN-RECEIVED", "ESTABLISHED", "CLOSE-WAIT", "LAST-ACK", "CLOSED")
    bars = gid_artists(fig, "state")
    assert len(bars) == len(desc.sequences[0]) + len(desc.sequences[1])


def test_states_inferred_from_segments_match_the_real_ones(clean: Session) -> None:
    real = {ep: [c.new for c in changes] for ep, changes in clean.conv.states.items()}
    inferred = {ep: [c.new for c in changes] for ep, changes in infer_states(clean.conv).items()}
    client, server = clean.conv.client, clean.conv.server
    # a capture cannot see TIME-WAIT end, nor the listener that existed before the SYN
    assert inferred[client] == real[client][:-1]
    assert inferred[server] == [s for s in real[server] if s != "LISTEN"]


def test_state_timeline_from_a_capture_is_inferred_and_a_reset_closes_both() -> None:
    conv = conversation_from_capture(RST_DATA)
    _, desc = state_timeline(conv)
    assert desc.inferred
    for ep in desc.lanes:
        assert desc.states_of(ep)[-1] == "CLOSED"
    assert "ESTABLISHED" in desc.states_of(conv.client)


def test_state_timeline_of_an_ftp_data_connection_from_a_capture() -> None:
    conv = conversation_from_capture(FTP_RETR, 1)
    _, desc = state_timeline(conv)
    assert desc.states_of(conv.client) == (
        "CLOSED",
        "SYN-SENT",
        "ESTABLISHED",
        "CLOSE-WAIT",
        "LAST-ACK",
        "CLOSED",
    )
    assert desc.states_of(conv.server) == (
        "LISTEN",
        "SYN-RECEIVED",
        "ESTABLISHED",
        "FIN-WAIT-1",
        "FIN-WAIT-2",
        "TIME-WAIT",
    )


# -- files and the command ----------------------------------------------------------------------


def test_picture_paths_use_the_kind_placeholder_or_a_suffix(tmp_path: Path) -> None:
    assert picture_paths(tmp_path / "x.png")["tsg"] == tmp_path / "x-tsg.png"
    assert picture_paths(tmp_path / "x")["states"] == tmp_path / "x-states.png"
    assert picture_paths(f"{tmp_path}/{{kind}}/flow.png")["ladder"] == tmp_path / "ladder/flow.png"


def test_save_writes_a_png(tmp_path: Path, clean: Session) -> None:
    path = save(state_timeline(clean.conv)[0], tmp_path / "sub" / "s.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_conversation_from_capture_picks_the_first_flow_with_data() -> None:
    conv = conversation_from_capture(FTP_RETR)
    assert conv.server.endswith(":21")
    with pytest.raises(LookupError):
        conversation_from_capture(FTP_RETR, 99)


def test_replay_plot_writes_the_three_pictures_of_the_biggest_data_flow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = lab_main(["replay", str(ACTIVE), "-q", "--plot", str(tmp_path / "p.png")])
    assert code == 0
    for kind in ("ladder", "tsg", "states"):
        assert (tmp_path / f"p-{kind}.png").read_bytes()[:4] == b"\x89PNG"
    err = capsys.readouterr().err
    assert "pictures of flow 2 written to" in err  # flow 2 is the RETR data connection


def test_replay_plot_honours_the_kind_placeholder(tmp_path: Path) -> None:
    code = lab_main(["replay", str(FTP_RETR), "-q", "--plot", str(tmp_path / "{kind}.png")])
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ladder.png", "states.png", "tsg.png"]


def test_docs_hold_one_png_per_picture_kind_shown_in_the_readme() -> None:
    root = PEER.parent.parent
    readme = (root / "README.md").read_text()
    for kind in ("ladder", "tsg", "states"):
        png = root / "docs" / f"{kind}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"](docs/{kind}.png)" in readme


def test_docs_ftp_ladder_shows_the_dialogue_of_a_real_capture() -> None:
    """The README's FTP ladder is drawn from curl against vsftpd, with the text on the arrows."""
    import importlib.util

    root = PEER.parent.parent
    spec = importlib.util.spec_from_file_location(
        "make_pictures", root / "docs" / "make_pictures.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _, desc = module.ftp_control_ladder()
    texts = [label.split("\n", 1)[1] for label in desc.labels if "\n" in label]
    assert texts[:3] == ['"220 lab vsftpd ready"', '"USER anonymous"', '"230 Login successful."']
    assert '"RETR data.bin"' in texts
    assert texts[-1] == '"221 Goodbye."'
    assert desc.arrows == desc.total_segments  # the whole control connection fits
    assert (root / "docs" / "ladder-ftp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](docs/ladder-ftp.png)" in (root / "README.md").read_text()


def test_the_picture_formats_checked_on_the_command_line_are_those_matplotlib_writes() -> None:
    from matplotlib.backend_bases import FigureCanvasBase

    from lab.units import UnitError
    from lab.viz.paths import PICTURE_FORMATS, picture_path

    assert set(PICTURE_FORMATS) <= set(FigureCanvasBase.get_supported_filetypes())
    assert picture_path("pics/{kind}.svg").suffix == ".svg"
    assert picture_path("out").suffix == ""  # .png then
    with pytest.raises(UnitError, match=r"cannot draw a \.xyz picture"):
        picture_path("out.xyz")


# -- drawn to time -------------------------------------------------------------------------------


def test_timed_ladder_cuts_the_retransmission_timeout_out_with_a_break(lossy: Session) -> None:
    from lab.viz import timed_ladder

    fig, desc = timed_ladder(lossy.conv)
    assert desc.arrows == min(len(lossy.conv.records), 80)
    rtos = [t.time for t in lossy.result.client.trace if t.kind == "rto"]
    assert rtos, "the seeded loss must cause a timeout"
    first_rto_ms = (rtos[0] - lossy.conv.start_us) / 1000
    # the idle second before the first timeout is one break, ending when the timer fired
    assert any(abs(end - first_rto_ms) < 0.01 and end - start >= 900 for start, end in desc.breaks)
    assert len(gid_artists(fig, "break")) == 2 * len(desc.breaks)  # a zigzag on each lifeline


def crossings_on_the_drawing(fig: Figure) -> int:
    """Pairs of whole segment arrows on the figure whose lines intersect, read from the arrow
    patches themselves (their end points), not from any record or description."""
    lines = []
    for a in gid_artists(fig, "segment"):
        if not isinstance(a, FancyArrowPatch) or a.get_linestyle() != "-":
            continue  # a lost segment's dashed stub ends between the lifelines
        (x0, y0), (x1, y1) = a._posA_posB  # type: ignore[attr-defined]
        lines.append((x0 < x1, y0, y1))
    return sum(
        1
        for i, (right1, top1, end1) in enumerate(lines)
        for right2, top2, end2 in lines[i + 1 :]
        if right1 == right2 and (top1 - top2) * (end1 - end2) < 0
    )


def test_timed_ladder_shows_reordering_as_crossing_arrows() -> None:
    from lab.viz import timed_ladder

    reordered = run_session(
        20_480, Impairment(reorder=0.2, delay=5_000, jitter=3_000, seed=5), seed=5
    )
    fig, desc = timed_ladder(reordered.conv, max_arrows=200)
    records = reordered.conv.records
    # Overtaken: sent before another (in wire order: several leave at one instant), arrived
    # after it. Same-instant pairs count too: the ladder fans them out, in that order.
    overtaken = [
        (a, b)
        for i, a in enumerate(records)
        for b in records[i + 1 :]
        if a.direction == b.direction
        and a.arrival_us is not None
        and b.arrival_us is not None
        and a.arrival_us > b.arrival_us
    ]
    assert overtaken, "the seeded reordering must make a segment arrive after a later one"
    # Each reordering is a crossing a reader can see, and the description counts what is drawn.
    assert crossings_on_the_drawing(fig) == desc.crossings == len(overtaken)


def test_timed_ladder_of_a_clean_session_has_no_crossing_and_no_break(clean: Session) -> None:
    from lab.viz import timed_ladder

    fig, desc = timed_ladder(clean.conv)
    assert crossings_on_the_drawing(fig) == desc.crossings == 0
    assert desc.labels[0].startswith("[S] seq 0")


def test_timed_ladder_of_a_capture_draws_each_arrow_at_its_capture_time() -> None:
    from lab.viz import conversation_from_capture, timed_ladder

    conv = conversation_from_capture(PEER / "ftp_retr.pcap", 0)
    fig, desc = timed_ladder(conv, max_arrows=12)
    assert desc.arrows == 12
    assert desc.crossings == 0  # one capture point: nothing is seen to overtake
    assert len(gid_artists(fig, "segment")) == 12


def test_time_sequence_zooms_to_the_data_phase(lossy: Session) -> None:
    import dataclasses

    # a long tail after the data, as a delayed ACK or a lost FIN's timeout makes one
    last_ack = next(r for r in reversed(lossy.conv.records) if r.direction == "s2c")
    late = dataclasses.replace(last_ack, time_us=lossy.conv.end_us + 5_000_000, arrival_us=None)
    conv = dataclasses.replace(lossy.conv, records=[*lossy.conv.records, late])
    fig, desc = time_sequence(conv, "c2s")
    assert desc.data_phase_ms is not None
    start, end = desc.data_phase_ms
    (ax,) = fig.axes
    assert ax.get_xlim() == pytest.approx((start, end))
    data = [r for r in lossy.conv.records if r.direction == "c2s" and r.segment.payload]
    first = (data[0].time_us - lossy.conv.start_us) / 1000
    last = (max(r.time_us for r in data) - lossy.conv.start_us) / 1000
    assert start < first
    assert last < end
    assert end < (late.time_us - conv.start_us) / 1000  # the tail is left out
    assert (last - first) / (end - start) > 0.8  # the transfer fills the width


def test_time_sequence_ends_at_the_last_prompt_ack_not_at_a_delayed_one(clean: Session) -> None:
    # 8192 bytes end in a short segment whose ACK the receiver delays (200 ms, RFC 1122
    # 4.2.3.2): ten times the whole transfer. The axis stops at the last ACK that came promptly.
    conv = clean.conv

    def ms(us: int) -> float:
        return (us - conv.start_us) / 1000

    data = [r for r in conv.records if r.direction == "c2s" and r.segment.payload]
    last_sent = max(r.time_us for r in data)
    acks = [r for r in conv.records if r.direction == "s2c" and r.time_us >= last_sent]
    sender = conv.client
    top = max(conv.relative_seq(sender, r.segment.seq) + len(r.segment.payload) for r in data)
    covering = next(r for r in acks if conv.relative_seq(sender, r.segment.ack) >= top)
    prompt = acks[0]
    assert ms(covering.time_us) - ms(last_sent) >= 200  # the delayed ACK of the last byte
    assert ms(prompt.time_us) - ms(last_sent) <= 10
    _, desc = time_sequence(conv, "c2s")
    assert desc.data_phase_ms is not None
    start, end = desc.data_phase_ms
    assert ms(prompt.time_us) < end < ms(prompt.time_us) + 1
    assert (ms(last_sent) - ms(data[0].time_us)) / (end - start) > 0.6


def test_side_by_side_ladders_have_one_title_each_and_readable_labels(
    clean: Session, lossy: Session
) -> None:
    from matplotlib.text import Text

    from lab.viz import ladders_side_by_side

    fig, descs = ladders_side_by_side([clean.conv, lossy.conv], ["kernel", "lab"], max_arrows=10)
    assert [d.arrows for d in descs] == [10, 10]
    assert [ax.get_title().split(" (")[0] for ax in fig.axes] == ["kernel", "lab"]
    assert not fig.findobj(lambda a: type(a).__name__ == "AxesImage")  # drawn, not pasted
    sizes = {t.get_fontsize() for t in fig.findobj(Text) if t.get_text().startswith("[")}
    assert min(sizes) >= 7


def test_docs_ladder_is_drawn_to_time() -> None:
    import importlib.util

    from lab.viz import timed_ladder

    root = PEER.parent.parent
    spec = importlib.util.spec_from_file_location(
        "make_pictures", root / "docs" / "make_pictures.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert "timed_ladder(small)" in (root / "docs" / "make_pictures.py").read_text()
    small = module.session(20_000, Impairment(loss=0.1, delay=5_000, seed=3), seed=3)
    _, desc = timed_ladder(small)
    # the retransmission timeout (1 s) that a ladder drawn by order showed as one step
    assert any(end - start >= 990.0 for start, end in desc.breaks), desc.breaks
