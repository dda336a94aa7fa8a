"""The user-space "kernel" of the lab, sans-IO: Ethernet, ARP, IPv4, ICMP, and Neighbor Discovery,
IPv6, ICMPv6 around a `TcpEndpoint`.

A `Host` owns a MAC and an IPv4 address (and, dual-stack, an IPv6 one) that the real kernel does
not have. Frames come in as bytes through `receive_frame`; frames to put on the wire are pulled
with `outgoing_frames` (bytes and the typed `Transition`s each frame shows); timers are fired with
`on_timer` at `next_deadline`. It never blocks, never reads a clock and owns no socket, so the
same host runs behind an AF_PACKET link (`lab.runtime`), over an in-memory wire between two
hosts, or one frame at a time in a test.

What it does, and where the rule comes from:
- ARP (RFC 826, RFC 1122 2.3.2): answers requests for our address, learns the sender of a request
  addressed to us and of replies, updates known entries from any ARP (the RFC's merge flag), keeps
  a cache with expiry and a bounded queue per unresolved next hop (`lab.host.arp`), and announces
  itself with a gratuitous ARP at start (RFC 5227 2.3) so neighbours drop stale entries.
- Decoding always goes through `lab.wire.fast` (validation must be fast and the same whatever
  codec is chosen); the `codec` argument chooses the encoder: "fast" for bulk data, "scapy" where
  people watch frames being built. Both produce the same bytes (tests/test_codec.py).
- The bulk receive path, three steps deep (each a shortcut with the general path's result, for
  the frames of a transfer): frame-level header prediction (`lab.host.prediction`) takes the
  next in-order frame of the connection served last straight from its bytes to
  `Connection.receive_predicted`; `_receive_bulk` takes any plain TCP/IPv4 frame of an
  ESTABLISHED connection with the bulk decoder (`decode_unicast_tcp`, a `Segment`, no
  `TcpFrame`); everything else is decoded whole and dispatched. On the way out, with the
  struct codec, a bare ACK is packed from a per-destination template
  (`lab.wire.fast.BareAckTemplate`) without an IPv4 header or frame value.
- IPv4 receive (RFC 791, RFC 1122 3.2.1): the codec checks version, IHL, total length and the
  header checksum; the host checks the destination (ours, or broadcast for ICMP), the source (no
  broadcast, multicast or our own address) and drops TTL 0. Every drop is counted by reason.
- Fragments are reassembled (`lab.host.fragments`, overlaps discard the datagram as RFC 5722 asks),
  then the whole datagram goes through the codec as if it had arrived in one piece.
- IPv4 output: DF is always set (RFC 1191 path MTU discovery); nothing is fragmented on output, and
  a packet larger than the link MTU is dropped and counted rather than sent.
- ICMP (RFC 792, RFC 1122 3.2.2): echo requests to us are answered; destination unreachable about
  one of our TCP segments is reported as a soft error (`IcmpError`, RFC 1122 4.2.3.9), and
  fragmentation needed (RFC 1191) records a lower path MTU for that destination (`path_mtu`,
  `mss_for`) and hands the new MSS to the connection through `Connection.set_path_mss`, so the
  segments it sends from then on fit the smaller path.
  Quoted segments are checked against the connection's send window first (RFC 5927 4.1), so an
  off-path attacker cannot shrink our MSS or fail our connections blindly.
- Echo requests of our own (`ping`, for `lab ping`): each outstanding (destination, identifier,
  sequence) is remembered with the instant it was queued, so a reply is matched and timed
  (`echo_replies`, `EchoReply.rtt`); a reply nobody asked for is dropped and counted. The table is
  bounded (the oldest request is forgotten first), so a flood of unanswered pings cannot grow it.
- TCP is handed to the `TcpEndpoint`, which demultiplexes to connections and listeners and
  answers closed ports with RST as a kernel does.
- Transitions for capture comments: an inbound frame reports the TCP state changes it caused; a
  change caused by an application call or a timer (our SYN on `connect`: CLOSED -> SYN-SENT, our
  FIN on `close`) is held and handed out with the next outbound frame of that connection
  (`outgoing_frames`), so a capture names the transition on the frame that shows it: a close
  (-> FIN-WAIT-1, -> LAST-ACK) waits for the segment that carries our FIN (or an abort's RST),
  even when queued data segments leave first.
- Next hop: same subnet -> the destination itself, otherwise the gateway.

IPv6, when the host is given `ip6` (the API is in the `Host` docstring):
- Addresses: `ip6` and a link-local fe80::/64 address made from the MAC (modified EUI-64,
  RFC 4291 appendix A, RFC 4862 5.3). We listen to all-nodes (ff02::1) and the solicited-node
  group of each address (RFC 4291 2.7.1, 2.8), at Ethernet 33:33 + the group's low 32 bits
  (RFC 2464 7); other multicast frames are not ours.
- Duplicate Address Detection (RFC 4862 5.4): each address is tentative until `dad_transmits`
  solicitations from ::, without a source link-layer option, went unanswered for RetransTimer
  (1 s) each. Packets to a tentative address are dropped; packets from it wait for DAD. An NA for
  a tentative address, or a NS from :: for it, makes it duplicate: it is never used and is
  reported (`duplicate_addresses`). A DAD probe for a preferred address is answered (defended)
  with an NA to all-nodes, S clear (RFC 4861 7.2.4).
- Neighbor Discovery (RFC 4861, `lab.host.ndp`): address resolution by NS to the solicited-node
  group, a neighbor cache with the NUD states INCOMPLETE, REACHABLE, STALE, DELAY, PROBE (7.3.2),
  three multicast solicitations 1 s apart then an unreachable report, unicast probes after the
  5 s DELAY, a bounded queue per unresolved neighbor, TCP forward progress as reachability
  confirmation (7.3.1). NS for our addresses get a solicited NA (S=1, O=1, our MAC), and teach us
  the sender as STALE (7.2.3); an NA only updates entries we hold (7.2.5): one about an address we
  never asked for is dropped and creates nothing. Hop limit 255 and the other 7.1 checks are
  made by the codec and again here.
- IPv6 receive (RFC 8200): the codec checks version and payload length and skips hop-by-hop,
  routing and destination-options headers (bounded in number); the host checks the destination
  (a preferred address of ours, or one of our groups for ICMPv6 and ND), the source (never
  multicast, unspecified, loopback or ours: RFC 4291 2.7) and drops hop limit 0.
- Fragments addressed to us (RFC 8200 4.5) go through the IPv4 reassembler's bounds (30 s,
  memory and datagram caps; overlaps discard the datagram, RFC 5722). An atomic fragment (offset
  0, M clear) is processed on its own, never mixed with others of its identification (RFC 6946).
- IPv6 output: nothing is fragmented; a packet larger than the link MTU is dropped and counted.
  The link MTU must be at least 1280 (RFC 8200 5).
- ICMPv6 (RFC 4443): echo requests to our addresses are answered (not those to a group: a lab
  host does not amplify); our own echo requests (`ping` with a v6 address) are matched and timed
  as for IPv4. Destination unreachable about one of our TCP segments is a soft error, its code
  given the ICMPv4 meaning. Packet Too Big lowers the path MTU to that destination, never below
  1280 and never raised by a PTB (RFC 8201 4); the new MSS (path MTU - 60: 1220 for 1280) goes
  to the connection through `set_path_mss`. Both are checked against the send window (RFC 5927).
- TCP: one `TcpEndpoint` for both families, a listener answers SYNs to either address (as a
  Linux socket on [::] without IPV6_V6ONLY); a v6 connection announces MSS 1440 on a 1500-byte
  link. The pseudo-header with 128-bit addresses is the codec's (RFC 8200 8.1).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Final

from lab.host.arp import ArpCache
from lab.host.fragments import Fragment, FragmentReassembler, Reassembled
from lab.host.ndp import (
    ALL_NODES,
    ALL_NODES_MAC,
    DUP_ADDR_DETECT_TRANSMITS,
    UNSPECIFIED,
    AddressDetection,
    AddressState,
    DuplicateAddress,
    DuplicateAddressError,
    NeighborCache,
    link_local_from_mac,
)
from lab.host.prediction import FramePrediction
from lab.tcp.connection import Connection, State
from lab.tcp.endpoint import TcpEndpoint
from lab.tcp.events import StateChanged
from lab.wire import fast, mixed
from lab.wire.checksum import internet_checksum
from lab.wire.fast import (
    DecodeStats,
    decode_ethernet,
    decode_ip,
    decode_ipv4_fragment,
    decode_ipv6_fragment,
    decode_unicast_tcp,
)
from lab.wire.fast_ipv6 import ipv6_multicast_mac, solicited_node_multicast
from lab.wire.frame import (
    BROADCAST_MAC,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    ArpFrame,
    Dropped,
    DropReason,
    Frame,
    IcmpFrame,
    Icmpv6Frame,
    Ipv4Header,
    Ipv6Header,
    NeighborAdvertisement,
    NeighborSolicitation,
    TcpFrame,
)
from lab.wire.frozen import fast_init
from lab.wire.segment import AddressedSegment, Flags, Segment
from lab.wire.seq import seq_diff, seq_in_window

ARP_REQUEST = 1
ARP_REPLY = 2
ICMP_ECHO_REPLY = 0
ICMP_DEST_UNREACHABLE = 3
ICMP_ECHO_REQUEST = 8
ICMP_FRAG_NEEDED = 4  # code of destination unreachable (RFC 1191)
ZERO_MAC = "00:00:00:00:00:00"
DEFAULT_MTU = 1500
MAX_ADDRESS_TEXTS = 4096  # bound of the small address caches (cleared when full)
MIN_PATH_MTU = 552  # Linux's min_pmtu: a forged "MTU 68" must not make every segment tiny
PATH_MTU_LIFETIME = 600_000_000  # RFC 1191 5: try a larger MTU again after 10 minutes
IP_HEADER_LEN = 20
TCP_HEADER_LEN = 20
DEFAULT_TTL = 64
MAX_OUTSTANDING_PINGS: Final = 1024  # echo requests remembered while waiting for a reply
IPV6_HEADER_LEN = 40
IPV6_MIN_MTU = 1280  # RFC 8200 5: every link carries 1280; RFC 8201 4: never a smaller PMTU
DEFAULT_HOP_LIMIT = 64
ND_HOP_LIMIT = 255  # RFC 4861 7.1: proves a Neighbor Discovery message was not forwarded
ICMPV6_DEST_UNREACHABLE = 1
ICMPV6_PACKET_TOO_BIG = 2
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129
MAX_HELD_FOR_DAD = 64  # packets from a tentative address waiting for DAD to finish
# ICMPv6 destination-unreachable codes (RFC 4443 3.1) as the ICMPv4 codes of the same meaning, so
# that drivers read one `IcmpError.code`: no route -> net, administratively prohibited, beyond
# scope of source, source policy, reject route -> communication prohibited (13), address -> host,
# port -> port.
_V6_UNREACHABLE_AS_V4 = {0: 0, 1: 13, 2: 1, 3: 1, 4: 3, 5: 13, 6: 13}


Encoder = Callable[[Frame], bytes]
"""Frame value -> wire bytes: `lab.wire.fast.encode` or `lab.wire.scapy_codec.encode`."""


@dataclass(frozen=True, slots=True)
class IcmpError:
    """An ICMP destination-unreachable about one of our TCP connections (a soft error).

    `code` is the ICMP code: 0 net, 1 host, 2 protocol, 3 port unreachable, 4 fragmentation
    needed (with `mtu`). A next hop that never answered ARP is reported as code 1 with
    `from_arp` set: there is no ICMP message then, but the meaning is the same.
    """

    remote_ip: str
    remote_port: int | None
    local_port: int | None
    code: int
    mtu: int | None = None
    from_arp: bool = False
    # The ICMPv6 (type, code) as received, when the error came over IPv6: `code` then holds the
    # ICMPv4 code of the same meaning (4, "fragmentation needed", for Packet Too Big), and
    # `from_arp` means Neighbor Discovery gave up.
    icmpv6: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class EchoReply:
    """An answer to one of our echo requests (`Host.ping`), matched by address, id and sequence.

    `sent` is the instant the request was queued (ARP resolution, if any, counts in the RTT as it
    does for ping(8)); `received` the instant the reply was processed; both in microseconds.
    """

    src: str
    ident: int
    seq: int
    payload: bytes
    ttl: int
    sent: int
    received: int

    @property
    def rtt(self) -> int:
        """Round-trip time in microseconds."""
        return self.received - self.sent


@fast_init
@dataclass(frozen=True, slots=True)
class Transition:
    """A state change of one of the host's connections, as a value: the runtime, the tap and
    the CLI turn it into text (a capture comment, a notebook line); the host never does."""

    local_port: int
    remote_ip: str
    remote_port: int
    change: StateChanged


@fast_init
@dataclass(frozen=True, slots=True)
class OutgoingFrame:
    """Wire bytes to send, with the TCP state transitions its capture comment names."""

    data: bytes
    transitions: tuple[Transition, ...] = ()


class _PackedAck:
    """A bulk receiver's bare ACK, packed already (`Host._send_tcp`): its bytes, and its segment
    and destination for the capture comment (`_outbound_notes`)."""

    __slots__ = ("data", "dst", "segment")

    def __init__(self, data: bytes, dst: str, segment: Segment) -> None:
        self.data = data
        self.dst = dst
        self.segment = segment


@dataclass(slots=True)
class _TraceCursor:
    """How far a connection's trace has been reported, and what waits for its next frame out."""

    conn: Connection
    scanned: int = 0
    held: list[Transition] = field(default_factory=list)


