package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// Backoff between dial attempts: hapx dials VMs that are still booting, so
// attempts are many (dialErrorLimit) and spaced, but not far apart.
const (
	firstDialDelay = 500 * time.Millisecond
	maxDialDelay   = 5 * time.Second
)

// A host reset in the middle of a command (fenced, power-cycled) sends
// nothing more, not even a TCP reset, when it sits behind a NAT or QEMU's user
// network, whose host side keeps the connection open: the session, and the
// `pulumi up` waiting on it, would wait forever (21 minutes until stopped by
// hand, in hapx's benchmark, docs/benchmarks.md). So a keepalive request goes
// out every keepaliveInterval and must be answered within keepaliveTimeout, or
// the connection is closed and the command fails; a re-run converges. The
// request is OpenSSH's keepalive@openssh.com: servers answer it, with a
// failure if they do not know it, which is an answer all the same. Variables,
// so a test can shorten them.
var (
	keepaliveInterval = 10 * time.Second
	keepaliveTimeout  = 30 * time.Second
)

// errConnectionLost is what a command fails with when keepalives go unanswered.
var errConnectionLost = errors.New("the SSH connection was lost: the host answered no keepalive")

// keepAlive probes the connection until stop is closed; if a probe goes
// unanswered for `within`, it closes the client (which ends the session) and
// closes lost first.
func keepAlive(client *ssh.Client, stop <-chan struct{}, lost chan<- struct{}, every, within time.Duration) {
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ticker.C:
		}
		answered := make(chan error, 1)
		go func() {
			_, _, err := client.SendRequest("keepalive@openssh.com", true, nil)
			answered <- err
		}()
		select {
		case <-stop:
			return
		case err := <-answered:
			if err != nil {
				return // the connection is closed already; the session ends with its own error
			}
		case <-time.After(within):
			close(lost)
			client.Close()
			return
		}
	}
}

// runRemote runs command in one SSH session. Environment variables are sent
// with Setenv, which the server applies only for names its AcceptEnv allows.
func runRemote(ctx context.Context, rep reporter, conn connSpec, command, stdin string, env map[string]string,
	stdout, stderr io.Writer,
) error {
	client, err := dialSSH(ctx, rep, conn)
	if err != nil {
		return err
	}
	defer client.Close()
	session, err := client.NewSession()
	if err != nil {
		return fmt.Errorf("ssh session: %w", err)
	}
	defer session.Close()

	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if err := session.Setenv(k, env[k]); err != nil {
			// Only the name: the value may be secret. The provider's own
			// PULUMI_COMMAND_* variables are refused by most servers and few
			// remote scripts use them, so that is a status note, not a warning.
			msg := fmt.Sprintf("the SSH server did not accept environment variable %s "+
				"(it needs AcceptEnv for it); the command runs without it", k)
			if strings.HasPrefix(k, "PULUMI_COMMAND_") {
				rep.status(ctx, msg)
			} else {
				rep.warn(ctx, msg)
			}
		}
	}
	if stdin != "" {
		session.Stdin = strings.NewReader(stdin)
	}
	session.Stdout, session.Stderr = stdout, stderr

	done := make(chan error, 1)
	go func() { done <- session.Run(command) }()
	stop, lost := make(chan struct{}), make(chan struct{})
	defer close(stop)
	go keepAlive(client, stop, lost, keepaliveInterval, keepaliveTimeout)
	select {
	case err := <-done:
		select {
		case <-lost:
			return fmt.Errorf("%w within %s (%s:%d); the command's outcome is unknown", errConnectionLost,
				keepaliveTimeout, conn.Host, conn.Port)
		default:
			return err
		}
	case <-ctx.Done():
		// Many servers ignore signals; closing the connection ends the session anyway.
		_ = session.Signal(ssh.SIGKILL)
		client.Close()
		<-done
		return ctx.Err()
	}
}

