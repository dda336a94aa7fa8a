"""Initial sequence numbers per RFC 6528: ISN = M + F(localip, localport, remoteip, remoteport,
secretkey).

M is a clock ticking every 4 microseconds (RFC 9293 3.4.1), so successive incarnations of the same
4-tuple get increasing ISNs and old duplicates fall behind the new sequence space. F is a keyed
hash of the 4-tuple, so an off-path attacker who does not know the key cannot predict the ISN of
a connection it cannot see (the blind-spoofing attack RFC 6528 addresses). RFC 6528 suggests MD5;
BLAKE2b has a keyed mode built into hashlib and is not broken.
"""

from __future__ import annotations

import hashlib
import ipaddress

_KEY_MAX = 64  # BLAKE2b's key limit; longer keys are hashed down first


class IsnGenerator:
    """Deterministic for a given key and time, which makes test runs reproducible."""

    def __init__(self, key: bytes) -> None:
        if len(key) > _KEY_MAX:
            key = hashlib.blake2b(key).digest()
        self._key = key

    def offset(self, local_ip: str, local_port: int, remote_ip: str, remote_port: int) -> int:
        """F of RFC 6528: the 32-bit keyed hash of the 4-tuple, without the clock."""
        tuple_bytes = (
            ipaddress.ip_address(local_ip).packed
            + local_port.to_bytes(2, "big")
            + ipaddress.ip_address(remote_ip).packed
            + remote_port.to_bytes(2, "big")
        )
        digest = hashlib.blake2b(tuple_bytes, key=self._key, digest_size=4).digest()
        return int.from_bytes(digest, "big")

    def isn(
        self, local_ip: str, local_port: int, remote_ip: str, remote_port: int, now: int
    ) -> int:
        """The ISN for a connection opened at `now` (microseconds), modulo 2**32."""
        m = now // 4
        return (m + self.offset(local_ip, local_port, remote_ip, remote_port)) & 0xFFFFFFFF


class FixedIsn(IsnGenerator):
    """Always the same ISN: lets tests put a connection's sequence space next to the 2**32 wrap."""

    def __init__(self, value: int) -> None:
        super().__init__(b"fixed")
        self.value = value & 0xFFFFFFFF

    def isn(
        self, local_ip: str, local_port: int, remote_ip: str, remote_port: int, now: int
    ) -> int:
        return self.value
