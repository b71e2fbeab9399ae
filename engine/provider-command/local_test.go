package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

func TestLocalLifecycle(t *testing.T) {
	p, _ := testProvider()
	marker := filepath.Join(t.TempDir(), "deleted")
	ins := pm(map[string]any{
		"create":      `printf 'created %s ' "$GREETING"; cat`,
		"update":      `printf 'updated after [%s] ' "$PULUMI_COMMAND_STDOUT"; cat`,
		"delete":      `printf '%s' "$PULUMI_COMMAND_STDOUT" > ` + marker,
		"environment": map[string]any{"GREETING": "hello"},
		"stdin":       "from stdin\n",
	})
	outs, err := create(t, p, localURN, ins)
	if err != nil {
		t.Fatal(err)
	}
	if got := outs["stdout"].StringValue(); got != "created hello from stdin" {
		t.Fatalf("create stdout %q (trailing newline must be trimmed)", got)
	}
	if !outs["create"].IsString() || !outs["addPreviousOutputInEnv"].BoolValue() {
		t.Fatalf("outputs must carry inputs and defaults: %v", outs)
	}

	ins["stdin"] = resource.NewProperty("new stdin")
	outs, err = update(t, p, localURN, outs, ins)
	if err != nil {
		t.Fatal(err)
	}
	if got := outs["stdout"].StringValue(); got != "updated after [created hello from stdin] new stdin" {
		t.Fatalf("update stdout %q", got)
	}

	if err := destroy(t, p, localURN, outs); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(marker); string(b) != outs["stdout"].StringValue() {
		t.Fatalf("delete saw PULUMI_COMMAND_STDOUT %q", b)
	}
}

func TestLocalUpdateFallsBackToCreateAndInterpreterDir(t *testing.T) {
	p, _ := testProvider()
	dir := t.TempDir()
	ins := pm(map[string]any{
		"create":                 "import os; print(os.getcwd(), os.environ.get('PULUMI_COMMAND_STDOUT'))",
		"interpreter":            []any{"python3", "-c"},
		"dir":                    dir,
		"addPreviousOutputInEnv": false,
	})
	outs, err := create(t, p, localURN, ins)
	if err != nil {
		t.Fatal(err)
	}
	if got := outs["stdout"].StringValue(); got != dir+" None" {
		t.Fatalf("stdout %q", got)
	}
	outs, err = update(t, p, localURN, outs, ins)
	if err != nil || outs["stdout"].StringValue() != dir+" None" {
		t.Fatalf("update re-runs create without previous output: %v %v", err, outs)
	}
}

func TestLocalFailureAndLogging(t *testing.T) {
	script := "echo out-line; echo err-line >&2; exit 3"
	for _, tc := range []struct {
		logging              string
		wantOutLog, wantErrL bool
	}{
		{"", true, true},
		{logStdout, true, false},
		{logStderr, false, true},
		{logNone, false, false},
	} {
		p, rec := testProvider()
		ins := pm(map[string]any{"create": script})
		if tc.logging != "" {
			ins["logging"] = resource.NewProperty(tc.logging)
		}
		_, err := create(t, p, localURN, ins)
		if err == nil || !strings.Contains(err.Error(), "exit status 3") {
			t.Fatalf("%q: want exit status in error, got %v", tc.logging, err)
		}
		if strings.Contains(err.Error(), script) {
			t.Fatalf("the command text must not be in the error: %v", err)
		}
		logs := rec.text()
		check := func(what, text string, want bool) {
			if strings.Contains(text, what) != want {
				t.Errorf("logging %q: %q present=%v, want %v in:\n%s", tc.logging, what, !want, want, text)
			}
		}
		check("out-line", logs, tc.wantOutLog)
		check("err-line", logs, tc.wantErrL)
		check("out-line", err.Error(), tc.wantOutLog)
		check("err-line", err.Error(), tc.wantErrL)
	}
}

