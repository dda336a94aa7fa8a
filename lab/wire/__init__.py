"""Wire values and their codecs: what sits between the TCP core and the links.

Like smoltcp's `wire/`, this package holds the values the protocol cores consume and emit and
the two ways to turn them into bytes and back:

- `lab.wire.seq`: sequence numbers with wrap-safe arithmetic (mod 2**32), used everywhere;
- `lab.wire.options` and `lab.wire.segment`: TCP options and the immutable `Segment`;
- `lab.wire.frame`: Ethernet/ARP/IPv4/IPv6/ICMP/ICMPv6/ND/TCP frame values;
- `lab.wire.fast` packs and parses with `struct` (the bulk path; its IPv6 half, with extension
  headers, fragments, ICMPv6 and Neighbor Discovery, is `lab.wire.fast_ipv6`);
  `lab.wire.scapy_codec` builds and dissects with Scapy layers (the teaching path);
  `lab.wire.mixed` picks one per frame; tests prove the two byte-identical;
- `lab.wire.checksum`: the Internet checksum.

It imports nothing else from `lab`, so codecs, links, replay and the TCP core can all use it.
"""
