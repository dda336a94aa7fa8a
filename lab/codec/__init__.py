"""Codecs: frames as bytes <-> frames as values.

`lab.codec.fast` packs and parses with `struct` (the bulk path); `lab.codec.scapy_codec` builds
and dissects with Scapy layers (the teaching path). Tests prove the two byte-identical.
"""