_FourTuple = tuple[str, int, str, int]


@dataclass(slots=True)
class HostStats:
    """Counters: frames in and out by kind, drops by reason (codec reasons are prefixed)."""

    frames_in: Counter[str] = field(default_factory=Counter)
    frames_out: Counter[str] = field(default_factory=Counter)
    drops: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class _Route:
    next_hop: str
    broadcast: bool = False


class Host:
    """One host on one Ethernet link: ARP, IPv4, ICMP, and with `ip6` Neighbor Discovery, IPv6,
    ICMPv6, all around one TCP endpoint, without I/O.

    IPv6 API (dual stack; v4 arguments are unchanged and still required):
    - `Host(mac, ip, prefix_len, gateway, *, now, ip6="2001:2::2", prefix6=64, gateway6=None,
      dad_transmits=1)`. `gateway6` may be a link-local address (fe80::/10) or one on
      `ip6/prefix6`. The host also gets the link-local address `link_local` (fe80::/64 from the
      MAC, modified EUI-64). The MTU must be at least 1280.
    - Both addresses start TENTATIVE: Duplicate Address Detection sends `dad_transmits`
      solicitations, 1 s apart, and the address is PREFERRED 1 s after the last one.
      Packets from a tentative address wait (up to 64) and leave when DAD ends, so `connect`
      and `ping` may be called at once. `dad_transmits=0` skips DAD (tests, exercises).
      `ipv6_ready` says whether `ip6` is PREFERRED; `address_state(address)` gives
      TENTATIVE / PREFERRED / DUPLICATE. A duplicate is reported by `duplicate_addresses()`
      (drained, `DuplicateAddress(address, mac)`); the driver should raise
      `DuplicateAddressError` (lab.host) to its user: the address is never used.
    - `ping(dst, ident, seq, payload, now)` takes a v6 `dst` as well (echo type 128); replies
      come out of `echo_replies()` as for v4 (`EchoReply.ttl` is the hop limit).
    - TCP: `host.tcp.connect("2001:2::1", 21, now)` and `host.tcp.listen(port)` (a listener
      answers both families); connections keyed by v6 text in `host.tcp.connections`.
    - `route(dst)`, `mss_for(dst, now)` (1440 on a 1500-byte link, 1220 after a Packet Too Big
      of 1280), `path_mtu`, `errors()` (ICMPv6 errors as `IcmpError`, with `icmpv6` set) take
      v6 destinations. Neighbor cache: `host.ndp` (`state(ip, now)` -> `NudState`).
    - `accepted_macs`: the Ethernet destinations to let through a link's filter (our MAC,
      broadcast, 33:33:00:00:00:01 and 33:33:ff:xx:xx:xx of our solicited-node groups).
    """

    def __init__(
        self,
        mac: str,
        ip: str,
        prefix_len: int,
        gateway: str | None,
        *,
        tcp: TcpEndpoint | None = None,
        codec: Encoder | str = "fast",
        now: int,
        mtu: int = DEFAULT_MTU,
        arp: ArpCache[Frame] | None = None,
        fragments: FragmentReassembler | None = None,
        gratuitous_arp: bool = True,
        ip6: str | None = None,
        prefix6: int = 64,
        gateway6: str | None = None,
        dad_transmits: int = DUP_ADDR_DETECT_TRANSMITS,
        ndp: NeighborCache[Frame] | None = None,
        fragments6: FragmentReassembler | None = None,
        frame_prediction: bool = True,
    ) -> None:
        self.mac = mac.lower()
        self.ip = ip
        self.network = ipaddress.IPv4Network(f"{ip}/{prefix_len}", strict=False)
        self.gateway = gateway
        if gateway is not None and ipaddress.IPv4Address(gateway) not in self.network:
            raise ValueError(f"gateway {gateway} is not on {self.network}")
        self.tcp = tcp if tcp is not None else TcpEndpoint(ip, ip6=ip6)
        if self.tcp.ip != ip:
            raise ValueError(f"TCP endpoint is for {self.tcp.ip}, host is {ip}")
        if ip6 is not None and self.tcp.ip6 is None:
            self.tcp.ip6 = ip6  # an endpoint made for v4 only takes our v6 address
        if self.tcp.ip6 != ip6:
            raise ValueError(f"TCP endpoint is for {self.tcp.ip6}, host is {ip6}")
        self.encode: Encoder = load_encoder(codec) if isinstance(codec, str) else codec
        self.decode_stats = DecodeStats()
        self.mtu = mtu
        self.arp: ArpCache[Frame] = arp if arp is not None else ArpCache()
        self.fragments = fragments if fragments is not None else FragmentReassembler()
        self.stats = HostStats()
        self.path_mtu: dict[str, tuple[int, int]] = {}  # destination -> (mtu, expires)
        self._errors: list[IcmpError] = []
        self._out: list[Frame | _PackedAck] = []
        # Bare-ACK templates (lab.wire.fast.BareAckTemplate) by next hop's MAC and destination:
        # with the struct codec, a bulk receiver's ACK is packed at once (`_send_tcp`).
        self._ack_templates: dict[tuple[str, str], fast.BareAckTemplate] = {}
        self._ident = 0
        self._pings: dict[tuple[str, int, int], int] = {}  # (dst, ident, seq) -> queued at
        self._echo_replies: list[EchoReply] = []
        self._cursors: dict[_FourTuple, _TraceCursor] = {}
        self._broadcasts = {str(self.network.broadcast_address), "255.255.255.255"}
        self._mac_raw = bytes.fromhex(self.mac.replace(":", ""))
        self._ip_raw = socket.inet_aton(ip)
        self._address_text: dict[bytes, str] = {}  # 4 raw bytes -> dotted quad (bulk path)
        # Frame-level header prediction (lab.host.prediction) for the connection served last
        # by the bulk path; `frame_prediction=False` leaves every frame to the general paths.
        self.frame_prediction = frame_prediction
        self._prediction: FramePrediction | None = None
        self._on_link: dict[str, bool] = {}  # destination -> on our subnet (for `route`)
        # IPv6 (all empty when `ip6` is None: a v4-only host sends and accepts no v6 at all).
        self.ip6: str | None = None
        self.link_local: str | None = None
        self.gateway6 = gateway6
        self.network6: ipaddress.IPv6Network | None = None
        self.ndp: NeighborCache[Frame] = ndp if ndp is not None else NeighborCache()
        self.dad = AddressDetection(transmits=dad_transmits)
        self.fragments6 = fragments6 if fragments6 is not None else FragmentReassembler()
        self._own6: frozenset[str] = frozenset()  # our unicast v6 addresses, in any DAD state
        self._groups6: frozenset[str] = frozenset()  # multicast groups we listen to
        self._macs_in = frozenset((self.mac, BROADCAST_MAC))  # Ethernet destinations we take
        self._held_for_dad: list[Icmpv6Frame | TcpFrame] = []
        self._duplicates: list[DuplicateAddress] = []
        if gratuitous_arp:
            self._queue_arp(ARP_REQUEST, BROADCAST_MAC, ZERO_MAC, self.ip)
        if ip6 is not None:
            self._start_ipv6(ip6, prefix6, gateway6, now)

    def _start_ipv6(self, ip6: str, prefix6: int, gateway6: str | None, now: int) -> None:
        """Check the v6 configuration, join the groups, and start DAD for both addresses."""
        address = ipaddress.IPv6Address(ip6)
        if address.is_multicast or address.is_link_local or address.is_unspecified:
            raise ValueError(f"{ip6} is not a global unicast address")
        if self.mtu < IPV6_MIN_MTU:
            raise ValueError(f"IPv6 needs an MTU of at least {IPV6_MIN_MTU}, not {self.mtu}")
        self.ip6 = str(address)  # RFC 5952 text, as the decoder writes addresses
        self.tcp.ip6 = self.ip6
        self.network6 = ipaddress.IPv6Network(f"{ip6}/{prefix6}", strict=False)
        if gateway6 is not None:
            gateway = ipaddress.IPv6Address(gateway6)
            if not gateway.is_link_local and gateway not in self.network6:
                raise ValueError(f"gateway {gateway6} is neither link-local nor on {self.network6}")
            self.gateway6 = str(gateway)
        self.link_local = link_local_from_mac(self.mac)
        self._own6 = frozenset((self.ip6, self.link_local))
        self._groups6 = frozenset({ALL_NODES} | {solicited_node_multicast(a) for a in self._own6})
        self._macs_in = self._macs_in | {ipv6_multicast_mac(g) for g in self._groups6}
        for own in (self.link_local, self.ip6):
            if self.dad.start(own, now):
                self._solicit_for_dad(own)

    # -- public sans-IO interface --------------------------------------------------------------

    def receive_frame(
        self, frame_bytes: bytes, now: int, *, checksum_verified: bool = False
    ) -> list[Transition]:
        """Process one frame from the link. Returns the TCP state transitions it caused (for a
        capture comment, e.g. 40000 > 198.18.0.1:21 SYN-SENT -> ESTABLISHED); usually empty.

        `checksum_verified`: the link says the kernel verified the TCP/ICMP checksum (offload
        mode, PACKET_AUXDATA), so it is not computed again. Without it every checksum is
        checked, and a GRO-merged frame (whose TCP checksum field does not cover the merged
        payload) is dropped as corrupt: only the kernel's word lets such a frame in."""
        if type(frame_bytes) is not bytes:
            frame_bytes = bytes(frame_bytes)  # a test may hand a bytearray
        prediction = self._prediction
        if prediction is not None and prediction.take(frame_bytes, now, checksum_verified):
            # The next frame of the connection served last, taken whole (lab.host.prediction);
            # counted as `_receive_bulk` counts it.
            self.decode_stats.frames["tcp"] += 1
            self.stats.frames_in["tcp"] += 1
            self.tcp.stats.received += 1
            return []
        bulk = self._receive_bulk(frame_bytes, now, checksum_verified)
        if bulk is not None:
            return bulk
        frame = self.decode_stats.count(
            decode_ethernet(frame_bytes, transport_checksum_verified=checksum_verified)
        )
        if isinstance(frame, Dropped) and frame.reason is DropReason.IP_FRAGMENT:
            return self._receive_fragment(frame_bytes, now)
        return self._dispatch(frame, now)

    def _receive_bulk(
        self, frame_bytes: bytes, now: int, verified: bool
    ) -> list[Transition] | None:
        """The bulk path: a plain TCP/IPv4 frame for an ESTABLISHED connection of ours.

        Such a frame passes every check of `_dispatch`, `_receive_tcp` and `_accept_ip` (ours by
        MAC and address, unicast, TTL above 0, and its source already owns a connection), so
        it goes straight to TCP with the same counters kept. Anything else returns None and
        takes the full path, which decodes it again and names any fault."""
        got = decode_unicast_tcp(
            frame_bytes, self._mac_raw, self._ip_raw, transport_checksum_verified=verified
        )
        if got is None:
            return None
        saddr, seg = got
        src = self._address_text.get(saddr)
        if src is None:
            if len(self._address_text) >= MAX_ADDRESS_TEXTS:
                self._address_text.clear()
            src = self._address_text[saddr] = _ip_text(saddr)
        key = (self.ip, seg.dst_port, src, seg.src_port)
        tcp = self.tcp
        conn = tcp.connections.get(key)
        if conn is None or conn.state is not State.ESTABLISHED:
            return None
        self.decode_stats.frames["tcp"] += 1
        self.stats.frames_in["tcp"] += 1
        cursor = self._cursor(key, conn)
        trace = conn.trace
        if cursor.scanned != len(trace):  # nearly never: `_scan` would answer [] (a call less)
            cursor.held += self._scan(cursor)  # see `_receive_tcp`
        # Demultiplexed already: straight to the connection, no AddressedSegment, no lookup.
        tcp.receive_established(conn, seg, now)
        if cursor.scanned != len(trace):
            return self._scan(cursor)
        predicted = self._prediction
        if self.frame_prediction and (predicted is None or predicted.conn is not conn):
            # This connection's next frames are predicted (one entry: the last one served).
            self._prediction = FramePrediction(
                self._mac_raw, saddr, self._ip_raw, seg.src_port, seg.dst_port, conn, cursor
            )
        return []

    def _dispatch(self, frame: Frame | Dropped, now: int) -> list[Transition]:
        if isinstance(frame, Dropped):
            self.stats.frames_in["malformed"] += 1
            self.stats.drops[frame.reason.value] += 1
            return []
        if isinstance(frame, ArpFrame):
            self.stats.frames_in["arp"] += 1
            self._receive_arp(frame, now)
            return []
        if frame.eth_dst != self.mac and frame.eth_dst not in self._macs_in:
            self.stats.frames_in["other"] += 1
            self.stats.drops["not_our_mac"] += 1
            return []
        if isinstance(frame, TcpFrame):
            self.stats.frames_in["tcp"] += 1
            return self._receive_tcp(frame, now)
        if isinstance(frame, IcmpFrame):
            self.stats.frames_in["icmp"] += 1
            self._receive_icmp(frame, now)
            return []
        if isinstance(frame, (Icmpv6Frame, NeighborSolicitation, NeighborAdvertisement)):
            self.stats.frames_in[_V6_KINDS[type(frame)]] += 1
            if self.ip6 is None:
                self.stats.drops["ipv6_disabled"] += 1
            elif isinstance(frame, Icmpv6Frame):
                self._receive_icmpv6(frame, now)
            elif isinstance(frame, NeighborSolicitation):
                self._receive_solicitation(frame, now)
            else:
                self._receive_advertisement(frame, now)
            return []
        self.stats.frames_in["other"] += 1
        self.stats.drops["unhandled_protocol"] += 1
        return []

    def outgoing_frames(self, now: int) -> list[OutgoingFrame]:
        """The frames to put on the wire now (TCP output is pulled from the endpoint), encoded,
        each with the TCP state transitions it carries: those caused by application calls or
        timers since the connection's previous frame (for a capture comment, e.g.
        40000 > 198.18.0.1:7 CLOSED -> SYN-SENT on our SYN). The one way output leaves a host."""
        encode = self.encode
        return [
            OutgoingFrame(frame.data if isinstance(frame, _PackedAck) else encode(frame), notes)
            for frame, notes in self._drain(now)
        ]

    def ping(self, dst: str, ident: int, seq: int, payload: bytes, now: int) -> None:
        """Queue an ICMP echo request to `dst` (RFC 792), or an ICMPv6 one to a v6 `dst`
        (RFC 4443 4.1); the reply, if any, comes out of `echo_replies`. Raises ValueError for an
        identifier or sequence outside 16 bits, a request larger than the MTU (we never fragment
        on output), a v6 `dst` on a host without IPv6, or a multicast v6 `dst`."""
        if not (0 <= ident <= 0xFFFF and 0 <= seq <= 0xFFFF):
            raise ValueError(f"ICMP identifier and sequence are 16-bit: {ident}, {seq}")
        if ":" in dst:
            self._ping6(dst, ident, seq, payload, now)
            return
        if IP_HEADER_LEN + 8 + len(payload) > self.mtu:
            raise ValueError(f"{len(payload)} bytes of echo data do not fit the MTU {self.mtu}")
        header = Ipv4Header(
            src=self.ip,
            dst=dst,
            ttl=DEFAULT_TTL,
            ident=self._next_ident(),
            protocol=IPPROTO_ICMP,
        )
        self._remember_ping(dst, ident, seq, now)
        self.stats.frames_out["icmp_echo_request"] += 1
        request = IcmpFrame(
            self.mac, ZERO_MAC, header, ICMP_ECHO_REQUEST, 0, ident << 16 | seq, payload
        )
        self._send_ip(request, now)

    def _remember_ping(self, dst: str, ident: int, seq: int, now: int) -> None:
        key = (dst, ident, seq)
        self._pings.pop(key, None)  # a repeated request is timed from its latest copy
        self._pings[key] = now
        if len(self._pings) > MAX_OUTSTANDING_PINGS:
            del self._pings[next(iter(self._pings))]  # dicts keep insertion order: the oldest

    def _ping6(self, dst: str, ident: int, seq: int, payload: bytes, now: int) -> None:
        """ICMPv6 echo request (RFC 4443 4.1) from the address of `dst`'s scope."""
        if self.ip6 is None or self.link_local is None:
            raise ValueError(f"{dst} is IPv6 and this host has no IPv6 address")
        dst = str(ipaddress.IPv6Address(dst))
        if _is_multicast6(dst):
            raise ValueError(f"{dst} is a multicast group: ping a unicast address")
        if IPV6_HEADER_LEN + 8 + len(payload) > self.mtu:
            raise ValueError(f"{len(payload)} bytes of echo data do not fit the MTU {self.mtu}")
        src = self.link_local if ipaddress.IPv6Address(dst).is_link_local else self.ip6
        self._remember_ping(dst, ident, seq, now)
        self.stats.frames_out["icmpv6_echo_request"] += 1
        header = Ipv6Header(src, dst, DEFAULT_HOP_LIMIT, IPPROTO_ICMPV6)
        request = Icmpv6Frame(
            self.mac, ZERO_MAC, header, ICMPV6_ECHO_REQUEST, 0, ident << 16 | seq, payload
        )
        self._send_ip6(request, now)

    def echo_replies(self) -> list[EchoReply]:
        """Drain the replies to our echo requests received since the last call."""
        out = self._echo_replies
        self._echo_replies = []
        return out

    def _drain(self, now: int) -> list[tuple[Frame | _PackedAck, tuple[Transition, ...]]]:
        for packet in self.tcp.packets_to_send(now):
            self._send_tcp(packet, now)
        out = self._out
        self._out = []
        result = [(frame, self._outbound_notes(frame)) for frame in out]
        if len(self._cursors) > len(self.tcp.connections):
            self._forget_finished_cursors()
        return result

    def on_timer(self, now: int) -> None:
        """ARP retries and give-ups, fragment timeouts, path MTU expiry, TCP timers."""
        again, gone = self.arp.on_timer(now)
        for ip in again:
            self._queue_arp(ARP_REQUEST, BROADCAST_MAC, ZERO_MAC, ip)
        for unreachable in gone:
            self.stats.drops["arp_unresolved"] += len(unreachable.dropped)
            self._report_unreachable(unreachable.ip, unreachable.dropped)
        for ip, mac in self.arp.reprobe(now):
            # Linux's PROBE state: confirm a STALE neighbour in use by unicast, not broadcast.
            self._queue_arp(ARP_REQUEST, mac, ZERO_MAC, ip)
        if self.ip6 is not None:
            self._ipv6_timers(now)
        self.fragments.on_timer(now)
        self.fragments6.on_timer(now)
        self._sync_fragment_drops()
        for dst, (_mtu, expires) in list(self.path_mtu.items()):
            if now >= expires:
                del self.path_mtu[dst]
        deadline = self.tcp.next_deadline()
        if deadline is not None and deadline <= now:
            self.tcp.on_timer(now)

    def next_deadline(self) -> int | None:
        """The earliest instant `on_timer` has work, or None."""
        candidates = (
            self.arp.next_deadline(),
            self.fragments.next_deadline(),
            self.tcp.next_deadline(),
            self.ndp.next_deadline(),
            self.dad.next_deadline(),
            self.fragments6.next_deadline(),
        )
        return min((d for d in candidates if d is not None), default=None)

    def errors(self) -> list[IcmpError]:
        """Drain the soft errors (ICMP/ICMPv6 unreachable, ARP/ND failures) reported since the
        last call."""
        out = self._errors
        self._errors = []
        return out

    def mss_for(self, remote_ip: str, now: int) -> int:
        """The largest TCP payload that fits the path to `remote_ip` without IP or TCP options
        (an IPv6 header is 40 bytes: 1440 on a 1500-byte link)."""
        mtu = self.mtu
        known = self.path_mtu.get(remote_ip)
        if known is not None and now < known[1]:
            mtu = min(mtu, known[0])
        header = IPV6_HEADER_LEN if ":" in remote_ip else IP_HEADER_LEN
        return mtu - header - TCP_HEADER_LEN

    def route(self, dst: str) -> str | None:
        """The next hop for `dst`: itself on our subnet, else the gateway (None: no route).

        IPv6: on-link are our prefix and link-local fe80::/10 (RFC 4861 5.2 without Router
        Advertisements: the prefix is configured); the rest goes to `gateway6`."""
        on_link = self._on_link.get(dst)
        if on_link is None:
            if len(self._on_link) >= MAX_ADDRESS_TEXTS:
                self._on_link.clear()
            if ":" in dst:
                address = ipaddress.IPv6Address(dst)
                on_link = address.is_link_local or (
                    self.network6 is not None and address in self.network6
                )
            else:
                on_link = ipaddress.IPv4Address(dst) in self.network
            self._on_link[dst] = on_link
        if on_link:
            return dst
        return self.gateway6 if ":" in dst else self.gateway

    @property
    def accepted_macs(self) -> frozenset[str]:
        """The Ethernet destinations this host takes: its MAC, broadcast, and with IPv6 the
        multicast MACs of all-nodes and of its solicited-node groups (for a link's BPF filter)."""
        return self._macs_in

    def address_state(self, address: str) -> AddressState | None:
        """TENTATIVE, PREFERRED or DUPLICATE for one of our IPv6 addresses (None: not ours)."""
        return self.dad.state(address)

    @property
    def ipv6_ready(self) -> bool:
        """Whether our global IPv6 address passed Duplicate Address Detection."""
        return self.ip6 is not None and self.dad.is_preferred(self.ip6)

    def duplicate_addresses(self) -> list[DuplicateAddress]:
        """Drain the addresses DAD found in use elsewhere since the last call (never used)."""
        out = self._duplicates
        self._duplicates = []
        return out

    # -- transitions for capture comments -----------------------------------------------------

    def _cursor(self, key: _FourTuple, conn: Connection) -> _TraceCursor:
        cursor = self._cursors.get(key)
        if cursor is None or cursor.conn is not conn:  # new, or a new connection on the 4-tuple
            cursor = self._cursors[key] = _TraceCursor(conn)
        return cursor

    @staticmethod
    def _scan(cursor: _TraceCursor) -> list[Transition]:
        """The state transitions recorded since the last scan."""
        conn = cursor.conn
        trace = conn.trace
        if cursor.scanned == len(trace):
            return []
        fresh = trace[cursor.scanned :]
        cursor.scanned = len(trace)
        return [
            Transition(conn.local_port, conn.remote_ip, conn.remote_port, entry)
            for entry in fresh
            if isinstance(entry, StateChanged)
        ]

    def _outbound_notes(self, frame: Frame | _PackedAck) -> tuple[Transition, ...]:
        if isinstance(frame, _PackedAck):
            seg = frame.segment
            key = (self.ip, seg.src_port, frame.dst, seg.dst_port)
        elif isinstance(frame, TcpFrame):
            seg = frame.segment
            key = (frame.ip.src, seg.src_port, frame.ip.dst, seg.dst_port)
        else:
            return ()
        conn = self.tcp.connections.get(key)
        if conn is not None:
            cursor = self._cursor(key, conn)
        else:  # reaped already (an abort's RST): the cursor still knows the connection
            found = self._cursors.get(key)
            if found is None:
                return ()  # a RST for a closed port: no connection, no transition
            cursor = found
        if not cursor.held and cursor.scanned == len(cursor.conn.trace):
            return ()  # the bulk-data case: nothing new since the previous frame
        notes = cursor.held + self._scan(cursor)
        if not seg.flags & (Flags.FIN | Flags.RST):
            # A close waits for the frame that shows it: with data still queued, "ESTABLISHED
            # -> FIN-WAIT-1" belongs on the FIN (or the RST of an abort), not on a data segment.
            split = next((i for i, n in enumerate(notes) if n.change.new in _SHOWN_BY_FIN), None)
            if split is not None:
                cursor.held = notes[split:]
                return tuple(notes[:split])
        cursor.held = []
        return tuple(notes)

    def _forget_finished_cursors(self) -> None:
        """Drop cursors of connections the endpoint has reaped (their last frame has left),
        and the frame prediction of one of them."""
        for key, cursor in list(self._cursors.items()):
            if (
                self.tcp.connections.get(key) is not cursor.conn
                and cursor.conn.state is State.CLOSED
            ):
                del self._cursors[key]
                if self._prediction is not None and self._prediction.cursor is cursor:
                    self._prediction = None

    # -- ARP -----------------------------------------------------------------------------------

    def _receive_arp(self, frame: ArpFrame, now: int) -> None:
        if frame.sender_ip == self.ip:
            if frame.sender_mac != self.mac:
                self.stats.drops["arp_address_conflict"] += 1  # RFC 5227 2.4: someone claims us
            return
        if frame.sender_ip == "0.0.0.0" or frame.sender_mac in (ZERO_MAC, BROADCAST_MAC):
            self.stats.drops["arp_bad_sender"] += 1  # a probe (RFC 5227 2.1.1) or garbage
            return
        for_us = frame.target_ip == self.ip
        # RFC 826 "merge": update a sender we already know; add it if the packet is for us.
        if for_us or self.arp.knows(frame.sender_ip):
            for waiting in self.arp.learn(frame.sender_ip, frame.sender_mac, now):
                self._out.append(replace(waiting, eth_dst=frame.sender_mac))
        if not for_us:
            self.stats.drops["arp_not_for_us"] += 1
            return
        if frame.op == ARP_REQUEST:
            self._queue_arp(ARP_REPLY, frame.sender_mac, frame.sender_mac, frame.sender_ip)
        elif frame.op != ARP_REPLY:
            self.stats.drops["arp_bad_op"] += 1

    def _queue_arp(self, op: int, eth_dst: str, target_mac: str, target_ip: str) -> None:
        self.stats.frames_out["arp_request" if op == ARP_REQUEST else "arp_reply"] += 1
        self._out.append(
            ArpFrame(
                eth_src=self.mac,
                eth_dst=eth_dst,
                op=op,
                sender_mac=self.mac,
                sender_ip=self.ip,
                target_mac=target_mac,
                target_ip=target_ip,
            )
        )

    def _report_unreachable(
        self, next_hop: str, dropped: tuple[Frame, ...], icmpv6: tuple[int, int] | None = None
    ) -> None:
        """ARP (or ND) gave up on `next_hop`: tell the TCP side, once per destination that
        waited."""
        seen: set[tuple[str, int | None, int | None]] = set()
        for frame in dropped:
            item: tuple[str, int | None, int | None]
            if isinstance(frame, TcpFrame):
                item = (frame.ip.dst, frame.segment.dst_port, frame.segment.src_port)
            else:
                item = (next_hop, None, None)
            if item not in seen:
                seen.add(item)
                self._errors.append(
                    IcmpError(item[0], item[1], item[2], 1, from_arp=True, icmpv6=icmpv6)
                )

    # -- IPv4 output ---------------------------------------------------------------------------

    def _next_ident(self) -> int:
        # RFC 6864: atomic datagrams (DF set, not fragmented) may carry any ID; a counter is fine.
        self._ident = (self._ident + 1) & 0xFFFF
        return self._ident

    def _send_tcp(self, packet: AddressedSegment, now: int) -> None:
        seg = packet.segment
        if self.path_mtu and packet.dst in self.path_mtu:
            # A path MTU learned on one connection applies to every connection to that
            # destination, as Linux keeps it in the route: a new connection does not have to
            # lose a full-size segment to learn it again.
            conn = self.tcp.connections.get((packet.src, seg.src_port, packet.dst, seg.dst_port))
            if conn is not None:
                conn.set_path_mss(self.mss_for(packet.dst, now))
        v6 = ":" in packet.dst
        ip_len = IPV6_HEADER_LEN if v6 else IP_HEADER_LEN
        if len(seg.payload) + ip_len + TCP_HEADER_LEN > self.mtu - 40:
            size = ip_len + seg.header_len + len(seg.payload)
            if size > self.mtu:
                self.stats.drops["exceeds_mtu"] += 1
                return
        if v6:
            self.stats.frames_out["tcp"] += 1
            header6 = Ipv6Header(packet.src, packet.dst, DEFAULT_HOP_LIMIT, IPPROTO_TCP)
            self._send_ip6(TcpFrame(self.mac, ZERO_MAC, header6, seg), now)
            return
        ident = self._next_ident()
        self.stats.frames_out["tcp"] += 1
        next_hop = self.route(packet.dst)
        mac = self.arp.lookup(next_hop, now) if next_hop is not None else None
        if mac is not None:  # the bulk case: the frame is made once, with its next hop's MAC
            encode = self.encode
            if not seg.payload and (
                encode is fast.encode
                # the mixed codec gives Scapy only SYN, FIN and RST segments of these
                or (encode is mixed.encode and not int(seg.flags) & _SCAPY_FLAGS)
            ):
                ts = fast.bare_timestamps(seg.options)
                if ts is not None:
                    # A bulk receiver's ACK (one per two segments): packed from the
                    # connection's template, with no IPv4 header or frame value made (the
                    # struct codec's bytes: tests/test_codec.py, tests/test_prediction.py).
                    template = self._ack_templates.get((mac, packet.dst))
                    if template is None:
                        template = self._ack_template(mac, packet.dst)
                    data = template.encode(ident, seg, ts.tsval, ts.tsecr)
                    self._out.append(_PackedAck(data, packet.dst, seg))
                    return
            # src, dst, ttl, ident; the protocol defaults to TCP (positional: a third cheaper)
            header = Ipv4Header(self.ip, packet.dst, DEFAULT_TTL, ident)
            self._out.append(TcpFrame(self.mac, mac, header, seg))
            return
        header = Ipv4Header(self.ip, packet.dst, DEFAULT_TTL, ident)
        self._send_ip(TcpFrame(self.mac, ZERO_MAC, header, seg), now)  # no route, or ARP first

    def _ack_template(self, mac: str, dst: str) -> fast.BareAckTemplate:
        """The bare-ACK template for `dst` through the next hop at `mac`, made and kept."""
        if len(self._ack_templates) >= MAX_ADDRESS_TEXTS:
            self._ack_templates.clear()
        template = fast.BareAckTemplate(self.mac, mac, Ipv4Header(self.ip, dst, DEFAULT_TTL))
        self._ack_templates[(mac, dst)] = template
        return template

    def _send_ip(self, frame: TcpFrame | IcmpFrame, now: int) -> None:
        """Resolve the next hop and queue the frame, or park it until ARP answers."""
        next_hop = self.route(frame.ip.dst)
        if next_hop is None:
            self.stats.drops["no_route"] += 1
            self._errors.append(IcmpError(frame.ip.dst, None, None, 0))
            return
        mac = self.arp.lookup(next_hop, now)
        if mac is not None:  # (TCP's bulk case never gets here: _send_tcp framed it already)
            self._out.append(replace(frame, eth_dst=mac))
            return
        if self.arp.enqueue(next_hop, frame, now):
            self._queue_arp(ARP_REQUEST, BROADCAST_MAC, ZERO_MAC, next_hop)

    # -- IPv6 output and Neighbor Discovery ------------------------------------------------------

    def _send_ip6(self, frame: TcpFrame | Icmpv6Frame, now: int) -> None:
        """Resolve the next hop by Neighbor Discovery and queue the frame, or park it until an
        advertisement answers; a frame from a tentative address waits for DAD to end."""
        src = frame.ip.src
        if not self.dad.is_preferred(src):
            if self.dad.is_tentative(src):
                # RFC 4862 5.4: a tentative address is not used yet; hold, do not lose, the packet.
                if len(self._held_for_dad) >= MAX_HELD_FOR_DAD:
                    del self._held_for_dad[0]
                    self.stats.drops["ipv6_dad_queue_overflow"] += 1
                self._held_for_dad.append(frame)
            else:
                self.stats.drops["ipv6_source_not_usable"] += 1  # DUPLICATE
            return
        next_hop = self.route(frame.ip.dst)
        if next_hop is None:
            self.stats.drops["no_route"] += 1
            self._errors.append(IcmpError(frame.ip.dst, None, None, 0, icmpv6=(1, 0)))
            return
        mac = self.ndp.lookup(next_hop, now)
        if mac is not None:
            if isinstance(frame, TcpFrame):
                self._out.append(TcpFrame(frame.eth_src, mac, frame.ip, frame.segment))
            else:
                self._out.append(replace(frame, eth_dst=mac))
            return
        if self.ndp.enqueue(next_hop, frame, now):
            self._solicit(next_hop, None)

    def _ns_source(self, target: str) -> str | None:
        """Our source for a solicitation about `target` (RFC 4861 7.2.2): the global address for
        a target on our prefix, the link-local one otherwise; never a tentative address."""
        own = (self.ip6, self.link_local)
        if self.network6 is None or ipaddress.IPv6Address(target) not in self.network6:
            own = own[::-1]
        return next((a for a in own if a is not None and self.dad.is_preferred(a)), None)

    def _solicit(self, target: str, unicast_mac: str | None) -> None:
        """A Neighbor Solicitation for `target`: to its solicited-node group while resolving
        (INCOMPLETE), to the cached MAC and the address itself when probing (PROBE)."""
        src = self._ns_source(target)
        if src is None:
            self.stats.drops["ndp_no_source_address"] += 1
            return
        if unicast_mac is None:
            dst = solicited_node_multicast(target)
            eth_dst = ipv6_multicast_mac(dst)
            self.stats.frames_out["ndp_solicitation"] += 1
        else:
            dst, eth_dst = target, unicast_mac
            self.stats.frames_out["ndp_probe"] += 1
        header = Ipv6Header(src, dst, ND_HOP_LIMIT, IPPROTO_ICMPV6)
        self._out.append(NeighborSolicitation(self.mac, eth_dst, header, target, self.mac))

    def _solicit_for_dad(self, address: str) -> None:
        """RFC 4862 5.4.2: from the unspecified address, to the solicited-node group of the
        tentative address, without a source link-layer address option."""
        group = solicited_node_multicast(address)
        header = Ipv6Header(UNSPECIFIED, group, ND_HOP_LIMIT, IPPROTO_ICMPV6)
        self.stats.frames_out["ndp_dad_solicitation"] += 1
        self._out.append(NeighborSolicitation(self.mac, ipv6_multicast_mac(group), header, address))

    def _advertise(self, target: str, dst: str, eth_dst: str, *, solicited: bool) -> None:
        """A Neighbor Advertisement for our `target` (RFC 4861 7.2.4): Override set, our MAC in
        the Target Link-Layer Address option."""
        header = Ipv6Header(target, dst, ND_HOP_LIMIT, IPPROTO_ICMPV6)
        self.stats.frames_out["ndp_advertisement"] += 1
        self._out.append(
            NeighborAdvertisement(
                self.mac,
                eth_dst,
                header,
                target,
                router=False,
                solicited=solicited,
                override=True,
                target_lladdr=self.mac,
            )
        )

    def _ipv6_timers(self, now: int) -> None:
        """DAD progress, neighbor cache retransmissions, probes and give-ups."""
        again, preferred = self.dad.on_timer(now)
        for address in again:
            self._solicit_for_dad(address)
        if preferred and self._held_for_dad:
            held, self._held_for_dad = self._held_for_dad, []
            for frame in held:
                if isinstance(frame, Icmpv6Frame) and frame.icmp_type == ICMPV6_ECHO_REQUEST:
                    # An echo request is timed from when it may leave, not from the wait for DAD.
                    key = (frame.ip.dst, frame.rest >> 16, frame.rest & 0xFFFF)
                    if key in self._pings:
                        self._pings[key] = now
                self._send_ip6(frame, now)
        actions = self.ndp.on_timer(now)
        for target in actions.multicast:
            self._solicit(target, None)
        for target, mac in actions.unicast:
            self._solicit(target, mac)
        for gone in actions.unresolved:
            self.stats.drops["ndp_unresolved"] += len(gone.dropped)
            self._report_unreachable(gone.ip, gone.dropped, icmpv6=(1, 3))

    def _duplicate(self, address: str, mac: str) -> None:
        """DAD failed for `address` (RFC 4862 5.4.5): it is never used; what waited for it goes."""
        self._duplicates.append(DuplicateAddress(address, mac))
        kept = [f for f in self._held_for_dad if f.ip.src != address]
        self.stats.drops["ipv6_source_duplicate"] += len(self._held_for_dad) - len(kept)
        self._held_for_dad = kept

    # -- IPv6 input ----------------------------------------------------------------------------

    def _accept_ip6(self, ip: Ipv6Header, *, multicast: bool) -> bool:
        """RFC 8200 / RFC 4291 address checks; counts the drop when refusing.

        The destination is one of our PREFERRED addresses (RFC 4862 5.4: packets to a tentative
        address are discarded), or, when `multicast`, a group we joined (all-nodes, our
        solicited-node groups). The source is never multicast (RFC 4291 2.7), unspecified
        (only a DAD solicitation may be; it is checked on its own), loopback or ours."""
        dst, src = ip.dst, ip.src
        if dst in self._own6:
            if not self.dad.is_preferred(dst):
                self.stats.drops["ipv6_to_tentative_address"] += 1
                return False
        elif not (multicast and dst in self._groups6):
            self.stats.drops["ip_not_our_address"] += 1
            return False
        if src == UNSPECIFIED:
            self.stats.drops["ipv6_unspecified_source"] += 1
            return False
        if src in self._own6 or src == "::1" or _is_multicast6(src):
            self.stats.drops["ip_bad_source"] += 1
            return False
        if ip.hop_limit == 0:
            self.stats.drops["ip_ttl_zero"] += 1  # as for IPv4: no router forwards hop limit 0
            return False
        return True

    def _nd_valid(self, ip: Ipv6Header, target: str) -> bool:
        """RFC 4861 7.1.1 / 7.1.2 checks both messages share (the codec checked code, length and
        options): hop limit 255, a unicast target, a source that is not multicast."""
        if ip.hop_limit != ND_HOP_LIMIT:
            self.stats.drops["ndp_bad_hop_limit"] += 1
            return False
        if _is_multicast6(target):
            self.stats.drops["ndp_multicast_target"] += 1
            return False
        if _is_multicast6(ip.src):
            self.stats.drops["ip_bad_source"] += 1
            return False
        if ip.dst not in self._own6 and ip.dst not in self._groups6:
            self.stats.drops["ip_not_our_address"] += 1
            return False
        return True

    def _receive_solicitation(self, frame: NeighborSolicitation, now: int) -> None:
        """RFC 4861 7.2.3 (answer and learn), RFC 4862 5.4.3 (DAD)."""
        ip, target = frame.ip, frame.target
        if not self._nd_valid(ip, target):
            return
        dad = ip.src == UNSPECIFIED
        if dad and (ip.dst != solicited_node_multicast(target) or frame.source_lladdr is not None):
            # RFC 4861 7.1.1: from :: only to a solicited-node group, without SLLAO.
            self.stats.drops["ndp_bad_dad_solicitation"] += 1
            return
        if target not in self._own6:
            self.stats.drops["ndp_not_our_target"] += 1
            return
        state = self.dad.state(target)
        if state is AddressState.TENTATIVE:
            if dad and self.dad.conflict(target):
                self._duplicate(target, frame.eth_src)  # someone else is trying our address
            else:
                self.stats.drops["ndp_solicitation_for_tentative"] += 1
            return
        if state is not AddressState.PREFERRED:
            self.stats.drops["ndp_solicitation_for_duplicate"] += 1
            return
        if dad:
            # RFC 4861 7.2.4: answer a DAD probe for our address to all-nodes, S clear.
            self._advertise(target, ALL_NODES, ALL_NODES_MAC, solicited=False)
            return
        if ip.src in self._own6:
            self.stats.drops["ip_bad_source"] += 1
            return
        if frame.source_lladdr is not None:
            for waiting in self.ndp.solicitation_from(ip.src, frame.source_lladdr, now):
                self._out.append(replace(waiting, eth_dst=frame.source_lladdr))
        # Without the option (allowed to a unicast destination) we answer the frame's sender.
        self._advertise(target, ip.src, frame.source_lladdr or frame.eth_src, solicited=True)

    def _receive_advertisement(self, frame: NeighborAdvertisement, now: int) -> None:
        """RFC 4861 7.2.5 (update only what we hold), RFC 4862 5.4.4 (DAD)."""
        ip, target = frame.ip, frame.target
        if not self._nd_valid(ip, target):
            return
        if frame.solicited and _is_multicast6(ip.dst):
            self.stats.drops["ndp_solicited_advertisement_to_multicast"] += 1  # RFC 4861 7.1.2
            return
        if ip.src == UNSPECIFIED:
            self.stats.drops["ipv6_unspecified_source"] += 1
            return
        if target in self._own6:
            if self.dad.conflict(target):
                self._duplicate(target, frame.eth_src)
            else:
                # RFC 4862 5.4.4: someone claims an address we hold; log it, keep ours.
                self.stats.drops["ndp_address_conflict"] += 1
            return
        verdict = self.ndp.advertisement(
            target,
            frame.target_lladdr,
            solicited=frame.solicited,
            override=frame.override,
            now=now,
        )
        if verdict.dropped is not None:
            self.stats.drops[verdict.dropped] += 1
        lladdr = frame.target_lladdr
        if lladdr is not None:  # packets are released only by an advertisement with an address
            for waiting in verdict.released:
                self._out.append(replace(waiting, eth_dst=lladdr))

    def _receive_icmpv6(self, frame: Icmpv6Frame, now: int) -> None:
        """RFC 4443: echo (answered unless to a group), errors about our TCP, the rest ignored."""
        if not self._accept_ip6(frame.ip, multicast=True):
            return
        kind = frame.icmp_type
        if kind == ICMPV6_ECHO_REQUEST:
            if frame.ip.dst not in self._own6:
                # Linux answers multicast pings by default; a lab host does not amplify.
                self.stats.drops["icmpv6_multicast_echo"] += 1
                return
            self._echo_reply6(frame, now)
        elif kind == ICMPV6_ECHO_REPLY:
            self._match_echo(
                frame.ip.src,
                frame.ip.dst in self._own6,
                frame.rest,
                frame.payload,
                frame.ip.hop_limit,
                now,
            )
        elif kind in (ICMPV6_DEST_UNREACHABLE, ICMPV6_PACKET_TOO_BIG):
            self._icmpv6_error(frame, now)
        else:
            self.stats.drops[f"icmpv6_type_{kind}_ignored"] += 1

    def _echo_reply6(self, request: Icmpv6Frame, now: int) -> None:
        """RFC 4443 4.2: same identifier, sequence and data, from the address that was pinged."""
        if IPV6_HEADER_LEN + 8 + len(request.payload) > self.mtu:
            self.stats.drops["echo_reply_exceeds_mtu"] += 1  # we never fragment on output
            return
        ip = request.ip
        header = Ipv6Header(
            ip.dst, ip.src, DEFAULT_HOP_LIMIT, IPPROTO_ICMPV6, traffic_class=ip.traffic_class
        )
        reply = Icmpv6Frame(
            self.mac, ZERO_MAC, header, ICMPV6_ECHO_REPLY, 0, request.rest, request.payload
        )
        self.stats.frames_out["icmpv6_echo_reply"] += 1
        if self.route(ip.src) == ip.src:
            self._out.append(replace(reply, eth_dst=request.eth_src))  # as for IPv4
        else:
            self._send_ip6(reply, now)

    def _icmpv6_error(self, frame: Icmpv6Frame, now: int) -> None:
        """Destination unreachable -> soft error; Packet Too Big -> path MTU (RFC 8201), never
        below 1280 and never raised by a PTB; both checked against the send window (RFC 5927)."""
        quoted = _parse_quoted_tcp6(frame.payload)
        if quoted is None:
            self.stats.drops["icmp_unreachable_unparsable"] += 1
            return
        src, dst, src_port, dst_port, seq = quoted
        if src != self.ip6:
            self.stats.drops["icmp_unreachable_not_ours"] += 1
            return
        conn = self.tcp.connections.get((src, src_port, dst, dst_port))
        if conn is None or not _in_flight(conn, seq):
            self.stats.drops["icmp_unreachable_stale"] += 1
            return
        if frame.icmp_type == ICMPV6_DEST_UNREACHABLE:
            code = _V6_UNREACHABLE_AS_V4.get(frame.code, 1)
            self._errors.append(
                IcmpError(dst, dst_port, src_port, code, icmpv6=(frame.icmp_type, frame.code))
            )
            return
        mtu = max(frame.rest, IPV6_MIN_MTU)
        known = self.path_mtu.get(dst)
        if known is not None and now < known[1]:
            mtu = min(mtu, known[0])
        if mtu >= self.mtu:
            self.stats.drops["icmpv6_packet_too_big_useless"] += 1
            return
        self.path_mtu[dst] = (mtu, now + PATH_MTU_LIFETIME)
        self._lower_mss(conn, mtu - IPV6_HEADER_LEN - TCP_HEADER_LEN)
        self._errors.append(
            IcmpError(dst, dst_port, src_port, ICMP_FRAG_NEEDED, mtu, icmpv6=(frame.icmp_type, 0))
        )

    # -- IPv4 input ----------------------------------------------------------------------------

    def _accept_ip(self, ip: Ipv4Header, *, allow_broadcast: bool) -> bool:
        """RFC 1122 3.2.1.3 address checks and our TTL rule; counts the drop when refusing."""
        if ip.dst != self.ip and not (allow_broadcast and ip.dst in self._broadcasts):
            self.stats.drops["ip_not_our_address"] += 1
            return False
        if ip.src in self._broadcasts or ip.src == self.ip or ip.src.split(".")[0] in _MARTIAN:
            self.stats.drops["ip_bad_source"] += 1
            return False
        if ip.ttl == 0:
            # No router forwards a TTL-0 datagram, so one only arrives from a broken or hostile
            # sender; we refuse it (RFC 1122 3.2.1.7 only forbids dropping TTL 1).
            self.stats.drops["ip_ttl_zero"] += 1
            return False
        return True

    def _receive_tcp(self, frame: TcpFrame, now: int) -> list[Transition]:
        ip = frame.ip
        if frame.eth_dst != self.mac:
            # TCP is unicast only: a segment in a broadcast frame is dropped, as Linux's
            # tcp_v4_rcv drops anything not PACKET_HOST (no RST either, it would answer a flood).
            self.stats.drops["tcp_link_broadcast"] += 1
            return []
        if isinstance(ip, Ipv6Header):
            if self.ip6 is None:
                self.stats.drops["ipv6_disabled"] += 1
                return []
            if not self._accept_ip6(ip, multicast=False):
                return []
            if ip.dst != self.ip6:
                # The endpoint owns the global address only: no TCP over link-local addresses.
                self.stats.drops["tcp_to_link_local"] += 1
                return []
        elif not self._accept_ip(ip, allow_broadcast=False):
            return []
        seg = frame.segment
        key = (ip.dst, seg.dst_port, ip.src, seg.src_port)
        conn = self.tcp.connections.get(key)
        if conn is not None:
            cursor = self._cursor(key, conn)
            # Changes made by application calls or timers before this frame are not its doing:
            # they wait for the connection's next outbound frame.
            cursor.held += self._scan(cursor)
        una = conn.snd_una if conn is not None else None
        self.tcp.receive(AddressedSegment(ip.src, ip.dst, seg), now)
        if conn is None:
            conn = self.tcp.connections.get(key)
            if conn is None:
                return []
            cursor = self._cursor(key, conn)
        elif una is not None and conn.snd_una != una and isinstance(ip, Ipv6Header):
            # RFC 4861 7.3.1: new data acknowledged is forward progress, which confirms the
            # neighbor, so a busy connection never sees DELAY/PROBE solicitations.
            next_hop = self.route(ip.src)
            if next_hop is not None:
                self.ndp.confirm(next_hop, now)
        return self._scan(cursor)

    def _receive_fragment(self, frame_bytes: bytes, now: int) -> list[Transition]:
        parsed = decode_ipv4_fragment(frame_bytes)
        if isinstance(parsed, Dropped):
            if parsed.reason is DropReason.BAD_IP_VERSION:  # not IPv4: an IPv6 fragment
                return self._receive_fragment6(frame_bytes, now)
            self.stats.drops[parsed.reason.value] += 1  # cannot happen after decode_ethernet
            return []
        self.stats.frames_in["ipv4_fragment"] += 1
        if parsed.eth_dst != self.mac:
            self.stats.drops["not_our_mac"] += 1
            return []
        ip = parsed.ip
        if not self._accept_ip(ip, allow_broadcast=False):
            return []
        fragment = Fragment(
            src=ip.src,
            dst=ip.dst,
            protocol=ip.protocol,
            ident=ip.ident,
            offset=ip.fragment_offset,
            more_fragments=ip.more_fragments,
            payload=parsed.payload,
            ttl=ip.ttl,
            tos=ip.tos,
        )
        whole = self.fragments.push(fragment, now)
        self._sync_fragment_drops()
        if whole is None:
            return []
        self.stats.frames_in["ipv4_reassembled"] += 1
        frame = self.decode_stats.count(
            decode_ip(_unfragmented_packet(whole), eth_src=parsed.eth_src, eth_dst=self.mac)
        )
        return self._dispatch(frame, now)

    def _sync_fragment_drops(self) -> None:
        if self.fragments.drops:
            self.stats.drops.update(self.fragments.drops)
            self.fragments.drops.clear()
        if self.fragments6.drops:
            self.stats.drops.update({f"ipv6_{k}": n for k, n in self.fragments6.drops.items()})
            self.fragments6.drops.clear()

    def _receive_fragment6(self, frame_bytes: bytes, now: int) -> list[Transition]:
        """RFC 8200 4.5: reassemble fragments addressed to us, with the IPv4 reassembler's bounds
        (30 s, memory cap, RFC 5722's discard of overlapping datagrams), then decode the whole
        packet as if it had come in one piece. An atomic fragment (offset 0, M clear: RFC 6946)
        is a whole packet by itself and never mixes with fragments of the same identification."""
        self.stats.frames_in["ipv6_fragment"] += 1
        parsed = decode_ipv6_fragment(frame_bytes)
        if isinstance(parsed, Dropped):
            self.stats.drops[parsed.reason.value] += 1
            return []
        if parsed.eth_dst != self.mac:
            self.stats.drops["not_our_mac"] += 1
            return []
        if self.ip6 is None:
            self.stats.drops["ipv6_disabled"] += 1
            return []
        ip = parsed.ip
        if not self._accept_ip6(ip, multicast=False):
            return []
        if parsed.offset == 0 and not parsed.more:
            self.stats.frames_in["ipv6_atomic_fragment"] += 1
            payload = parsed.payload
        else:
            fragment = Fragment(
                src=ip.src,
                dst=ip.dst,
                protocol=ip.next_header,
                ident=parsed.identification,
                offset=parsed.offset,
                more_fragments=parsed.more,
                payload=parsed.payload,
                ttl=ip.hop_limit,
                tos=ip.traffic_class,
            )
            whole = self.fragments6.push(fragment, now)
            self._sync_fragment_drops()
            if whole is None:
                return []
            self.stats.frames_in["ipv6_reassembled"] += 1
            payload = whole.payload
        packet = _ipv6_packet(replace(ip, flow_label=0), payload)
        frame = self.decode_stats.count(decode_ip(packet, eth_src=parsed.eth_src, eth_dst=self.mac))
        if isinstance(frame, Dropped) and frame.reason is DropReason.IP_FRAGMENT:
            self.stats.drops["ipv6_fragment_in_fragment"] += 1  # a nested Fragment header
            return []
        return self._dispatch(frame, now)

    # -- ICMP ----------------------------------------------------------------------------------

    def _receive_icmp(self, frame: IcmpFrame, now: int) -> None:
        if not self._accept_ip(frame.ip, allow_broadcast=True):
            return
        if frame.icmp_type == ICMP_ECHO_REQUEST:
            if frame.ip.dst != self.ip:
                # Linux ignores broadcast pings by default (smurf amplification): so do we.
                self.stats.drops["icmp_broadcast_echo"] += 1
                return
            self._echo_reply(frame, now)
        elif frame.icmp_type == ICMP_ECHO_REPLY:
            ip = frame.ip
            self._match_echo(ip.src, ip.dst == self.ip, frame.rest, frame.payload, ip.ttl, now)
        elif frame.icmp_type == ICMP_DEST_UNREACHABLE:
            self._dest_unreachable(frame, now)
        else:
            self.stats.drops[f"icmp_type_{frame.icmp_type}_ignored"] += 1

    def _echo_reply(self, request: IcmpFrame, now: int) -> None:
        """RFC 792 echo: same identifier, sequence and data, addresses swapped."""
        if IP_HEADER_LEN + 8 + len(request.payload) > self.mtu:
            self.stats.drops["echo_reply_exceeds_mtu"] += 1  # we never fragment on output
            return
        header = Ipv4Header(
            src=self.ip,
            dst=request.ip.src,
            ttl=DEFAULT_TTL,
            ident=self._next_ident(),
            tos=request.ip.tos,
            protocol=IPPROTO_ICMP,
        )
        reply = IcmpFrame(
            self.mac, ZERO_MAC, header, ICMP_ECHO_REPLY, 0, request.rest, request.payload
        )
        self.stats.frames_out["icmp_echo_reply"] += 1
        # The requester's MAC is known from this very frame: answer it without waiting for ARP,
        # as the kernel does (it learned it from its own ARP exchange with us anyway).
        if self.route(request.ip.src) == request.ip.src:
            self._out.append(replace(reply, eth_dst=request.eth_src))
        else:
            self._send_ip(reply, now)

    def _match_echo(
        self, src: str, to_us: bool, rest: int, payload: bytes, ttl: int, now: int
    ) -> None:
        """A reply to one of our `ping`s: same source, identifier and sequence (RFC 792,
        RFC 4443 4.2), sent to one of our addresses."""
        ident, seq = rest >> 16, rest & 0xFFFF
        sent = self._pings.pop((src, ident, seq), None) if to_us else None
        if sent is None:
            self.stats.drops["icmp_echo_reply_unexpected"] += 1
            return
        self._echo_replies.append(EchoReply(src, ident, seq, payload, ttl, sent, now))

    def _dest_unreachable(self, frame: IcmpFrame, now: int) -> None:
        quoted = _parse_quoted_tcp(frame.payload)
        if quoted is None:
            self.stats.drops["icmp_unreachable_unparsable"] += 1
            return
        src, dst, src_port, dst_port, seq = quoted
        if src != self.ip:
            self.stats.drops["icmp_unreachable_not_ours"] += 1
            return
        conn = self.tcp.connections.get((self.ip, src_port, dst, dst_port))
        if conn is None or not _in_flight(conn, seq):
            # RFC 5927 4.1: the quoted sequence number must be one we sent and is unacknowledged.
            self.stats.drops["icmp_unreachable_stale"] += 1
            return
        mtu: int | None = None
        if frame.code == ICMP_FRAG_NEEDED:
            mtu = max(frame.rest & 0xFFFF, MIN_PATH_MTU)
            if mtu >= self.mtu:
                self.stats.drops["icmp_frag_needed_useless"] += 1
                return
            self.path_mtu[dst] = (mtu, now + PATH_MTU_LIFETIME)
            self._lower_mss(conn, mtu - IP_HEADER_LEN - TCP_HEADER_LEN)
        self._errors.append(IcmpError(dst, dst_port, src_port, frame.code, mtu))

    @staticmethod
    def _lower_mss(conn: Connection, mss: int) -> None:
        """Tell the connection the path MSS (RFC 1191 6.5); it never raises its MSS again."""
        conn.set_path_mss(mss)


