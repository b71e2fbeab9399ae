"""Write the key tables of docs/configuration.md from the config models.

    python -m tools.config_docs            rewrite the tables in place (`make config-docs`)
    python -m tools.config_docs --check    exit 1 if the committed tables differ from the models

The models in components/config.py are the one source of each key's type,
default and description. Each table sits between
`<!-- config-table: NAME -->` and `<!-- /config-table -->`; the prose around
the tables is left alone.
"""

from __future__ import annotations

import argparse
import re
import sys
from enum import Enum
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any, get_args

from annotated_types import Ge, Le
from pydantic import BaseModel, StringConstraints
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from components import config  # noqa: E402

DOC = REPO / "docs" / "configuration.md"
TABLE = re.compile(r"(<!-- config-table: (\w+) -->\n)(.*?)(<!-- /config-table -->)", re.S)

# The secret keys are read through pulumi.Config.get_secret, not parsed into
# the models, so their rows are described here.
SECRET_ROWS = {
    "statsPassword": "Stats page password.",
    "corosyncAuthkey": "Base64 of the corosync authkey (256 random bytes when generated).",
    "tlsCertificates": "An object: service name to PEM (certificate chain, then private key), for services with "
    "`terminateTls`; a service it does not name gets a generated certificate.",
}

# table name -> (model, key prefix) parts; a model's section-object fields get tables of their own.
TABLES: dict[str, list[tuple[type[BaseModel], str]]] = {
    "cluster": [(config.HapxConfig, "hapx:"), (config.NodeSizeConfig, "hapx:nodeSize.")],
    "nodes": [(config.NodeConfig, "")],
    "backends": [(config.BackendConfig, "")],
    "services": [(config.ServiceConfig, "")],
    "service_backends": [(config.ServiceBackendConfig, "")],
    "service_check": [(config.HealthCheckConfig, "check.")],
    "haproxy": [(config.HaproxyConfig, "")],
    "corosync": [(config.CorosyncConfig, "")],
    "pacemaker": [(config.PacemakerConfig, "")],
    "fencing": [(config.FencingConfig, "")],
    "virtualbox": [(config.VirtualBoxConfig, "")],
    "qemu": [(config.QemuConfig, "")],
}


def _metadata(kind: Any) -> list:
    return [*getattr(kind, "__metadata__", ()), *(m for arg in get_args(kind) for m in _metadata(arg))]


def _plain(kind: Any) -> Any:
    """The type inside Optional[...] and Annotated[...]."""
    while True:
        if hasattr(kind, "__metadata__"):
            kind = kind.__origin__
        elif type(None) in get_args(kind):
            kind = next(arg for arg in get_args(kind) if arg is not type(None))
        else:
            return kind


def _is_section(field: FieldInfo) -> bool:
    """A field holding one nested object (hapx:haproxy...), documented in its own table."""
    kind = _plain(field.annotation)
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def type_text(annotation: Any, metadata: list) -> str:
    kind = _plain(annotation)
    found = metadata + _metadata(annotation)
    hint = next((m for m in found if isinstance(m, config._Hint)), None)
    what = re.sub(r"^(a|an) ", "", hint.what) if hint else ""
    if get_args(kind) and kind.__origin__ is tuple:
        item = get_args(kind)[0]
        inner = "objects" if isinstance(_plain(item), type) and issubclass(_plain(item), BaseModel) else type_text(item, [])
        return f"list of {inner}"
    if isinstance(kind, type) and issubclass(kind, Enum):
        return " \\| ".join(f"`{choice.value}`" for choice in kind)
    if kind is bool:
        return "`true` \\| `false`"
    if kind is int:
        lo = next(m.ge for m in found if isinstance(m, Ge))
        hi = next(m.le for m in found if isinstance(m, Le))
        return f"{what}, {lo}–{hi}" if what != "integer" else f"{lo}–{hi}"
    if kind in (IPv4Address, IPv4Network, IPv4Interface):
        return {IPv4Address: "IPv4 address", IPv4Network: "IPv4 CIDR", IPv4Interface: "address/prefix"}[kind]
    pattern = next((m.pattern for m in found if isinstance(m, StringConstraints)), None)
    if pattern and pattern != r"\S" and hint:
        return "string: " + re.sub(r"^use ", "", hint.fix)
    return what if what and what != "non-empty string" else "string"


def default_text(field: FieldInfo) -> str:
    shown = (field.json_schema_extra or {}).get("shown")
    if shown:
        return shown
    value = field.default
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "unset"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        value = str(value).lower()
    if value == ():
        value = "[]"
    return f"`{value}`"


def table(name: str) -> str:
    rows = ["| Key | Type | Default | What it affects |", "|---|---|---|---|"]
    if name == "secrets":
        for key in config.SECRET_KEYS:
            rows.append(f"| `hapx:{key}` | string, `--secret` only | generated per stack | {SECRET_ROWS[key]} |")
        return "\n".join(rows) + "\n"
    for model, prefix in TABLES[name]:
        for field in model.model_fields.values():
            if _is_section(field):
                continue
            kind, default = type_text(field.annotation, list(field.metadata)), default_text(field)
            rows.append(f"| `{prefix}{field.alias}` | {kind} | {default} | {field.description} |")
    return "\n".join(rows) + "\n"


def render(text: str) -> str:
    """text with every marked table rewritten from the models."""
    names = [match.group(2) for match in TABLE.finditer(text)]
    wanted = [*TABLES, "secrets"]
    if sorted(names) != sorted(wanted):
        raise SystemExit(f"config_docs: {DOC.name} must mark each of these tables once: {', '.join(wanted)}; it marks {names}")
    return TABLE.sub(lambda m: m.group(1) + table(m.group(2)) + m.group(4), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write docs/configuration.md's key tables from the config models.")
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if the tables are out of date")
    args = parser.parse_args(argv)
    current = DOC.read_text()
    wanted = render(current)
    if args.check:
        if wanted != current:
            print(f"config_docs: {DOC.relative_to(REPO)} is out of date; run `make config-docs`", file=sys.stderr)
            return 1
        return 0
    if wanted != current:
        DOC.write_text(wanted)
        print(f"config_docs: rewrote the tables in {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
