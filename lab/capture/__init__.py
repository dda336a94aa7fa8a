"""Capture files (pcap, pcapng) read as a stream of packets, damage reported rather than raised."""

from lab.capture.reader import CapturedPacket, CaptureProblem, CaptureReader, read_packets

__all__ = ["CaptureProblem", "CaptureReader", "CapturedPacket", "read_packets"]
