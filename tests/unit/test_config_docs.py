"""docs/configuration.md's key tables are the config models' own words (tools/config_docs.py)."""

from __future__ import annotations

import re

import pytest

from components.config import SECRET_KEYS, HapxConfig
from tools import config_docs


def test_committed_tables_match_the_models():
    committed = config_docs.DOC.read_text()
    assert config_docs.render(committed) == committed, "docs/configuration.md is out of date: run `make config-docs`"
    assert config_docs.main(["--check"]) == 0


def test_every_key_has_a_row_and_a_description():
    text = config_docs.DOC.read_text()
    for name, parts in config_docs.TABLES.items():
        for model, prefix in parts:
            for field in model.model_fields.values():
                assert field.description, f"{model.__name__}.{field.alias} has no description"
                if not config_docs._is_section(field):
                    assert f"| `{prefix}{field.alias}` |" in text, f"no row for {prefix}{field.alias} in table {name}"
    for key in SECRET_KEYS:
        assert f"| `hapx:{key}` |" in text
    # Every section object of HapxConfig has a table of its own.
    sections = [f.alias for f in HapxConfig.model_fields.values() if config_docs._is_section(f)]
    assert sorted(sections) == sorted(["nodeSize", "haproxy", "corosync", "pacemaker", "fencing", "virtualbox", "qemu"])


def test_a_changed_model_shows_as_stale_docs(monkeypatch):
    committed = config_docs.DOC.read_text()
    field = HapxConfig.model_fields["vip"]
    monkeypatch.setattr(field, "description", "A different description.")
    regenerated = config_docs.render(committed)
    assert regenerated != committed and "| `hapx:vip` | IPv4 address | required | A different description. |" in regenerated


def test_prose_around_the_tables_is_kept():
    committed = config_docs.DOC.read_text()
    outside = re.sub(r"<!-- config-table: \w+ -->\n.*?<!-- /config-table -->", "", committed, flags=re.S)
    emptied = re.sub(r"(<!-- config-table: \w+ -->\n).*?(<!-- /config-table -->)", r"\1\2", committed, flags=re.S)
    assert re.sub(r"<!-- config-table: \w+ -->\n.*?<!-- /config-table -->", "", config_docs.render(emptied), flags=re.S) == outside


def test_a_missing_marker_is_an_error():
    committed = config_docs.DOC.read_text()
    with pytest.raises(SystemExit, match="must mark each of these tables once"):
        config_docs.render(committed.replace("<!-- config-table: qemu -->", "<!-- config table: qemu -->"))
