"""Reference solution of the `active-data` exercise (what `show --solution` prints)."""

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
    """Just enough TCP for one side of one connection (no loss on the lab link)."""

    def __init__(self, lab: SimpleNamespace, local_port: int, remote_port: int | None) -> None:
        self.lab = lab
        self.local_port = local_port
        self.remote_port = remote_port  # None: learnt from the peer's SYN (passive open)
        self.head = Ether(src=lab.client_mac, dst=lab.server_mac) / IP(
            src=lab.client_ip, dst=lab.server_ip
        )
        self.seq = random.getrandbits(32)
        self.ack = 0
        self.segments: queue.Queue[Any] = queue.Queue()
        self.backlog: list[Any] = []
        ready = threading.Event()
        self.sniffer = AsyncSniffer(
            iface=lab.iface,
            lfilter=self._ours,
            prn=self.segments.put,
            store=False,
            started_callback=ready.set,
        )
        self.sniffer.start()
        ready.wait(5)

    def _ours(self, packet: Any) -> bool:
        return (
            TCP in packet
            and packet[IP].src == self.lab.server_ip
            and packet[TCP].dport == self.local_port
            and (self.remote_port is None or packet[TCP].sport == self.remote_port)
        )

    def send(self, flags: str, payload: bytes = b"") -> None:
        assert self.remote_port is not None
        tcp = TCP(
            sport=self.local_port,
            dport=self.remote_port,
            flags=flags,
            seq=self.seq,
            ack=self.ack if "A" in flags else 0,
            window=65535,
        )
        frame = self.head / tcp / Raw(payload) if payload else self.head / tcp
        sendp(frame, iface=self.lab.iface, verbose=False)
        self.seq = (self.seq + len(payload) + (1 if "S" in flags or "F" in flags else 0)) % MOD

    def next_segment(self, timeout: float = 5.0) -> Any:
        if self.backlog:
            return self.backlog.pop(0)
        try:
            return self.segments.get(timeout=timeout)[TCP]
        except queue.Empty:
            raise TimeoutError(f"nothing from the server on port {self.local_port}") from None

    def open(self) -> None:
        self.send("S")
        while True:
            synack = self.next_segment()
            if synack.flags.S and synack.flags.A:
                break
        self.ack = (synack.seq + 1) % MOD
        self.send("A")

    def accept(self) -> None:
        """Passive open: the peer's SYN, our SYN-ACK, its ACK."""
        while True:
            syn = self.next_segment(10)
            if syn.flags.S and not syn.flags.A:
                break
        self.remote_port = int(syn.sport)
        self.ack = (syn.seq + 1) % MOD
        self.send("SA")
        while True:
            segment = self.next_segment()
            if segment.flags.A and segment.ack == self.seq:
                self.backlog.append(segment)  # it may already carry data: receive() takes it
                return

    def receive(self, until_line: bool) -> bytes:
        """Data in order, each segment acknowledged; until a complete final reply line
        (`until_line`) or until the peer's FIN."""
        data = b""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            segment = self.next_segment()
            payload = bytes(segment.payload.load) if Raw in segment else b""
            fin = bool(segment.flags.F)
            if not payload and not fin:
                continue  # a bare ACK
            if segment.seq == self.ack:
                data += payload
                self.ack = (self.ack + len(payload) + fin) % MOD
                self.send("A")
                if fin:
                    return data
            else:
                self.send("A")  # a retransmission, or out of order: repeat what we have
            if until_line:
                lines = data.decode(errors="replace").split("\r\n")
                if any(len(ln) >= 4 and ln[:3].isdigit() and ln[3] == " " for ln in lines[:-1]):
                    return data
        raise TimeoutError("the server stopped sending")

    def command(self, line: str) -> str:
        self.send("PA", line.encode() + b"\r\n")
        return self.receive(until_line=True).decode(errors="replace")


def download(lab: SimpleNamespace) -> bytes:
    control = HandMadeConnection(lab, lab.client_port, lab.server_port)
    data = HandMadeConnection(lab, lab.data_port, None)
    try:
        control.open()
        if not control.receive(until_line=True).startswith(b"220"):
            raise RuntimeError("no greeting")
        if control.command(f"USER {lab.user}").startswith("331"):
            control.command(f"PASS {lab.password}")
        control.command("TYPE I")
        # Some servers (pyftpdlib) connect as soon as PORT arrives and answer 200 only once
        # connected; others connect on RETR. So the data side accepts from PORT on, in a thread.
        accepting = threading.Thread(target=data.accept, daemon=True)
        accepting.start()
        h = lab.client_ip.replace(".", ",")
        reply = control.command(f"PORT {h},{lab.data_port // 256},{lab.data_port % 256}")
        if not reply.startswith("200"):
            raise RuntimeError(f"PORT refused: {reply}")
        preliminary = control.command(f"RETR {lab.file_name}")
        if not preliminary.startswith("150") and not preliminary.startswith("125"):
            raise RuntimeError(f"RETR refused: {preliminary}")
        accepting.join(15)
        if data.remote_port is None:
            raise TimeoutError("the server never connected to the data port")
        content = data.receive(until_line=False)  # up to its FIN, which we acknowledged
        data.send("FA")  # our FIN; its ACK closes the connection (we do not wait in TIME-WAIT)
        if "226" not in preliminary:
            control.receive(until_line=True)  # 226 Transfer complete
        return content
    finally:
        control.sniffer.stop()
        data.sniffer.stop()
