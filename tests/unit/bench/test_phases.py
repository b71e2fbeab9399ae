"""The failover's phases from the survivor's journal, and a haproxy
restart's from the killed node's (bench/phases.py), parsed from lines lab
runs really printed (tests/fixtures/journal/: a power-off of the VIP holder,
hapx's defaults with and without the DC dying, and the keepalived pair; a
kill of haproxy on the holder, both pairs; TCG), and the benchmark's conversion from the guest's clock to seconds from the
fault (bench/failover.py: read_phases)."""

from __future__ import annotations

import json
import subprocess

import pytest

from bench import failover, phases
from harness.clock import ClockOffset
from harness.paths import REPO

FIXTURES = REPO / "tests" / "fixtures" / "journal"


def fixture(name: str) -> tuple[str, dict]:
    return (FIXTURES / f"{name}.json").read_text(), json.loads((FIXTURES / f"{name}.meta.json").read_text())


def guest_fault(meta: dict) -> float:
    return meta["faultAt"] + meta["clockBefore"]["offsetS"]


def test_the_journal_json_is_read_with_the_senders_time():
    text, _ = fixture("pacemaker-power-off")
    lines = phases.parse_journal_json(text)
    assert len(lines) == len(text.splitlines()) == 52
    first = lines[0]
    # The sender's stamp (_SOURCE_REALTIME_TIMESTAMP), not journald's 4 ms later one.
    assert first.at == pytest.approx(1795642046.280180) and first.identifier == "corosync"
    assert first.message == "  [KNET  ] link: host: 1 link: 0 is down"
    assert [line.at for line in lines] == sorted(line.at for line in lines)


def test_a_message_journald_kept_as_bytes_and_a_line_without_a_source_time():
    raw = '{"__REALTIME_TIMESTAMP": "1795642046284441", "SYSLOG_IDENTIFIER": "corosync", "MESSAGE": [104, 105, 255]}\n\n'
    (line,) = phases.parse_journal_json(raw)
    assert line.at == pytest.approx(1795642046.284441) and line.message == "hi\ufffd"


def test_hapx_power_off_phases_from_real_lines():
    text, meta = fixture("pacemaker-power-off")
    found = phases.find_phases(phases.parse_journal_json(text), "pacemaker", guest_fault(meta))
    # Read off the fixture by hand: guest time of each line minus the fault
    # on the guest's clock (host mark 1795642045.504283 + offset 0.182878).
    assert found == {
        "lossNoticedS": 0.593,  # [KNET] link: host: 1 link: 0 is down
        "tokenLostS": 0.877,  # [TOTEM] A processor failed ... token timed out (1000ms), waiting 1200ms for consensus
        "membershipS": 2.11,  # [TOTEM] A new membership (2.d) was formed. Members left: 1
        "nodeLostS": 2.193,  # pacemaker-controld: Node hapx-node01 state is now lost
        "electionS": None,  # the survivor already was the DC: no election
        "dcS": None,
        "schedulerStartS": 2.359,  # State transition S_IDLE -> S_POLICY_ENGINE
        "scheduledS": 4.1,  # pacemaker-schedulerd: Calculated transition 2 (with warnings)
        "fencingStartS": 4.151,  # Requesting fencing (reboot) of node hapx-node01
        "fencingEndS": 4.955,  # Operation 'reboot' targeting hapx-node01 by hapx-node02 for ...: OK (complete)
        "vipStartS": 5.036,  # Initiating start operation hapx-vip_start_0 locally on hapx-node02
        "vipAddressS": 6.964,  # IPaddr2(hapx-vip): INFO: Adding inet address 192.168.4.20/27 ...
        "vipStartedS": 7.58,  # Result of start operation for hapx-vip on hapx-node02: ok
    }
    # The phases come in the order of a failover, and before the probe's first answer.
    times = [t for t in found.values() if t is not None]
    assert times == sorted(times) and times[-1] < meta["probe"]["firstAnsweredAfterOutageS"]


