"""Reference solution of the `ftp-login` exercise (what `show --solution` prints)."""

from __future__ import annotations

import queue
import random
import threading
import time
from types import SimpleNamespace
from typing import Any

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.sendrecv import AsyncSniffer, sendp

MOD = 1 << 32


class HandMadeConnection:
    """Just enough TCP to hold a conversation: no loss on the lab link, so no retransmission."""

    def __init__(self, lab: SimpleNamespace) -> None:
        self.lab = lab
        self.head = Ether(src=lab.client_mac, dst=lab.server_mac) / IP(
            src=lab.client_ip, dst=lab.server_ip
        )
        self.seq = random.getrandbits(32)  # our next sequence number
        self.ack = 0  # the server's next sequence number: what we acknowledge
        self.segments: queue.Queue[Any] = queue.Queue()
        ready = threading.Event()
        self.sniffer = AsyncSniffer(
            iface=lab.iface,
            lfilter=self._from_server,
            prn=self.segments.put,
            store=False,
            started_callback=ready.set,
        )
        self.sniffer.start()
        ready.wait(5)

    def _from_server(self, packet: Any) -> bool:
        return (
            TCP in packet
            and packet[IP].src == self.lab.server_ip
            and packet[TCP].sport == self.lab.server_port
            and packet[TCP].dport == self.lab.client_port
        )

    def send(self, flags: str, payload: bytes = b"") -> None:
        tcp = TCP(
            sport=self.lab.client_port,
            dport=self.lab.server_port,
            flags=flags,
            seq=self.seq,
            ack=self.ack if "A" in flags else 0,
            window=65535,
        )
        sendp(self.head / tcp / Raw(payload) if payload else self.head / tcp,
              iface=self.lab.iface, verbose=False)  # fmt: skip
        self.seq = (self.seq + len(payload) + (1 if "S" in flags or "F" in flags else 0)) % MOD

    def next_segment(self, timeout: float = 5.0) -> Any:
        try:
            return self.segments.get(timeout=timeout)[TCP]
        except queue.Empty:
            raise TimeoutError("the server sent nothing") from None

    def open(self) -> None:
        self.send("S")
        while True:
            synack = self.next_segment()
            if synack.flags.S and synack.flags.A:
                break
        self.ack = (synack.seq + 1) % MOD
        self.send("A")

    def read_reply(self) -> str:
        """Data from the server up to a complete final reply line, each segment acknowledged."""
        text = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            segment = self.next_segment()
            payload = bytes(segment.payload.load) if Raw in segment else b""
            if not payload:
                continue  # a bare ACK of our data
            if segment.seq == self.ack:
                text += payload
                self.ack = (self.ack + len(payload)) % MOD
            self.send("A")  # new data or a retransmission: (re-)acknowledge what we have
            lines = text.decode(errors="replace").split("\r\n")
            for line in lines[:-1]:
                if len(line) >= 4 and line[:3].isdigit() and line[3] == " ":
                    return line
        raise TimeoutError("no complete reply")

    def command(self, line: str) -> str:
        self.send("PA", line.encode() + b"\r\n")
        return self.read_reply()


def login(lab: SimpleNamespace) -> None:
    conn = HandMadeConnection(lab)
    try:
        conn.open()
        greeting = conn.read_reply()
        if not greeting.startswith("220"):
            raise RuntimeError(f"unexpected greeting: {greeting}")
        reply = conn.command(f"USER {lab.user}")
        if reply.startswith("331"):
            reply = conn.command(f"PASS {lab.password}")
        if not reply.startswith("230"):
            raise RuntimeError(f"login refused: {reply}")
    finally:
        conn.sniffer.stop()
