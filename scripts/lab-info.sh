#!/usr/bin/env bash
# Print how to reach a QEMU lab stack after `make lab`: the lab's namespace,
# the VIP, the stats page, and SSH to each node. Reads the stack's outputs.
set -euo pipefail
stack=${1:-lab}
root=$(cd "$(dirname "$0")/.." && pwd)
outputs=$("$root/scripts/pulumi.sh" stack output --stack "$stack" --json)
"$root/.venv/bin/python" - "$stack" "$outputs" <<'PY'
import json, sys
stack, outputs = sys.argv[1], json.loads(sys.argv[2])
ns = outputs.get("labNamespace")
vip, port = outputs["vip"], outputs["frontendPort"]
print(f"\nhapx stack {stack} is up. VIP {vip}; every address below lives in network namespace {ns}.")
print(f"  through the VIP:  ip netns exec {ns} curl -s http://{vip}:{port}/")
print(f"  stats page:       ip netns exec {ns} curl -s -u {outputs['statsUser']}:\"$(scripts/pulumi.sh stack output -s {stack} --show-secrets statsPassword)\" {outputs['statsUrl']}")
for node, cmd in outputs["sshCommands"].items():
    print(f"  ssh {node}: {cmd}")
print(f"  cluster status:   {next(iter(outputs['sshCommands'].values()))} sudo crm_mon -1")
PY
