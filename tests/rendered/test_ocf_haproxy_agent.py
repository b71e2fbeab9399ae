"""hapx's haproxy resource agent (templates/node/ocf-haproxy) on this host.

The agent runs against a real haproxy on loopback, started from a rendered
haproxy.cfg, with no OCF shell library in reach (it needs none: OCF_ROOT
points at an empty directory). This host
has no systemd, so `systemctl` is a stand-in that reports the unit state a
test sets; on the nodes the e2e tests run the agent under real systemd.
"""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.paths import REPO

from .conftest import require_tool, run

AGENT = REPO / "templates" / "node" / "ocf-haproxy"
OCF_SUCCESS, OCF_ERR_GENERIC, OCF_NOT_RUNNING = 0, 1, 7
HEALTH_PORT = 39731  # loopback only


@pytest.fixture
def agent_env(tmp_path) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    state = tmp_path / "unit-state"
    state.write_text("active\n")
    systemctl = bin_dir / "systemctl"
    # is-active prints the state the test chose; anything else succeeds.
    systemctl.write_text(f'#!/bin/sh\nif [ "$1" = is-active ]; then cat {state}; [ "$(cat {state})" = active ]; fi\n')
    systemctl.chmod(0o755)
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        "global\n  daemon\n"
        "defaults\n  mode http\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n"
        f"listen stats\n  bind 127.0.0.1:{HEALTH_PORT}\n  monitor-uri /hapx-health\n  stats enable\n  stats uri /\n"
    )
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "OCF_ROOT": str(tmp_path / "no-ocf-root"),
        "OCF_RESKEY_config": str(config),
        "OCF_RESKEY_check_url": f"http://127.0.0.1:{HEALTH_PORT}/hapx-health",
        "OCF_RESKEY_check_timeout": "1",
        "OCF_RESKEY_restart_grace": "2",
        "HAPX_TEST_STATE": str(state),
        "HAPX_SYSTEMD_RUNTIME_DIR": str(tmp_path / "run-systemd"),
    }


@pytest.fixture
def haproxy(agent_env, tmp_path):
    """A real haproxy serving the monitor-uri; killed by its pid afterwards."""
    pidfile = tmp_path / "haproxy.pid"
    started = run([require_tool("haproxy"), "-f", agent_env["OCF_RESKEY_config"], "-p", str(pidfile)])
    assert started.returncode == 0, started.stderr
    pid = int(pidfile.read_text().split()[0])
    try:
        yield pid
    finally:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass


def agent(action: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(AGENT), action], env={**env, "__OCF_ACTION": action}, capture_output=True, text=True, timeout=60)


def test_meta_data_is_valid_ocf_xml(agent_env):
    result = agent("meta-data", agent_env)
    assert result.returncode == OCF_SUCCESS
    root = ET.fromstring(result.stdout)
    assert root.tag == "resource-agent" and root.get("name") == "haproxy"
    params = {p.get("name") for p in root.iter("parameter")}
    assert {"unit", "config", "check_url", "check_timeout", "restart_grace"} <= params
    actions = {a.get("name") for a in root.iter("action")}
    assert {"start", "stop", "monitor", "validate-all", "meta-data"} <= actions


def test_monitor_passes_only_while_haproxy_answers(agent_env, haproxy):
    assert agent("monitor", agent_env).returncode == OCF_SUCCESS
    # The process exists but does not answer (a hung worker): that is a failure.
    os.kill(haproxy, signal.SIGSTOP)
    try:
        hung = agent("monitor", agent_env)
    finally:
        os.kill(haproxy, signal.SIGCONT)
    assert hung.returncode == OCF_ERR_GENERIC, hung.stdout + hung.stderr
    assert "(active) does not answer" in hung.stderr
    assert agent("monitor", agent_env).returncode == OCF_SUCCESS


