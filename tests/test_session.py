"""The live stack's secrets: random by default (RFC 6528, RFC 6056), reproducible on request."""

from __future__ import annotations

from lab.session import endpoint_secrets
from lab.tcp.endpoint import TcpEndpoint

SERVER = ("198.18.0.1", 21)


def first_connection(secrets: dict[str, object]) -> tuple[int, int]:
    endpoint = TcpEndpoint("198.18.0.2", **secrets)  # type: ignore[arg-type]
    conn = endpoint.connect(*SERVER, now=1_000)
    return conn.local_port, conn.iss


def test_live_stacks_draw_fresh_isn_keys_and_ports_each_time() -> None:
    runs = {first_connection(endpoint_secrets(None)) for _ in range(4)}
    assert len(runs) == 4  # four unseeded stacks: four different (port, ISS) pairs


def test_a_seed_makes_the_isn_and_the_port_reproducible() -> None:
    assert first_connection(endpoint_secrets(7)) == first_connection(endpoint_secrets(7))
    assert first_connection(endpoint_secrets(7)) != first_connection(endpoint_secrets(8))
