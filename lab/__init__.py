"""lab: a raw-socket protocol lab.

A hand-built TCP/IP stack and FTP client in user space, layered as described in DESIGN: sans-IO
protocol cores (`lab.tcp`, later `lab.ftp`) driven by links, a runtime and the command line.
"""

__version__ = "0.1.0"
