"""Where the clone is, and the stack configs it ships."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
# The venv's interpreter: what the lab runs inside its namespace (the probe).
PYTHON = str(REPO / ".venv" / "bin" / "python")


def stack_config(stack: str) -> dict[str, Any]:
    """Pulumi.<stack>.yaml's config section, as native YAML values."""
    return yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text())["config"]
