"""Retransmission timeout from round-trip samples (RFC 6298), in integer microseconds.

The estimator is deliberately dumb about *which* samples are valid: Karn's rule (never time a
retransmitted segment) and timestamp-based sampling (RFC 7323 4) are the connection's business.
Here we only turn valid samples into SRTT, RTTVAR and RTO, and apply the exponential back-off.

Integer arithmetic: RFC 6298 writes the filter with alpha = 1/8 and beta = 1/4 on real numbers.
We keep SRTT and RTTVAR as integers in units of 1/1024 microsecond (fixed point, as Linux keeps
`srtt_us << 3`) and report them rounded to whole microseconds. Rounding every update to whole
microseconds instead would leave fixed points (RTTVAR stuck at 2 us on a perfectly steady path,
SRTT stuck up to 7 us away from a constant RTT); the extra bits push those errors below 1 us.
Integers keep results reproducible across platforms, unlike floats.
"""

from __future__ import annotations

CLOCK_GRANULARITY = 1_000  # G of RFC 6298 2: our clock ticks in microseconds; 1 ms is honest
K = 4  # RFC 6298 2: RTO = SRTT + max(G, K * RTTVAR)
_SCALE = 1 << 10  # fixed-point fraction bits of SRTT and RTTVAR


def _div_round(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded to the nearest integer, halves up (both non-negative)."""
    return (2 * numerator + denominator) // (2 * denominator)


class RttEstimator:
    """SRTT / RTTVAR / RTO of RFC 6298 with min/max bounds and back-off.

    The estimator's own `min_rto` default is Linux's 200 ms floor; `TcpConfig` passes RFC 6298's
    1 s (2.4) instead, because a bare 200 ms floor fires just before a 200 ms delayed ACK. Tail
    loss probes (RFC 8985) and SACK recovery keep most losses from waiting for the floor.
    """

    def __init__(
        self, initial_rto: int = 1_000_000, min_rto: int = 200_000, max_rto: int = 60_000_000
    ) -> None:
        if not 0 < min_rto <= max_rto:
            raise ValueError(f"need 0 < min_rto <= max_rto, got {min_rto} and {max_rto}")
        if initial_rto <= 0:
            raise ValueError(f"initial_rto must be positive, got {initial_rto}")
        self._min_rto = min_rto
        self._max_rto = max_rto
        self._srtt: int | None = None  # scaled by _SCALE
        self._rttvar: int | None = None  # scaled by _SCALE
        self._base_rto = self._clamp(initial_rto)  # RFC 6298 2.1: before any sample
        self._backoff = 0  # how many times the timer was doubled since the last valid sample
        self.samples = 0

    def _clamp(self, rto: int) -> int:
        return max(self._min_rto, min(self._max_rto, rto))

    @property
    def srtt(self) -> int | None:
        """Smoothed round-trip time (us), or None before the first sample."""
        return None if self._srtt is None else _div_round(self._srtt, _SCALE)

    @property
    def rttvar(self) -> int | None:
        """Round-trip time variation (us), or None before the first sample."""
        return None if self._rttvar is None else _div_round(self._rttvar, _SCALE)

    @property
    def base_rto(self) -> int:
        """The RTO computed from the samples, without back-off."""
        return self._base_rto

    @property
    def backoff(self) -> int:
        """Number of doublings currently applied (RFC 6298 5.5)."""
        return self._backoff

    @property
    def rto(self) -> int:
        """The timeout to arm now: the computed RTO doubled per back-off, at most `max_rto`."""
        return min(self._max_rto, self._base_rto << self._backoff)

    def sample(self, rtt: int) -> None:
        """Fold in one valid measurement (RFC 6298 2.2 and 2.3).

        A valid sample also ends any back-off: Karn's algorithm keeps the backed-off timer only
        until an ACK for a segment that was not retransmitted gives a fresh estimate.
        """
        if rtt < 0:
            raise ValueError(f"an RTT cannot be negative: {rtt}")
        r = rtt * _SCALE
        if self._srtt is None or self._rttvar is None:
            # 2.2: SRTT <- R, RTTVAR <- R/2
            self._srtt = r
            self._rttvar = r // 2
        else:
            # 2.3: RTTVAR first (it uses the old SRTT), beta = 1/4, alpha = 1/8
            self._rttvar = _div_round(3 * self._rttvar + abs(self._srtt - r), 4)
            self._srtt = _div_round(7 * self._srtt + r, 8)
        rto = self._srtt + max(CLOCK_GRANULARITY * _SCALE, K * self._rttvar)
        self._base_rto = self._clamp(_div_round(rto, _SCALE))
        self._backoff = 0
        self.samples += 1

    def back_off(self) -> None:
        """RFC 6298 5.5: the timer expired, so RTO <- RTO * 2, never beyond `max_rto`."""
        if self.rto < self._max_rto:
            self._backoff += 1

    def restart(self, rto: int) -> None:
        """Use `rto` as the computed RTO, with no back-off, until the first valid sample.

        RFC 6298 5.7: after a lost SYN the connection starts sending data with a 3 s RTO
        instead of the backed-off handshake timer or the 1 s initial one.
        """
        self._base_rto = self._clamp(rto)
        self._backoff = 0

    def reset_backoff(self) -> None:
        """New data was acknowledged: go back to the RTO the samples give."""
        self._backoff = 0
