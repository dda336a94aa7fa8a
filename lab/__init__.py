"""lab: a raw-socket protocol lab.

A hand-built TCP/IP stack and FTP client in user space. Layers, top first (README "Layers" is
the one list; tests/test_layers.py keeps imports pointing down): `lab.cli` | `lab.notebook`,
`lab.exercises` | `lab.script` | `lab.viz` | `lab.replay` | `lab.ftp` | `lab.session` | drivers
`lab.runtime` (live) and `lab.sim` (in memory) | `lab.host` | `lab.tcp` | `lab.wire` | `lab.link` |
`lab.capture` | `lab.topology` | `lab.units`.
The protocol cores (`wire`, `tcp`, `host`, `ftp.protocol`) are sans-IO.
"""

__version__ = "0.1.0"
