"""Print a TCP port that is free on this host right now (the rendezvous port of a job)."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    print(free_port())
