"""Regenerate the pictures shown in the README: `python docs/make_pictures.py` (from the repo root).

Every picture comes from a deterministic in-memory session: the same seeds give the same segments,
so the PNGs only change when the TCP code or the drawing code does.

* `docs/ladder.png` and `docs/states.png`: 20 kB over a wire that loses 10% of the packets (seed
  3): the handshake, lost segments, SACK, timeout retransmissions, the close. The ladder is drawn
  to time (`timed_ladder`): each arrow from its send to its arrival, idle gaps cut with a break.
* `docs/tsg.png`: 150 kB into a 32 kB receive window over a wire that loses 3% (seed 7): slow
  start, the window edge the sender runs into, fast retransmits with SACK blocks, and RTOs; its
  time axis ends at the last prompt ACK (the delayed ACK of the last byte is off the right edge).
* `docs/ladder-ftp.png`: the FTP control connection of a real capture, curl against vsftpd
  (`captures/tools-vsftpd-curl-passive.pcap`): every command and reply on its arrow.
"""

from __future__ import annotations

import sys
from pathlib import Path

from matplotlib.figure import Figure

from lab.link.impairment import Impairment
from lab.sim.transfer import Transfer
from lab.tcp.connection import TcpConfig
from lab.viz import (
    Conversation,
    LadderDescription,
    WireRecorder,
    conversation_from_capture,
    ladder,
    save,
    state_timeline,
    time_sequence,
    timed_ladder,
)

DOCS = Path(__file__).resolve().parent
CURL_VSFTPD = DOCS.parent / "captures" / "tools-vsftpd-curl-passive.pcap"


def session(
    size: int, impairment: Impairment, seed: int, config: TcpConfig | None = None
) -> Conversation:
    transfer = Transfer(bytes(size), b"", impairment, seed=seed, config=config)
    recorder = WireRecorder()
    transfer.sim.observer = recorder
    result = transfer.run()
    conns = [result.client] + ([result.server] if result.server is not None else [])
    return recorder.conversation(conns, title=f"{size // 1000} kB, in memory")


def ftp_control_ladder() -> tuple[Figure, LadderDescription]:
    """The control connection (flow 0) of the curl-against-vsftpd capture, with its FTP text."""
    return ladder(conversation_from_capture(CURL_VSFTPD, 0))


def main() -> int:
    small = session(20_000, Impairment(loss=0.1, delay=5_000, seed=3), seed=3)
    big = session(
        150_000,
        Impairment(loss=0.03, delay=10_000, seed=7),
        seed=7,
        config=TcpConfig(recv_buffer=32_768),
    )
    written = [
        save(timed_ladder(small)[0], DOCS / "ladder.png"),
        save(time_sequence(big, "c2s")[0], DOCS / "tsg.png"),
        save(state_timeline(small)[0], DOCS / "states.png"),
        save(ftp_control_ladder()[0], DOCS / "ladder-ftp.png"),
    ]
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
