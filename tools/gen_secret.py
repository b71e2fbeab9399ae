"""Print one freshly generated per-stack secret on stdout.

    python tools/gen_secret.py password   # 32 characters from [A-Za-z0-9]
    python tools/gen_secret.py authkey    # base64 of 256 random bytes (corosync authkey)
    python tools/gen_secret.py tls-ca STACK
        # a per-stack CA: its private key, then its certificate (PEM)
    python tools/gen_secret.py tls-server NAME SAN... < ca.pem
        # a server certificate for NAME (SANs like IP:192.168.4.20, DNS:www.example.org)
        # signed by the CA on stdin (as tls-ca prints it): certificate, CA certificate, private key,
        # which is the PEM file haproxy's `crt` wants

Run by pulumi-command with logging off and stdout marked secret, so the
value is stored only encrypted in Pulumi state.
"""

from __future__ import annotations

import base64
import os
import secrets
import string
import subprocess
import sys
import tempfile

PASSWORD_ALPHABET = string.ascii_letters + string.digits
PASSWORD_LENGTH = 32
# corosync-keygen writes 256 bytes by default in corosync 3.
AUTHKEY_BYTES = 256


def password() -> str:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def authkey() -> str:
    return base64.b64encode(secrets.token_bytes(AUTHKEY_BYTES)).decode()


# ECDSA P-256: small and fast, and every TLS client takes it. The CA outlives
# the server certificates; a renewal is `pulumi up --replace` of the
# certificate's command (docs/cookbook.md).
CA_DAYS = 3650
SERVER_DAYS = 825
_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


def _openssl(workdir: str, *args: str) -> None:
    # Keys are written to files in a private directory, never to openssl's
    # stdout or stderr, which the caller could log.
    result = subprocess.run(["openssl", *args], cwd=workdir, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"gen_secret: openssl {args[0]} failed: {result.stderr.strip().splitlines()[-1:]}")


def _read(workdir: str, *names: str) -> str:
    return "".join(open(os.path.join(workdir, name)).read() for name in names)


def tls_ca(stack: str) -> str:
    with tempfile.TemporaryDirectory() as d:
        _openssl(d, "req", "-x509", *_EC, "-keyout", "ca.key", "-out", "ca.crt", "-days", str(CA_DAYS),
                 "-subj", f"/O=hapx/CN=hapx {stack} CA", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
        return _read(d, "ca.key", "ca.crt")


def tls_server(name: str, sans: list[str], ca_pem: str) -> str:
    if not sans or not all(san.startswith(("IP:", "DNS:")) for san in sans):
        raise SystemExit("gen_secret: tls-server needs SANs as IP:address or DNS:name")
    key_end = "-----END PRIVATE KEY-----"
    ca_key, marker, ca_cert = ca_pem.partition(key_end)
    if not marker or "BEGIN CERTIFICATE" not in ca_cert:
        raise SystemExit("gen_secret: stdin must hold the CA's private key and certificate (as tls-ca prints them)")
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "ca.key"), "w") as f:
            f.write(ca_key + marker + "\n")
        with open(os.path.join(d, "ca.crt"), "w") as f:
            f.write(ca_cert.strip() + "\n")
        with open(os.path.join(d, "ext"), "w") as f:
            f.write(f"subjectAltName={','.join(sans)}\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\n")
        _openssl(d, "req", "-new", *_EC, "-keyout", "server.key", "-out", "server.csr", "-subj", f"/O=hapx/CN={name}")
        _openssl(d, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", str(SERVER_DAYS), "-extfile", "ext", "-out", "server.crt")  # fmt: skip
        return _read(d, "server.crt", "ca.crt", "server.key")


GENERATORS = {"password": password, "authkey": authkey}


def main(argv: list[str]) -> int:
    os.umask(0o077)
    if len(argv) == 2 and argv[0] == "tls-ca":
        sys.stdout.write(tls_ca(argv[1]))
        return 0
    if len(argv) >= 3 and argv[0] == "tls-server":
        sys.stdout.write(tls_server(argv[1], argv[2:], sys.stdin.read()))
        return 0
    if len(argv) != 1 or argv[0] not in GENERATORS:
        print(f"usage: gen_secret.py {{{'|'.join(GENERATORS)}}} | tls-ca STACK | tls-server NAME SAN... < ca.pem", file=sys.stderr)
        return 2
    sys.stdout.write(GENERATORS[argv[0]]())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