func TestLocalSecretsKeptAndNotLogged(t *testing.T) {
	p, rec := testProvider()
	outs, err := create(t, p, localURN, pm(map[string]any{
		"create":  "cat",
		"stdin":   secret("s3cret-value"),
		"logging": logNone,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !outs["stdin"].IsSecret() || !outs["stdout"].IsSecret() || !outs["stderr"].IsSecret() {
		t.Fatalf("stdin, stdout and stderr must be secret: %v", outs)
	}
	if outs["stdout"].SecretValue().Element.StringValue() != "s3cret-value" {
		t.Fatalf("stdout %v", outs["stdout"])
	}
	if strings.Contains(rec.text(), "s3cret") {
		t.Fatal("secret reached the log")
	}
	// Plain inputs give plain outputs.
	outs, err = create(t, p, localURN, pm(map[string]any{"create": "echo hi"}))
	if err != nil || outs["stdout"].IsSecret() {
		t.Fatalf("%v %v", err, outs)
	}
}

func TestLocalPreviewRunsNothing(t *testing.T) {
	p, _ := testProvider()
	marker := filepath.Join(t.TempDir(), "ran")
	ins := checked(t, p, localURN, pm(map[string]any{"create": "touch " + marker}))
	resp, err := p.Create(context.Background(), &pulumirpc.CreateRequest{Urn: localURN, Properties: wire(t, ins), Preview: true})
	if err != nil {
		t.Fatal(err)
	}
	outs := unwire(t, resp.Properties)
	if !outs["stdout"].IsComputed() || !outs["stderr"].IsComputed() || !outs["create"].IsString() {
		t.Fatalf("preview outputs %v", outs)
	}
	uresp, err := p.Update(context.Background(), &pulumirpc.UpdateRequest{Urn: localURN, Olds: wire(t, ins), News: wire(t, ins), Preview: true})
	if err != nil || !unwire(t, uresp.Properties)["stdout"].IsComputed() {
		t.Fatalf("update preview: %v", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("preview ran the command")
	}
}

func TestCancelKillsLocalCommand(t *testing.T) {
	p, _ := testProvider()
	go func() {
		time.Sleep(300 * time.Millisecond)
		_, _ = p.Cancel(context.Background(), nil)
	}()
	start := time.Now()
	_, err := create(t, p, localURN, pm(map[string]any{"create": "sleep 30; echo done"}))
	if err == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("cancel did not stop the command: %v after %v", err, time.Since(start))
	}
}

func TestDetachedChildDoesNotBlock(t *testing.T) {
	p, _ := testProvider()
	start := time.Now()
	outs, err := create(t, p, localURN, pm(map[string]any{"create": "echo started; sleep 30 &"}))
	if err != nil || outs["stdout"].StringValue() != "started" || time.Since(start) > 15*time.Second {
		t.Fatalf("%v %v after %v", err, outs, time.Since(start))
	}
}

func TestUnsupported(t *testing.T) {
	p, _ := testProvider()
	_, err := p.Invoke(context.Background(), &pulumirpc.InvokeRequest{Tok: "command:local:run"})
	if err == nil || !strings.Contains(err.Error(), "not supported by hapx's command provider") {
		t.Fatal(err)
	}
	_, err = p.Check(context.Background(), &pulumirpc.CheckRequest{Urn: "urn:pulumi:t::p::command:remote:CopyToRemote::x"})
	if err == nil || !strings.Contains(err.Error(), "not supported by hapx's command provider") {
		t.Fatal(err)
	}
}

func TestOperationTimeout(t *testing.T) {
	p, _ := testProvider()
	ins := checked(t, p, localURN, pm(map[string]any{"create": "sleep 30"}))
	start := time.Now()
	_, err := p.Create(context.Background(), &pulumirpc.CreateRequest{Urn: localURN, Properties: wire(t, ins), Timeout: 0.5})
	if err == nil || !strings.Contains(err.Error(), "deadline exceeded") || time.Since(start) > 10*time.Second {
		t.Fatalf("%v after %v", err, time.Since(start))
	}
}
