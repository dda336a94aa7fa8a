"""`lab script`: a packetdrill-style script language, run against the lab's TCP and the kernel.

`parser` turns script text into typed events (sans-IO, no TCP knowledge beyond values);
`lab_runner` plays them against `lab.tcp` in memory on virtual time; `kernel_runner` plays them
against the Linux kernel through a TUN device inside a lab namespace;
`run` plays a script against either.
The command line is `lab.cli.script`.
"""
