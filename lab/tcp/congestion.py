"""Congestion control for one TCP sender: RFC 5681 and NewReno fast recovery (RFC 6582).

The connection owns sequence numbers, the retransmission queue and the timers; this object owns
only `cwnd`, `ssthresh`, the duplicate-ACK count and NewReno's `recover` point, and answers one
question per event: "retransmit the oldest unacknowledged segment now?". Keeping it apart makes
the arithmetic testable without a handshake, and lets a notebook plot cwnd from the same values
the connection uses. All sizes are bytes; `smss` is the sender maximum segment size actually used
on the wire (RFC 5681 2: SMSS).
"""

from __future__ import annotations

from lab.wire.seq import seq_add, seq_gt

DUP_ACK_THRESHOLD = 3  # RFC 5681 3.2: the third duplicate ACK signals a loss
INITIAL_SSTHRESH = 1 << 30  # RFC 5681 3.1: "arbitrarily high" (the peer window bounds us anyway)


def initial_window(smss: int) -> int:
    """IW of RFC 5681 3.1, equation (1)."""
    if smss > 2190:
        return 2 * smss
    if smss > 1095:
        return 3 * smss
    return 4 * smss


class NewRenoCongestion:
    """Slow start, congestion avoidance, fast retransmit and NewReno fast recovery."""

    def __init__(self, smss: int, iss: int, initial_cwnd_segments: int | None = None) -> None:
        self._initial_segments = initial_cwnd_segments
        self.smss = smss
        self.cwnd = self._initial_cwnd(smss)
        self.ssthresh = INITIAL_SSTHRESH
        # RFC 6582 3.2 step 1: "recover" starts at the initial send sequence number.
        self.recover = iss
        self.in_recovery = False
        self.dup_acks = 0
        self._timeouts_in_a_row = 0

    def _initial_cwnd(self, smss: int) -> int:
        if self._initial_segments is not None:
            return max(1, self._initial_segments) * smss
        return initial_window(smss)

    def set_smss(self, smss: int, syn_was_retransmitted: bool = False) -> None:
        """Called once the handshake fixes the segment size; restarts the initial window.

        RFC 5681 3.1: if the SYN or SYN/ACK was lost, the initial window MUST be one segment.
        """
        self.smss = smss
        self.cwnd = smss if syn_was_retransmitted else self._initial_cwnd(smss)

    def restart_after_idle(self) -> bool:
        """RFC 5681 4.1: after an idle period longer than the RTO, cwnd <- RW = min(IW, cwnd).

        ssthresh is kept, so slow start climbs back quickly to where the path was. Returns
        True when cwnd actually shrank.
        """
        restart = min(self._initial_cwnd(self.smss), self.cwnd)
        shrank = restart < self.cwnd
        self.cwnd = restart
        return shrank

    def on_new_ack(self, ack: int, acked: int, flight_after: int) -> bool:
        """New data acknowledged (`acked` bytes; `flight_after` still outstanding).

        Returns True when the caller must retransmit the first unacknowledged segment: a NewReno
        partial ACK (RFC 6582 3.2 step 5).
        """
        self.dup_acks = 0
        self._timeouts_in_a_row = 0
        if self.in_recovery:
            if seq_gt(ack, self.recover):
                # RFC 6582 3.2 step 3 (full acknowledgment): deflate, option (1).
                self.in_recovery = False
                self.cwnd = min(self.ssthresh, max(flight_after, self.smss) + self.smss)
                return False
            # RFC 6582 3.2 step 5 (partial acknowledgment): deflate by the amount acknowledged,
            # add back one SMSS if at least one SMSS was acknowledged, retransmit the next hole.
            self.cwnd = max(self.cwnd - acked, self.smss)
            if acked >= self.smss:
                self.cwnd += self.smss
            return True
        if self.cwnd < self.ssthresh:
            # RFC 5681 3.1 equation (2): slow start grows by at most one SMSS per ACK.
            self.cwnd += min(acked, self.smss)
        else:
            # RFC 5681 3.1 equation (3): congestion avoidance, about one SMSS per RTT.
            self.cwnd += max(1, self.smss * self.smss // self.cwnd)
        return False

    def on_duplicate_ack(self, ack: int, flight: int, snd_nxt: int) -> bool:
        """A duplicate ACK (RFC 5681 2 definition, checked by the caller).

        Returns True on the third one when fast retransmit must happen now.
        """
        self.dup_acks += 1
        if self.in_recovery:
            # RFC 6582 3.2 step 4: inflate by one SMSS per further duplicate ACK.
            self.cwnd += self.smss
            return False
        if self.dup_acks != DUP_ACK_THRESHOLD:
            return False
        return self.enter_recovery(ack, flight, snd_nxt, DUP_ACK_THRESHOLD * self.smss)

    def enter_recovery(self, ack: int, flight: int, snd_nxt: int, left_network: int) -> bool:
        """Start fast recovery: on the third duplicate ACK, or earlier when the SACK scoreboard
        already shows the first unacknowledged segment lost (RFC 6675 5, RFC 8985 7.4).

        `left_network` is what the evidence says has left the network (three segments for three
        duplicates, the SACKed bytes otherwise); NewReno inflates the window by it. Returns True
        when the caller must retransmit the first unacknowledged segment now.
        """
        # RFC 6582 3.2 step 2: only if the ACK covers more than "recover", so that the duplicate
        # ACKs caused by our own go-back retransmissions do not start a second recovery.
        if self.in_recovery or not seq_gt(ack, self.recover):
            return False
        # RFC 5681 3.2 steps 2-3 / RFC 6582 3.2 step 2.
        self.ssthresh = max(flight // 2, 2 * self.smss)
        self.recover = seq_add(snd_nxt, -1)  # the highest sequence number transmitted
        self.cwnd = self.ssthresh + left_network
        self.in_recovery = True
        return True

    def on_retransmit_timeout(self, flight: int, snd_nxt: int) -> None:
        """The retransmission timer expired (RFC 5681 3.1 equation (4), RFC 6582 4)."""
        if self._timeouts_in_a_row == 0:
            # Equation (4) applies to the first timeout of a segment; later backoffs keep it.
            self.ssthresh = max(flight // 2, 2 * self.smss)
        self._timeouts_in_a_row += 1
        self.cwnd = self.smss  # LW, the loss window
        self.recover = seq_add(snd_nxt, -1)
        self.in_recovery = False
        self.dup_acks = 0
