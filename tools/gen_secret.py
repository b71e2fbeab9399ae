"""Print one freshly generated per-stack secret on stdout.

    python tools/gen_secret.py password   # 32 characters from [A-Za-z0-9]
    python tools/gen_secret.py authkey    # base64 of 256 random bytes (corosync authkey)

Run by pulumi-command with logging off and stdout marked secret, so the
value is stored only encrypted in Pulumi state.
"""

from __future__ import annotations

import base64
import secrets
import string
import sys

PASSWORD_ALPHABET = string.ascii_letters + string.digits
PASSWORD_LENGTH = 32
# corosync-keygen writes 256 bytes by default in corosync 3.
AUTHKEY_BYTES = 256


def password() -> str:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def authkey() -> str:
    return base64.b64encode(secrets.token_bytes(AUTHKEY_BYTES)).decode()


GENERATORS = {"password": password, "authkey": authkey}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in GENERATORS:
        print(f"usage: gen_secret.py {{{'|'.join(GENERATORS)}}}", file=sys.stderr)
        return 2
    sys.stdout.write(GENERATORS[argv[0]]())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
