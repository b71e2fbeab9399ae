package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"golang.org/x/crypto/ssh"
)

const sshdPath = "/usr/sbin/sshd"

// sshServer is a throwaway sshd on 127.0.0.1 with its own host key and
// authorized_keys, run as a child of the test.
type sshServer struct {
	port        int
	user        string
	clientKey   string // OpenSSH private key, authorized on the server
	hostKey     string // authorized_keys line of the server's host key
	dir         string
	configPath  string
	hostKeyFile string
}

func newKey(t *testing.T) (privatePEM string, pub ssh.PublicKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block)), signer.PublicKey()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// prepareSSHD writes the server's files; start runs it.
func prepareSSHD(t *testing.T) *sshServer {
	t.Helper()
	if _, err := os.Stat(sshdPath); err != nil {
		t.Skip("no " + sshdPath)
	}
	// sshd started as root insists on its privilege separation directory,
	// which the distribution's service unit normally creates.
	if os.Geteuid() == 0 {
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Skipf("cannot create /run/sshd: %v", err)
		}
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := &sshServer{port: freePort(t), user: u.Username, dir: dir}
	hostPriv, hostPub := newKey(t)
	s.hostKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostPub)))
	s.hostKeyFile = filepath.Join(dir, "host_key")
	clientPriv, clientPub := newKey(t)
	s.clientKey = clientPriv
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("host_key", hostPriv)
	auth := write("authorized_keys", string(ssh.MarshalAuthorizedKey(clientPub)))
	s.configPath = write("sshd_config", fmt.Sprintf(`ListenAddress 127.0.0.1
PidFile none
UsePAM no
StrictModes no
PermitRootLogin yes
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile %s
AcceptEnv HAPX_* PULUMI_COMMAND_*
LogLevel ERROR
`, auth))
	return s
}

func (s *sshServer) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(sshdPath, "-D", "-e", "-f", s.configPath, "-h", s.hostKeyFile, "-p", fmt.Sprint(s.port))
	logPath := filepath.Join(s.dir, "sshd.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logFile.Close()
		if b, _ := os.ReadFile(logPath); t.Failed() && len(b) > 0 {
			t.Logf("sshd log:\n%s", b)
		}
	})
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port)); err == nil {
			c.Close()
			return
		}
	}
	t.Fatal("sshd did not start listening")
}

func (s *sshServer) conn(extra map[string]any) resource.PropertyValue {
	c := map[string]any{
		"host": "127.0.0.1", "port": float64(s.port), "user": s.user,
		"privateKey": s.clientKey, "hostKey": s.hostKey, "perDialTimeout": 5.0,
	}
	for k, v := range extra {
		c[k] = v
	}
	return secret(c)
}

func TestRemoteLifecycle(t *testing.T) {
	s := prepareSSHD(t)
	s.start(t)
	p, rec := testProvider()
	marker := filepath.Join(s.dir, "deleted")
	ins := pm(map[string]any{
		"connection":  s.conn(nil),
		"create":      `printf 'created %s ' "$HAPX_GREETING"; cat`,
		"update":      `printf 'updated after [%s] ' "$PULUMI_COMMAND_STDOUT"; cat`,
		"delete":      `printf '%s' "$PULUMI_COMMAND_STDOUT" > ` + marker,
		"environment": map[string]any{"HAPX_GREETING": "hello"},
		"stdin":       secret("from stdin\n"),
	})
	outs, err := create(t, p, remoteURN, ins)
	if err != nil {
		t.Fatal(err)
	}
	if got := plain(outs["stdout"]).StringValue(); got != "created hello from stdin" {
		t.Fatalf("stdout %q", got)
	}
	if !outs["connection"].IsSecret() || !outs["stdout"].IsSecret() {
		t.Fatal("connection and (secret stdin) stdout must stay secret")
	}
	ins["stdin"] = secret("new stdin")
	outs, err = update(t, p, remoteURN, outs, ins)
	if err != nil {
		t.Fatal(err)
	}
	if got := plain(outs["stdout"]).StringValue(); got != "updated after [created hello from stdin] new stdin" {
		t.Fatalf("update stdout %q", got)
	}
	if err := destroy(t, p, remoteURN, outs); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(marker); string(b) != plain(outs["stdout"]).StringValue() {
		t.Fatalf("delete saw %q", b)
	}
	// Output lines are logged (logging defaults to both streams); the
	// connection's key never is.
	if logs := rec.text(); !strings.Contains(logs, "created hello") || strings.Contains(logs, "PRIVATE KEY") {
		t.Fatalf("unexpected log:\n%s", logs)
	}
}

func TestRemoteFailureAndRejectedEnv(t *testing.T) {
	s := prepareSSHD(t)
	s.start(t)
	p, rec := testProvider()
	_, err := create(t, p, remoteURN, pm(map[string]any{
		"connection":  s.conn(nil),
		"create":      "echo visible-err >&2; exit 4",
		"environment": map[string]any{"NOT_ACCEPTED": "hidden-value"},
		"logging":     logStderr,
	}))
	if err == nil || !strings.Contains(err.Error(), "status 4") || !strings.Contains(err.Error(), "visible-err") {
		t.Fatalf("want exit status and stderr tail, got %v", err)
	}
	logs := rec.text()
	if !strings.Contains(logs, "NOT_ACCEPTED") || strings.Contains(logs, "hidden-value") {
		t.Fatalf("want a warning naming the variable only:\n%s", logs)
	}
}

