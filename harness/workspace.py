"""Running the real Pulumi CLI for the tests and the benchmark: the engine
that `make setup` built or found (engine/build.sh), a throwaway local file
backend, a throwaway passphrase, and stack config from a file of the
caller's own."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.paths import REPO


def engine_bin_dir() -> str:
    return subprocess.run(
        ["bash", str(REPO / "engine" / "build.sh"), "--bin-dir"], check=True, capture_output=True, text=True
    ).stdout.strip()


@dataclass
class PulumiWorkspace:
    """One backend directory and its stacks; each stack's config in its own file."""

    root: Path
    passphrase: str = "hapx-test-throwaway-passphrase"
    # Runs every pulumi command under this (e.g. `ip netns exec NS`).
    prefix: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        (self.root / "state").mkdir(parents=True, exist_ok=True)
        (self.root / "home").mkdir(exist_ok=True)
        bin_dir = engine_bin_dir()
        if not os.path.exists(os.path.join(bin_dir, "pulumi-resource-command")):
            raise RuntimeError(f"the engine is not built in {bin_dir}: run `make setup`")
        # The drift check's dynamic provider needs its launcher (engine/build.sh installs it).
        if not (os.path.exists(os.path.join(bin_dir, "pulumi-resource-pulumi-python")) or shutil.which("pulumi-resource-pulumi-python")):
            raise RuntimeError(f"no pulumi-resource-pulumi-python in {bin_dir} nor on PATH: run `make setup`")
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
        # `stack init` writes the passphrase salt into Pulumi.<stack>.yaml
        # next to the project file it finds; run it beside a copy of the
        # project file, so that lands in the test's own config file and the
        # clone stays clean.
        shutil.copy(REPO / "Pulumi.yaml", self.root / "Pulumi.yaml")
        self.run("stack", "init", stack, check=True, cwd=self.root)
        self.write_config(stack, config)

    def write_config(self, stack: str, config: dict[str, Any]) -> None:
        """Set the stack's config, keeping what Pulumi keeps there (the salt)."""
        path = self.config_file(stack)
        current = (yaml.safe_load(path.read_text()) if path.exists() else None) or {}
        current["config"] = config
        path.write_text(yaml.safe_dump(current, sort_keys=False))

    def run(
        self, *args: str, stack: str | None = None, check: bool = False, timeout: float = 1800, cwd: Path = REPO
    ) -> subprocess.CompletedProcess:
        cmd = [*self.prefix, "pulumi", *args, "--non-interactive"]
        if stack is not None:
            cmd += ["--stack", stack, "--config-file", str(self.config_file(stack))]
        proc = subprocess.run(cmd, cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc

    def export(self, stack: str, show_secrets: bool = False) -> dict:
        args = ["stack", "export", "--stack", stack] + (["--show-secrets"] if show_secrets else [])
        return json.loads(self.run(*args, check=True).stdout)

    def outputs(self, stack: str, show_secrets: bool = False) -> dict:
        args = ["stack", "output", "--json", "--stack", stack] + (["--show-secrets"] if show_secrets else [])
        return json.loads(self.run(*args, check=True).stdout)


def generated_secrets(decrypted_export: dict) -> list[str]:
    """The secrets hapx generates, read from `stack export --show-secrets`:
    the output of each generator command under the StackSecrets component
    (password, authkey; for key pairs and TLS PEMs, each private key and each of its lines,
    which must not leak one by one either)."""
    found: list[str] = []
    for resource in decrypted_export["deployment"].get("resources") or []:
        if "$hapx:index:StackSecrets$" not in resource["urn"]:
            continue
        stdout = _plain((resource.get("outputs") or {}).get("stdout"))
        if not stdout:
            continue
        if "PRIVATE KEY" in stdout:
            # Each private key block; certificates beside them (a TLS PEM file) are public.
            for block in re.findall(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", stdout, re.S):
                found.append(block)
                found += [line for line in block.splitlines()[1:-1] if len(line) >= 16]
        else:
            found.append(stdout.strip())
    return found


def _plain(value: Any) -> Any:
    """A value from a decrypted export, with the secret wrapper taken off."""
    if isinstance(value, dict) and value.get("4dabf18193072939515e22adb298388d") == "1b47061264138c4ac30d75fd1eb44270":
        plain = value.get("plaintext", value.get("value"))
        return json.loads(plain) if isinstance(plain, str) and plain[:1] == '"' else plain
    return value
