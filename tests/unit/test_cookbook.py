"""docs/cookbook.md's stacks parse as written: each YAML block with hapx: keys, on the dev stack's cluster keys."""

from __future__ import annotations

import re

import pytest
import yaml

from components.config import parse_config
from harness.paths import REPO

BLOCKS = [b for b in re.findall(r"```yaml\n(.*?)```", (REPO / "docs" / "cookbook.md").read_text(), re.S) if "hapx:" in b]


def test_the_cookbook_has_its_stacks():
    assert len(BLOCKS) == 4  # the reference, as services, the web tier, TCP and HTTP together


@pytest.mark.parametrize("block", BLOCKS, ids=["reference", "reference-as-services", "web-tier", "tcp-and-http"])
def test_each_stack_parses(dev_raw, block):
    keys = yaml.safe_load(block)
    raw = {**dev_raw, **keys}
    if "hapx:backends" not in keys and "hapx:services" in keys:
        del raw["hapx:backends"]
        raw["hapx:haproxy"] = {k: v for k, v in {**dev_raw["hapx:haproxy"], **keys.get("hapx:haproxy", {})}.items() if k != "frontendPort"}
    cfg = parse_config(raw)
    assert cfg.all_services
