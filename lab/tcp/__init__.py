"""The TCP core, sans-IO: sequence arithmetic, segments, reassembly, connections (RFC 9293)."""