_V6_KINDS: Final = {
    Icmpv6Frame: "icmpv6",
    NeighborSolicitation: "ndp_solicitation",
    NeighborAdvertisement: "ndp_advertisement",
}
_SCAPY_FLAGS = int(mixed.CONTROL_FLAGS)  # what the mixed codec always builds with Scapy
_SHOWN_BY_FIN = (State.FIN_WAIT_1, State.LAST_ACK)  # the states our FIN puts on the wire
_MARTIAN = {"0", "127"} | {str(n) for n in range(224, 256)}  # this-net, loopback, class D/E


def _in_flight(conn: Connection, seq: int) -> bool:
    """SND.UNA <= seq < SND.NXT, or seq = SND.UNA for a SYN (RFC 5927 4.1)."""
    una, nxt = conn.snd_una, conn.snd_nxt
    return seq_in_window(seq, una, max(seq_diff(nxt, una), 1))


def _ip_text(raw: bytes) -> str:
    return socket.inet_ntoa(raw)


def _unfragmented_packet(whole: Reassembled) -> bytes:
    """The reassembled datagram as one IPv4 packet, so the codec decodes it like any other.

    The header has no options and no fragment fields (DF clear, as on the fragments)."""
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        whole.tos,
        IP_HEADER_LEN + len(whole.payload),
        whole.ident,
        0,
        whole.ttl,
        whole.protocol,
        0,
        socket.inet_aton(whole.src),
        socket.inet_aton(whole.dst),
    )
    checksum = internet_checksum(header)
    return header[:10] + checksum.to_bytes(2) + header[12:] + whole.payload