def test_hapx_power_off_of_the_dc_shows_the_election():
    """The node that died was the DC: the survivor elects itself and
    integrates before it schedules; Pacemaker then logs no S_POLICY_ENGINE
    line at notice level, so that phase is not found (None), not guessed."""
    text, meta = fixture("pacemaker-power-off-dc-lost")
    found = phases.find_phases(phases.parse_journal_json(text), "pacemaker", guest_fault(meta))
    assert found["electionS"] == 2.435  # State transition S_NOT_DC -> S_ELECTION
    assert found["dcS"] == 2.604  # State transition S_ELECTION -> S_INTEGRATION
    assert found["schedulerStartS"] is None
    assert found["vipAddressS"] == 6.73 and found["vipStartedS"] == 7.771
    # The same as the bench found in that run (its row is in the meta file).
    assert found == {k: v for k, v in meta["phases"].items() if k != "firstAnsweredS"}


def test_keepalived_power_off_phases_from_real_lines():
    text, meta = fixture("keepalived-power-off")
    found = phases.find_phases(phases.parse_journal_json(text), "keepalived", guest_fault(meta))
    assert found == {"masterS": 2.543}  # Keepalived_vrrp: (hapx) Entering MASTER STATE
    assert found["masterS"] < meta["probe"]["firstAnsweredAfterOutageS"]


def test_lines_before_the_fault_are_not_phases():
    text, meta = fixture("pacemaker-power-off")
    lines = phases.parse_journal_json(text)
    # Fault placed after the membership line: the earlier corosync lines do not count.
    found = phases.find_phases(lines, "pacemaker", guest_fault(meta) + 2.2)
    assert found["lossNoticedS"] is None and found["membershipS"] is None
    assert found["vipStartedS"] == pytest.approx(7.58 - 2.2, abs=0.001)


def test_lines_after_the_failover_are_not_its_phases():
    # A link cut's journal read also holds the fenced node's return, a minute on: the survivor's controller
    # elects and schedules again then. That is not this failover's election or scheduler start.
    text, meta = fixture("pacemaker-power-off")
    fault = guest_fault(meta)
    later = [
        phases.JournalLine(fault + 91.2, "pacemaker-controld", "State transition S_IDLE -> S_ELECTION"),
        phases.JournalLine(fault + 91.3, "pacemaker-controld", "State transition S_ELECTION -> S_INTEGRATION"),
    ]
    lines = phases.parse_journal_json(text) + later
    assert phases.find_phases(lines, "pacemaker", fault)["electionS"] == 91.2  # unbounded: taken
    bounded = phases.find_phases(lines, "pacemaker", fault, fault + 7.837 + phases.PHASES_AFTER_RECOVERY_S)
    assert bounded["electionS"] is None and bounded["dcS"] is None
    assert bounded["vipStartedS"] == 7.58  # the failover's own phases stay
    # read_phases bounds the search by the probe's window.
    record = {"survivor": "hapx-node02", "clockBefore": offset(meta, "clockBefore"), "clockAfter": offset(meta, "clockAfter"),
              "probe": {"faultAt": meta["faultAt"], "unavailableS": 7.837, "firstAnsweredAfterOutageS": 7.837}}  # fmt: skip
    journal = text.rstrip("\n") + "\n" + "\n".join(
        json.dumps({"__REALTIME_TIMESTAMP": str(int(line.at * 1e6)), "SYSLOG_IDENTIFIER": line.identifier,
                    "MESSAGE": line.message})
        for line in later
    )  # fmt: skip
    failover.read_phases(JournalLab(journal), record, "pacemaker")
    assert record["phases"]["electionS"] is None and record["phases"]["membershipS"] == 2.11


