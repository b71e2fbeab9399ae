"""The lab harness: what the e2e tests and the failover benchmark share to
drive hapx for real (the Pulumi engine on a throwaway backend, a lab stack of
QEMU VMs, a client probing the VIP, samples of who holds it).

It needs the project's venv (pulumi, yaml) but not pytest: `make bench`
runs without the test suite. Kept import-light on purpose: the VIP probe runs
as `python -m harness.probe` inside the lab's namespace and imports this
package first.
"""