func TestRemoteHostKeyPinning(t *testing.T) {
	s := prepareSSHD(t)
	s.start(t)
	p, _ := testProvider()
	_, otherPub := newKey(t)
	wrong := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(otherPub)))
	_, err := create(t, p, remoteURN, pm(map[string]any{
		"connection": s.conn(map[string]any{"hostKey": wrong, "dialErrorLimit": 2.0}),
		"create":     "echo should-not-run",
	}))
	if err == nil || !strings.Contains(err.Error(), "host key mismatch") || !strings.Contains(err.Error(), "2 dial attempt") {
		t.Fatalf("want host key mismatch after 2 attempts, got %v", err)
	}
	// No pin: any host key is accepted.
	outs, err := create(t, p, remoteURN, pm(map[string]any{
		"connection": s.conn(map[string]any{"hostKey": ""}), "create": "echo ok",
	}))
	if err != nil || outs["stdout"].StringValue() != "ok" {
		t.Fatalf("%v %v", err, outs)
	}
}

func TestRemoteDialRetriesUntilListening(t *testing.T) {
	s := prepareSSHD(t)
	p, rec := testProvider()
	started := make(chan struct{})
	go func() {
		time.Sleep(2 * time.Second)
		close(started)
	}()
	errc := make(chan error, 1)
	var outs resource.PropertyMap
	go func() {
		var err error
		outs, err = create(t, p, remoteURN, pm(map[string]any{
			"connection": s.conn(map[string]any{"dialErrorLimit": 30.0}), "create": "echo up",
		}))
		errc <- err
	}()
	<-started
	s.start(t)
	if err := <-errc; err != nil || outs["stdout"].StringValue() != "up" {
		t.Fatalf("%v %v", err, outs)
	}
	if !strings.Contains(rec.text(), "retrying") {
		t.Fatalf("expected retry status messages:\n%s", rec.text())
	}
}

func TestRemoteDialLimitAndProxy(t *testing.T) {
	s := prepareSSHD(t) // never started: nothing listens on its port
	p, _ := testProvider()
	start := time.Now()
	_, err := create(t, p, remoteURN, pm(map[string]any{
		"connection": s.conn(map[string]any{"dialErrorLimit": 3.0}), "create": "true",
	}))
	if err == nil || !strings.Contains(err.Error(), "3 dial attempt") || time.Since(start) > 20*time.Second {
		t.Fatalf("want failure after 3 attempts, got %v after %v", err, time.Since(start))
	}
	_, err = create(t, p, remoteURN, pm(map[string]any{
		"connection": s.conn(map[string]any{"proxy": map[string]any{"host": "127.0.0.1"}}), "create": "true",
	}))
	if err == nil || !strings.Contains(err.Error(), "proxy is not supported") {
		t.Fatalf("want a clear proxy error, got %v", err)
	}
}

// freezingProxy forwards TCP to the sshd until frozen; then it drops what
// either side sends and closes nothing, like a host reset behind QEMU's user
// network.
type freezingProxy struct {
	port   int
	frozen atomic.Bool
}

func startFreezingProxy(t *testing.T, target int) *freezingProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p := &freezingProxy{port: l.Addr().(*net.TCPAddr).Port}
	pump := func(dst, src net.Conn) {
		buf := make([]byte, 32*1024)
		for {
			n, err := src.Read(buf)
			if err != nil {
				return
			}
			if !p.frozen.Load() {
				if _, err := dst.Write(buf[:n]); err != nil {
					return
				}
			}
		}
	}
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", target))
			if err != nil {
				in.Close()
				continue
			}
			t.Cleanup(func() { in.Close(); out.Close() })
			go pump(out, in)
			go pump(in, out)
		}
	}()
	return p
}

func TestRemoteCommandFailsWhenTheHostGoesSilent(t *testing.T) {
	s := prepareSSHD(t)
	s.start(t)
	proxy := startFreezingProxy(t, s.port)
	interval, timeout := keepaliveInterval, keepaliveTimeout
	keepaliveInterval, keepaliveTimeout = 200*time.Millisecond, time.Second
	t.Cleanup(func() { keepaliveInterval, keepaliveTimeout = interval, timeout })
	p, _ := testProvider()
	go func() {
		time.Sleep(1500 * time.Millisecond) // the command is running
		proxy.frozen.Store(true)
	}()
	started := time.Now()
	_, err := create(t, p, remoteURN, pm(map[string]any{
		"connection": s.conn(map[string]any{"port": float64(proxy.port)}),
		"create":     "sleep 60",
	}))
	if err == nil || !strings.Contains(err.Error(), "no keepalive") {
		t.Fatalf("want the lost connection named, got %v", err)
	}
	if took := time.Since(started); took > 15*time.Second {
		t.Fatalf("the command waited %s for a silent host", took)
	}
}
