"""A stand-in backend for the QEMU lab: answers every TCP connection with a
one-line HTTP response naming itself, so a client going through the VIP sees
which backend HAProxy picked.

    python tools/lab_backend.py --name kube-mast01 --listen 192.168.4.11:6443 \
        [--unhealthy-file FILE] [--tls-cert PEM] [--pidfile FILE --daemon]

--unhealthy-file: while FILE exists, answer 503 (an HTTP health check fails).
--tls-cert: speak TLS with this certificate and key (one PEM file).

It runs inside the lab's network namespace (lab-backends.sh starts it there)
and only ever listens; it never connects anywhere.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import socketserver
import ssl
import sys

READ_TIMEOUT_S = 2.0


class StandInHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.settimeout(READ_TIMEOUT_S)
        if self.server.tls is not None:
            try:
                conn = self.server.tls.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError):
                return  # a TLS health check may hang up after the handshake
        try:
            # Health checks connect and close without sending; clients send a
            # request line. Either way, answer once and close.
            conn.recv(4096)
        except (socket.timeout, OSError):
            pass
        # The caller's address says which haproxy node relayed the request,
        # so a client can tell when the VIP moved to the other node.
        body = f"{self.server.backend_name} via {self.client_address[0]}\n".encode()
        unhealthy = self.server.unhealthy_file and os.path.exists(self.server.unhealthy_file)
        status = b"503 Service Unavailable" if unhealthy else b"200 OK"
        response = b"HTTP/1.0 " + status + b"\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (
            len(body),
            body,
        )
        try:
            conn.sendall(response)
        except OSError:
            pass


class StandInServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], backend_name: str, unhealthy_file: str | None, tls_cert: str | None):
        super().__init__(address, StandInHandler)
        self.backend_name = backend_name
        self.unhealthy_file = unhealthy_file
        self.tls: ssl.SSLContext | None = None
        if tls_cert:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(tls_cert)


def parse_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    return host, int(port)


def daemonize(pidfile: str) -> None:
    """Detach from the starting shell (Pulumi waits for its command to end)."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    with open(pidfile, "w") as f:
        f.write(f"{os.getpid()}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--listen", required=True, type=parse_listen)
    parser.add_argument("--unhealthy-file")
    parser.add_argument("--tls-cert")
    parser.add_argument("--pidfile")
    parser.add_argument("--daemon", action="store_true")
    args = parser.parse_args(argv)

    # Bind before detaching, so a bad address fails the starting command.
    server = StandInServer(args.listen, args.name, args.unhealthy_file, args.tls_cert)
    if args.daemon:
        if not args.pidfile:
            parser.error("--daemon needs --pidfile")
        daemonize(args.pidfile)
    elif args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