def _ipv6_packet(ip: Ipv6Header, payload: bytes) -> bytes:
    """A reassembled IPv6 packet without extension headers, for the decoder (RFC 8200 4.5: the
    Next Header of the unfragmentable part becomes the Fragment header's, which `ip` holds)."""
    first = 6 << 28 | ip.traffic_class << 20 | ip.flow_label
    return (
        struct.pack("!IHBB", first, len(payload), ip.next_header, ip.hop_limit)
        + socket.inet_pton(socket.AF_INET6, ip.src)
        + socket.inet_pton(socket.AF_INET6, ip.dst)
        + payload
    )


def _parse_quoted_tcp6(data: bytes) -> tuple[str, str, int, int, int] | None:
    """(src, dst, src_port, dst_port, seq) of the IPv6+TCP header quoted in an ICMPv6 error. Our
    own packets carry no extension headers, so anything else is not one of ours."""
    if len(data) < IPV6_HEADER_LEN + 8 or data[0] >> 4 != 6 or data[6] != IPPROTO_TCP:
        return None
    src_port, dst_port, seq = struct.unpack_from("!HHI", data, IPV6_HEADER_LEN)
    src = socket.inet_ntop(socket.AF_INET6, data[8:24])
    dst = socket.inet_ntop(socket.AF_INET6, data[24:40])
    return src, dst, src_port, dst_port, seq