def test_the_journal_command_asks_for_the_cluster_lines_only():
    command = phases.journal_command(100.0, 250.5)
    assert "--since=@100.000000 --until=@250.500000" in command
    assert "SYSLOG_IDENTIFIER='IPaddr2(hapx-vip)'" in command and "SYSLOG_IDENTIFIER=haproxy" not in command
    assert "_SOURCE_REALTIME_TIMESTAMP" in command and f"head -n {phases.MAX_LINES}" in command


class JournalLab:
    """What read_phases uses of a LabStack: ssh, answering the journal read."""

    def __init__(self, journal: str, returncode: int = 0):
        self.journal, self.returncode, self.commands = journal, returncode, []

    def ssh(self, node, command, timeout=60, stdin=None):
        self.commands.append((node, command))
        return subprocess.CompletedProcess(command, self.returncode, self.journal, "journal gone")


def offset(meta: dict, which: str) -> ClockOffset:
    m = meta[which]
    return ClockOffset(m["offsetS"], m["uncertaintyS"], m["roundTripS"], m["samples"], m["measuredAt"])


def test_read_phases_converts_the_guests_clock_and_states_the_uncertainty():
    text, meta = fixture("pacemaker-power-off")
    lab = JournalLab(text)
    record = {"survivor": "hapx-node02", "clockBefore": offset(meta, "clockBefore"), "clockAfter": offset(meta, "clockAfter"),
              "probe": {"faultAt": meta["faultAt"], "firstAnsweredAfterOutageS": 7.837}}  # fmt: skip
    failover.read_phases(lab, record, "pacemaker")
    ((node, command),) = lab.commands
    # The journal is read on the guest's clock: from 5 s before the fault.
    assert node == "hapx-node02" and f"--since=@{guest_fault(meta) - 5:.6f}" in command
    assert record["phases"]["membershipS"] == 2.11 and record["phases"]["firstAnsweredS"] == 7.837
    # ± the wider half round trip (22.2 ms) plus the drift between the two offsets (0.3 ms).
    assert record["phasesUncertaintyS"] == pytest.approx(0.0222 + 0.000293, abs=1e-4)
    assert record["clock"]["before"]["offsetS"] == 0.182878 and record["clock"]["node"] == "hapx-node02"


def test_a_guest_clock_37_s_behind_gives_the_same_phases():
    """Shift the guest's clock (every journal time and both offsets) by
    -37.5 s: the phases, relative to the host's fault mark, do not move."""
    text, meta = fixture("pacemaker-power-off")
    shifted = []
    for raw in text.splitlines():
        entry = json.loads(raw)
        for key in ("__REALTIME_TIMESTAMP", "_SOURCE_REALTIME_TIMESTAMP"):
            entry[key] = str(int(entry[key]) - 37_500_000)
        shifted.append(json.dumps(entry))
    before = offset(meta, "clockBefore")
    behind = ClockOffset(before.offset_s - 37.5, before.uncertainty_s, before.round_trip_s, 5, before.measured_at)
    record = {"survivor": "hapx-node02", "clockBefore": behind, "clockError": "not measured",
              "probe": {"faultAt": meta["faultAt"]}}  # fmt: skip
    failover.read_phases(JournalLab("\n".join(shifted)), record, "pacemaker")
    assert record["phases"]["membershipS"] == 2.11 and record["phases"]["vipStartedS"] == 7.58
    # Without a second measurement the uncertainty is the first's alone, and the row says why.
    assert record["phasesUncertaintyS"] == pytest.approx(before.uncertainty_s, abs=1e-4)
    assert record["clock"]["after"] is None and record["clock"]["error"] == "not measured"


def test_a_journal_that_cannot_be_read_leaves_the_phases_null_with_the_reason():
    _, meta = fixture("pacemaker-power-off")
    record = {"survivor": "hapx-node02", "clockBefore": offset(meta, "clockBefore"), "clockAfter": offset(meta, "clockAfter"),
              "probe": {"faultAt": meta["faultAt"]}}  # fmt: skip
    failover.read_phases(JournalLab("", returncode=255), record, "pacemaker")
    assert "phases" not in record and "journalctl failed (255): journal gone" in record["phasesError"]