// dialSSH connects, retrying failed attempts (refused, timed out, rejected
// key...) up to DialErrorLimit times (-1: no limit), each attempt bounded by
// PerDialTimeout seconds (0: no bound).
func dialSSH(ctx context.Context, rep reporter, c connSpec) (*ssh.Client, error) {
	if c.HasProxy {
		return nil, errors.New("connection.proxy is not supported by hapx's command provider")
	}
	if c.Host == "" {
		return nil, errors.New("connection.host is empty")
	}
	cfg, closeAgent, err := clientConfig(c)
	if err != nil {
		return nil, err
	}
	defer closeAgent()
	addr := net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
	timeout := time.Duration(c.PerDialTimeout) * time.Second
	delay := firstDialDelay
	for attempt := 1; ; attempt++ {
		client, err := dialOnce(ctx, addr, cfg, timeout)
		if err == nil {
			return client, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if c.DialErrorLimit >= 0 && attempt >= max(c.DialErrorLimit, 1) {
			return nil, fmt.Errorf("ssh %s@%s: %d dial attempt(s) failed, last: %w", c.User, addr, attempt, err)
		}
		rep.status(ctx, fmt.Sprintf("ssh %s: attempt %d failed (%v), retrying", addr, attempt, err))
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		delay = min(delay*2, maxDialDelay)
	}
}

func dialOnce(ctx context.Context, addr string, cfg *ssh.ClientConfig, timeout time.Duration) (*ssh.Client, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// The timeout covers the SSH handshake too: a booting host may accept TCP
	// and then stall.
	if timeout > 0 {
		_ = conn.SetDeadline(time.Now().Add(timeout))
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	stop()
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// clientConfig builds authentication and host key checking. All available
// methods are offered: key and agent signers together (the client tries one
// "publickey" method only), then password, also as keyboard-interactive.
func clientConfig(c connSpec) (*ssh.ClientConfig, func(), error) {
	cfg := &ssh.ClientConfig{User: c.User, HostKeyCallback: ssh.InsecureIgnoreHostKey()}
	closeAgent := func() {}
	var signers []ssh.Signer
	if c.PrivateKey != "" {
		var s ssh.Signer
		var err error
		if c.PrivateKeyPassword != "" {
			s, err = ssh.ParsePrivateKeyWithPassphrase([]byte(c.PrivateKey), []byte(c.PrivateKeyPassword))
		} else {
			s, err = ssh.ParsePrivateKey([]byte(c.PrivateKey))
		}
		if err != nil { // x/crypto's parse errors describe the format, never the key
			return nil, nil, fmt.Errorf("connection.privateKey: %w", err)
		}
		signers = append(signers, s)
	}
	sock := defaultString(c.AgentSocketPath, os.Getenv("SSH_AUTH_SOCK"))
	var agentClient agent.ExtendedAgent
	if sock != "" {
		if ac, err := net.Dial("unix", sock); err == nil {
			agentClient = agent.NewClient(ac)
			closeAgent = func() { ac.Close() }
		} else if c.AgentSocketPath != "" {
			return nil, nil, fmt.Errorf("connection.agentSocketPath: %w", err)
		}
	}
	if len(signers) > 0 || agentClient != nil {
		cfg.Auth = append(cfg.Auth, ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
			all := signers
			if agentClient != nil {
				if more, err := agentClient.Signers(); err == nil {
					all = append(all[:len(all):len(all)], more...)
				}
			}
			return all, nil
		}))
	}
	if c.Password != "" {
		cfg.Auth = append(cfg.Auth, ssh.Password(c.Password),
			ssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i := range answers {
					answers[i] = c.Password
				}
				return answers, nil
			}))
	}
	if c.HostKey != "" {
		pinned, _, _, _, err := ssh.ParseAuthorizedKey([]byte(c.HostKey))
		if err != nil {
			return nil, nil, fmt.Errorf("connection.hostKey: %w", err)
		}
		cfg.HostKeyCallback = pinnedHostKey(pinned)
		// Ask for the pinned key's algorithm, or the server may present
		// another of its keys and fail the check.
		cfg.HostKeyAlgorithms = hostKeyAlgorithms(pinned.Type())
	}
	return cfg, closeAgent, nil
}

func pinnedHostKey(pinned ssh.PublicKey) ssh.HostKeyCallback {
	return func(_ string, _ net.Addr, key ssh.PublicKey) error {
		if bytes.Equal(key.Marshal(), pinned.Marshal()) {
			return nil
		}
		return fmt.Errorf("host key mismatch: server presented %s %s, connection.hostKey is %s %s",
			key.Type(), ssh.FingerprintSHA256(key), pinned.Type(), ssh.FingerprintSHA256(pinned))
	}
}

func hostKeyAlgorithms(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}
