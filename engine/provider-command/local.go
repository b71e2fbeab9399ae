package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"
)

var defaultInterpreter = []string{"/bin/sh", "-c"}

// runLocal runs `interpreter... command` in the provider's working directory
// (the engine starts plugins in the program's directory) or spec.Dir, with the
// provider's environment plus spec.Env and env.
func runLocal(ctx context.Context, spec commandSpec, command string, env map[string]string,
	stdout, stderr io.Writer,
) error {
	interp := spec.Interpreter
	if len(interp) == 0 {
		interp = defaultInterpreter
	}
	cmd := exec.CommandContext(ctx, interp[0], append(interp[1:], command)...)
	cmd.Dir = spec.Dir
	cmd.Env = append(os.Environ(), envList(env)...)
	if spec.Stdin != "" {
		cmd.Stdin = strings.NewReader(spec.Stdin)
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Own process group, so that cancellation kills the shell's children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A command may start a daemon that inherits stdout/stderr (a hypervisor's
	// service process, say) and keeps the pipes open after the command exits;
	// stop waiting for such output shortly after the command itself is done.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) {
		return nil // the command succeeded; only a detached child held the pipes
	}
	return err
}

func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
