"""Write a cloud-init NoCloud seed ISO (volume label `cidata`) with pycdlib.

Reads {"user-data": ..., "meta-data": ..., "network-config": ...} as JSON on
stdin, so secrets never appear on a command line, and writes the ISO
atomically (temp file + rename) with mode 0600, because user-data holds keys.
Pure Python: no genisoimage/xorriso needed on macOS or Windows hosts.

    python tools/seed_iso.py --out PATH < payload.json
    python tools/seed_iso.py --delete PATH
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile

import pycdlib

SEED_FILES = ("meta-data", "user-data", "network-config")


def _iso9660_name(name: str) -> str:
    # ISO 9660 level 1 names are 8.3 upper case; cloud-init reads the Joliet
    # and Rock Ridge names, which keep the real file names.
    stem = name.replace("-", "").upper()[:8]
    return f"/{stem}.;1"


def build_seed_iso(files: dict[str, str]) -> bytes:
    missing = [name for name in ("meta-data", "user-data") if name not in files]
    if missing:
        raise ValueError(f"seed payload lacks {', '.join(missing)}")
    unknown = sorted(set(files) - set(SEED_FILES))
    if unknown:
        raise ValueError(f"seed payload has unexpected files: {', '.join(unknown)}")
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata")
    for name in SEED_FILES:
        if name not in files:
            continue
        data = files[name].encode()
        iso.add_fp(
            io.BytesIO(data),
            len(data),
            _iso9660_name(name),
            rr_name=name,
            joliet_path=f"/{name}",
        )
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def write_atomically(path: str, data: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".seed-", suffix=".iso", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--out", help="write the seed ISO here (payload JSON on stdin)")
    group.add_argument("--delete", help="remove this seed ISO if it exists")
    args = parser.parse_args(argv)
    if args.delete:
        try:
            os.unlink(args.delete)
        except FileNotFoundError:
            pass
        # Leave no empty seed directory behind after a destroy.
        try:
            os.rmdir(os.path.dirname(os.path.abspath(args.delete)))
        except OSError:
            pass
        return 0
    try:
        files = json.load(sys.stdin)
    except json.JSONDecodeError as exc:
        print(f"seed_iso: stdin is not the seed payload JSON: {exc.msg} at line {exc.lineno}", file=sys.stderr)
        return 2
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        print("seed_iso: payload must map file names to strings", file=sys.stderr)
        return 2
    try:
        data = build_seed_iso(files)
    except ValueError as exc:
        print(f"seed_iso: {exc}", file=sys.stderr)
        return 2
    write_atomically(args.out, data)
    # Print only the path and size: the content is secret.
    print(f"seed={args.out} bytes={len(data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
