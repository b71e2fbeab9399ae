"""Running the real Pulumi CLI from tests: the engine that `make setup`
built or found (engine/build.sh), a throwaway local file backend, a
throwaway passphrase, and stack config from a file of the test's own."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO


def engine_bin_dir() -> str:
    return subprocess.run(
        ["bash", str(REPO / "engine" / "build.sh"), "--bin-dir"], check=True, capture_output=True, text=True
    ).stdout.strip()


@dataclass
class PulumiWorkspace:
    """One backend directory and its stacks; each stack's config in its own file."""

    root: Path
    passphrase: str = "hapx-test-throwaway-passphrase"

    def __post_init__(self) -> None:
        (self.root / "state").mkdir(parents=True, exist_ok=True)
        (self.root / "home").mkdir(exist_ok=True)
        bin_dir = engine_bin_dir()
        if not os.path.exists(os.path.join(bin_dir, "pulumi-resource-command")):
            raise RuntimeError(f"the engine is not built in {bin_dir}: run `make setup`")
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "PULUMI_BACKEND_URL": f"file://{self.root / 'state'}",
            "PULUMI_HOME": str(self.root / "home"),
            "PULUMI_CONFIG_PASSPHRASE": self.passphrase,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
        }
        self.env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)

    def config_file(self, stack: str) -> Path:
        return self.root / f"Pulumi.{stack}.yaml"

    def init_stack(self, stack: str, config: dict[str, Any]) -> None:
        self.write_config(stack, config)
        self.run("stack", "init", stack, check=True)

    def write_config(self, stack: str, config: dict[str, Any]) -> None:
        self.config_file(stack).write_text(yaml.safe_dump({"config": config}, sort_keys=False))

    def run(self, *args: str, stack: str | None = None, check: bool = False, timeout: float = 1800) -> subprocess.CompletedProcess:
        cmd = ["pulumi", *args, "--non-interactive"]
        if stack is not None:
            cmd += ["--stack", stack, "--config-file", str(self.config_file(stack))]
        proc = subprocess.run(cmd, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc

    def export(self, stack: str, show_secrets: bool = False) -> dict:
        args = ["stack", "export", "--stack", stack] + (["--show-secrets"] if show_secrets else [])
        return json.loads(self.run(*args, check=True).stdout)

    def outputs(self, stack: str, show_secrets: bool = False) -> dict:
        args = ["stack", "output", "--json", "--stack", stack] + (["--show-secrets"] if show_secrets else [])
        return json.loads(self.run(*args, check=True).stdout)


def secret_plaintexts(decrypted_export: dict) -> list[str]:
    """Every value the state marks secret, decrypted (from `export --show-secrets`)."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("4dabf18193072939515e22adb298388d") == "1b47061264138c4ac30d75fd1eb44270":
                plain = value.get("plaintext", value.get("value"))
                collect(json.loads(plain) if isinstance(plain, str) and plain[:1] in '"{[' else plain)
                return
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    def collect(value: Any) -> None:
        if isinstance(value, str):
            # Short strings ("", "0") would match anywhere; they are not secrets.
            if len(value) >= 8:
                found.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                collect(v)
        elif isinstance(value, list):
            for v in value:
                collect(v)

    walk(decrypted_export)
    return found