def test_hapx_vip_agents_background_line_is_not_a_phase():
    # ocf:hapx:vip logs after the fact (in the background): never taken as the address phase.
    line = phases.JournalLine(at=10.5, identifier="vip(hapx-vip)", message="added 192.168.4.20/27 to dmz0; 5 gratuitous ARPs every 200 ms")
    found = phases.find_phases([line], "pacemaker", 10.0)
    assert found["vipAddressS"] is None


def test_a_haproxy_restart_after_a_kill_from_real_lines():
    """hapx's defaults, the killed holder's journal (run 4 of docs/bench/kill-phases: a monitor of hapx's agent
    met the restart). Read off the fixture by hand: each line's time minus the mark on the guest's clock (host
    mark 1795823862.676902 - offset 0.117456)."""
    text, meta = fixture("pacemaker-kill-haproxy")
    found = phases.find_phases(phases.parse_journal_json(text), "haproxy-restart", guest_fault(meta))
    assert found == {
        "exitedS": 0.083,  # haproxy.service: Main process exited, code=killed, status=9/KILL
        "restartScheduledS": 0.354,  # haproxy.service: Scheduled restart job, restart counter is at 4.
        "startingS": 0.402,  # Starting haproxy.service - HAProxy Load Balancer...
        "workerForkedS": 1.061,  # [NOTICE]   (1481) : New worker (1489) forked
        "loadedS": 1.079,  # [NOTICE]   (1481) : Loading success.
        "startedS": 1.29,  # Started haproxy.service - HAProxy Load Balancer.
        "monitorWaitedS": 1.426,  # haproxy(hapx-haproxy): haproxy answers again (restarted by systemd, or reloaded)
        "vipLeftS": None,  # keepalived's only
    }
    # haproxy's request lines (identifier "haproxy" too) mark no phase: the first is from before the kill.
    requests = [line for line in phases.parse_journal_json(text) if line.message[:1].isdigit()]
    assert requests and requests[0].at < guest_fault(meta) + meta["killLandedS"]
    assert all(meta["phases"][key] == value for key, value in found.items())


def test_the_keepalived_pairs_restart_is_the_same_unit_and_its_vip_stays():
    text, meta = fixture("keepalived-kill-haproxy")
    found = phases.find_phases(phases.parse_journal_json(text), "haproxy-restart", guest_fault(meta))
    assert (found["startingS"], found["workerForkedS"], found["startedS"]) == (0.367, 0.772, 0.838)
    # keepalived's check (every second, fall 2) never failed twice: it kept the VIP; and no hapx agent ran.
    assert found["vipLeftS"] is None and found["monitorWaitedS"] is None


def test_a_kill_reads_the_killed_nodes_journal_with_the_restarts_identifiers():
    text, meta = fixture("pacemaker-kill-haproxy")
    lab = JournalLab(text)
    record = {"survivor": None, "clockBefore": offset(meta, "clockBefore"), "clockAfter": offset(meta, "clockAfter"),
              "probe": {"faultAt": meta["faultAt"], "firstAnsweredAfterOutageS": meta["probe"]["firstAnsweredAfterOutageS"]}}  # fmt: skip
    failover.read_phases(lab, record, "haproxy-restart", "hapx-node01", phases.RESTART_IDENTIFIERS)
    ((node, command),) = lab.commands
    assert node == "hapx-node01" and record["clock"]["node"] == "hapx-node01"
    assert "SYSLOG_IDENTIFIER=systemd" in command and "SYSLOG_IDENTIFIER='haproxy(hapx-haproxy)'" in command
    assert "SYSLOG_IDENTIFIER=corosync" not in command
    assert record["phases"]["workerForkedS"] == 1.061 and record["phases"]["firstAnsweredS"] == 1.072