def test_monitor_waits_out_a_restart_that_is_already_under_way(agent_env, haproxy):
    # The monitor's first request fails (haproxy just died) but haproxy answers
    # again within the grace: no failure for Pacemaker to recover from.
    os.kill(haproxy, signal.SIGSTOP)
    monitor = subprocess.Popen(["bash", str(AGENT), "monitor"], env={**agent_env, "__OCF_ACTION": "monitor"}, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # past the first request's 1 s timeout
    os.kill(haproxy, signal.SIGCONT)
    _, stderr = monitor.communicate(timeout=30)
    assert monitor.returncode == OCF_SUCCESS, stderr


def test_monitor_waits_for_a_systemd_restart(agent_env, haproxy):
    state = Path(agent_env["HAPX_TEST_STATE"])
    state.write_text("activating\n")
    # Serving again: the grace wait ends at once.
    started = time.monotonic()
    assert agent("monitor", agent_env).returncode == OCF_SUCCESS
    assert time.monotonic() - started < 2
    # Never serves again within the grace: failure, after about the grace.
    os.kill(haproxy, signal.SIGSTOP)
    try:
        stuck = agent("monitor", agent_env)
    finally:
        os.kill(haproxy, signal.SIGCONT)
    assert stuck.returncode == OCF_ERR_GENERIC
    assert "(activating) does not answer" in stuck.stderr and "within 2s" in stuck.stderr


def test_stopped_unit_is_not_running_and_validate_needs_the_config(agent_env):
    Path(agent_env["HAPX_TEST_STATE"]).write_text("inactive\n")
    assert agent("monitor", agent_env).returncode == OCF_NOT_RUNNING
    assert agent("validate-all", agent_env).returncode == OCF_SUCCESS
    missing = agent("validate-all", {**agent_env, "OCF_RESKEY_config": "/nonexistent/haproxy.cfg"})
    assert missing.returncode == 5  # OCF_ERR_INSTALLED
    # An empty file (haproxy would start on it and serve nothing) is refused the same way, and so is a start.
    empty = Path(agent_env["OCF_RESKEY_config"]).with_name("empty.cfg")
    empty.write_text("")
    for action in ("validate-all", "start"):
        refused = agent(action, {**agent_env, "OCF_RESKEY_config": str(empty)})
        assert refused.returncode == 5 and "is empty" in refused.stderr, refused.stderr


def test_restart_by_pacemaker_turns_systemd_restarts_off_and_back_on(agent_env, haproxy):
    dropin = Path(agent_env["HAPX_SYSTEMD_RUNTIME_DIR"]) / "haproxy.service.d" / "50-hapx-restart.conf"
    started = agent("start", {**agent_env, "OCF_RESKEY_restart_by": "pacemaker"})
    assert started.returncode == OCF_SUCCESS, started.stderr
    assert dropin.read_text() == "[Service]\nRestart=no\n"
    started = agent("start", agent_env)  # default: systemd restarts it
    assert started.returncode == OCF_SUCCESS, started.stderr
    assert not dropin.exists()
    bad = agent("validate-all", {**agent_env, "OCF_RESKEY_restart_by": "cron"})
    assert bad.returncode == 6  # OCF_ERR_CONFIGURED


def test_monitor_of_a_serving_haproxy_runs_neither_systemctl_nor_curl(agent_env, haproxy, tmp_path):
    # The monitor runs every few seconds on every node: the usual answer must cost one request made by the shell
    # itself. Stand-ins that leave a mark show whether either program ran.
    marks = tmp_path / "ran"
    bin_dir = Path(agent_env["PATH"].split(":")[0])
    for program in ("systemctl", "curl"):
        (bin_dir / program).write_text(f'#!/bin/sh\necho {program} >> {marks}\nexit 1\n')
    assert agent("monitor", agent_env).returncode == OCF_SUCCESS
    assert not marks.exists(), marks.read_text()
    # A haproxy that answers nothing is looked up in systemd (here: it says the unit failed, so not running).
    os.kill(haproxy, signal.SIGKILL)
    assert agent("monitor", agent_env).returncode == OCF_NOT_RUNNING
    assert marks.read_text().split() == ["systemctl"]


def test_monitor_asks_for_the_check_path_and_fails_an_answer_other_than_200(agent_env):
    # Something answers on the health port: 200 only at the check URL's path, 404 elsewhere; then 503 everywhere
    # (as a monitor-uri with `monitor fail` answers).
    server = http.server.HTTPServer(("127.0.0.1", HEALTH_PORT), _HealthAt)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _HealthAt.status = 200
        served = agent("monitor", agent_env)
        _HealthAt.status = 503
        refused = agent("monitor", {**agent_env, "OCF_RESKEY_restart_grace": "1"})
    finally:
        server.shutdown()
        server.server_close()
    assert served.returncode == OCF_SUCCESS, served.stderr
    assert _HealthAt.paths[0] == "/hapx-health"
    assert refused.returncode == OCF_ERR_GENERIC, refused.stderr
    assert "(active) does not answer" in refused.stderr


def test_a_check_url_the_agent_cannot_use_is_a_configuration_error(agent_env):
    for url in ("https://127.0.0.1:32700/hapx-health", "http://127.0.0.1/hapx-health", "http://127.0.0.1:port/x"):
        for action in ("validate-all", "monitor"):
            result = agent(action, {**agent_env, "OCF_RESKEY_check_url": url})
            assert result.returncode == 6, (url, action, result.stderr)  # OCF_ERR_CONFIGURED
            assert "check_url must be http://HOST:PORT/PATH" in result.stderr
    # A stop sends no request: it succeeds whatever the URL (a failed stop gets a node fenced).
    Path(agent_env["HAPX_TEST_STATE"]).write_text("inactive\n")
    stopped = agent("stop", {**agent_env, "OCF_RESKEY_check_url": "https://127.0.0.1:32700/hapx-health"})
    assert stopped.returncode == OCF_SUCCESS, stopped.stderr


class _HealthAt(http.server.BaseHTTPRequestHandler):
    status = 200
    paths: list[str] = []

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        # The path as sent (the stdlib folds a leading "//" in self.path).
        path = self.requestline.split()[1]
        type(self).paths.append(path)
        self.send_response(self.status if path == "/hapx-health" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass
