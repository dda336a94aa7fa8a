"""Exercise `forensics`: recover a file, and name what is missing, from a damaged capture.

Complete `recover`. The checker writes a capture of an FTP download (`forensics.pcapng` in the
work folder) in which some data segments were never captured, some appear twice or out of order,
and one arrived damaged (bad checksum) and was retransmitted. It calls `recover` on it.
"""

from __future__ import annotations


def recover(capture: str) -> tuple[str, bytes, list[tuple[int, int]]]:
    """Return (file name, the file's bytes, missing byte ranges).

    - the file name is the argument of the RETR command;
    - the bytes are the whole file, as long as the file is; bytes you could not recover may hold
      anything (zeros, say);
    - the missing ranges are [start, end) offsets in the file, in order, merged (no two touch).
    """
    # TODO: read the packets (lab.capture.reader.CaptureReader, or scapy.all.rdpcap);
    #       find the control connection, the RETR command and the data connection (PASV reply);
    #       reassemble the server's data stream by sequence number, relative to its SYN;
    #       skip segments whose checksum is wrong; list what no packet covered.
    raise NotImplementedError("recover")
