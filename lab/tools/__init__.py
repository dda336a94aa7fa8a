"""Small command-line tools on the hand-built stack: `lab ping` and `lab connect`."""