@functools.lru_cache(maxsize=4096)
def _is_multicast6(address: str) -> bool:
    return ipaddress.IPv6Address(address).is_multicast


def _parse_quoted_tcp(data: bytes) -> tuple[str, str, int, int, int] | None:
    """(src, dst, src_port, dst_port, seq) of the IPv4+TCP header quoted in an ICMP error."""
    if len(data) < IP_HEADER_LEN + 8 or data[0] >> 4 != 4:
        return None
    ihl = (data[0] & 0x0F) * 4
    if ihl < IP_HEADER_LEN or len(data) < ihl + 8 or data[9] != IPPROTO_TCP:
        return None
    src_port, dst_port, seq = struct.unpack_from("!HHI", data, ihl)
    return _ip_text(data[12:16]), _ip_text(data[16:20]), src_port, dst_port, seq


def load_encoder(name: str) -> Encoder:
    """The encoder of the codec called `name`: "fast" (struct, bulk), "scapy" (teaching) or
    "mixed" (Scapy for handshakes, teardown, ARP, ICMP and commands; struct for the bulk)."""
    if name == "fast":
        return fast.encode
    if name == "mixed":
        from lab.wire import mixed

        return mixed.encode
    if name == "scapy":
        from lab.wire import scapy_codec  # Scapy takes a second to import: only when asked

        encoder: Encoder = scapy_codec.encode
        return encoder
    raise ValueError(f"unknown codec {name!r} (fast, scapy or mixed)")


__all__ = [
    "AddressState",
    "DuplicateAddress",
    "DuplicateAddressError",
    "EchoReply",
    "Encoder",
    "Host",
    "HostStats",
    "IcmpError",
    "OutgoingFrame",
    "load_encoder",
]
