"""The TCP core, sans-IO (RFC 9293): connections (`connection`), their typed trace events
(`events`), reassembly, retransmission timing, congestion control, ISNs and demultiplexing
(`endpoint`). Sequence arithmetic and the `Segment` value live one layer down, in `lab.wire`."""
