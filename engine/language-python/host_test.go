package main

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"github.com/pulumi/pulumi/sdk/v3/python/toolchain"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestParseArgs(t *testing.T) {
	c := parseArgs([]string{"--logtostderr", "-v=9", "--tracing", "http://t", "-root=/r",
		"--unknown-flag", "127.0.0.1:1234"})
	want := cliArgs{engineAddress: "127.0.0.1:1234", tracing: "http://t", root: "/r", logToStderr: true, verbose: 9}
	if c != want {
		t.Fatalf("got %+v, want %+v", c, want)
	}
	c = parseArgs([]string{"-virtualenv", "venv", "-toolchain=pip", "localhost:1"})
	if c.virtualenv != "venv" || c.toolchain != "pip" || c.engineAddress != "localhost:1" {
		t.Fatalf("got %+v", c)
	}
}

func programInfo(t *testing.T, root string, opts map[string]any) *pulumirpc.ProgramInfo {
	s, err := structpb.NewStruct(opts)
	if err != nil {
		t.Fatal(err)
	}
	return &pulumirpc.ProgramInfo{RootDirectory: root, ProgramDirectory: root, EntryPoint: ".", Options: s}
}

func TestResolveOptionsVirtualenv(t *testing.T) {
	root := t.TempDir()
	cases := []struct {
		opts map[string]any
		cli  cliArgs
		want string
	}{
		{map[string]any{"toolchain": "pip", "virtualenv": ".venv"}, cliArgs{}, filepath.Join(root, ".venv")},
		{map[string]any{"virtualenv": "/abs/venv"}, cliArgs{}, "/abs/venv"},
		{map[string]any{}, cliArgs{virtualenv: "flagvenv"}, filepath.Join(root, "flagvenv")},
		{map[string]any{}, cliArgs{}, ""}, // no venv: python3 from PATH
	}
	for _, c := range cases {
		opts, err := resolveOptions(programInfo(t, root, c.opts), c.cli, "/cwd")
		if err != nil {
			t.Fatal(err)
		}
		tc, err := toolchain.ResolveToolchain(opts)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := tc.VirtualEnvPath(context.Background())
		if got != c.want {
			t.Errorf("opts %v: venv %q, want %q", c.opts, got, c.want)
		}
	}

	if _, err := resolveOptions(programInfo(t, root, map[string]any{"toolchain": "conda"}), cliArgs{}, ""); err == nil {
		t.Error("expected error for unknown toolchain")
	}
	if _, err := resolveOptions(programInfo(t, root, map[string]any{"virtualenv": 3}), cliArgs{}, ""); err == nil {
		t.Error("expected error for non-string virtualenv")
	}
	// Without ProgramInfo the root falls back to the command line, then the working directory.
	opts, _ := resolveOptions(nil, cliArgs{}, "/cwd")
	if opts.Root != "/cwd" || opts.ProgramDir != "/cwd" {
		t.Errorf("fallback root: %+v", opts)
	}
}

func TestShimArgsAndConfig(t *testing.T) {
	req := &pulumirpc.RunRequest{
		Project: "p", Stack: "s", Pwd: "/prog", DryRun: true, Parallel: 8,
		MonitorAddress: "127.0.0.1:5", Organization: "org", Args: []string{"a1"},
		Info:             &pulumirpc.ProgramInfo{RootDirectory: "/root", ProgramDirectory: "/prog", EntryPoint: "."},
		Config:           map[string]string{"p:greeting": "hi"},
		ConfigSecretKeys: []string{"p:pw"},
	}
	got := shimArgs("/bin/shim", "127.0.0.1:6", "", req)
	want := []string{"-u", "/bin/shim", "--monitor", "127.0.0.1:5", "--engine", "127.0.0.1:6", "--project", "p",
		"--root_directory", "/root", "--stack", "s", "--pwd", "/prog", "--dry_run", "true", "--parallel", "8",
		"--organization", "org", "/prog", "a1"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %q\nwant %q", got, want)
	}

	env, err := configEnv(req)
	if err != nil {
		t.Fatal(err)
	}
	wantEnv := []string{`PULUMI_CONFIG={"p:greeting":"hi"}`, `PULUMI_CONFIG_SECRET_KEYS=["p:pw"]`}
	if !reflect.DeepEqual(env, wantEnv) {
		t.Fatalf("got %q", env)
	}
	env, _ = configEnv(&pulumirpc.RunRequest{})
	if !reflect.DeepEqual(env, []string{"PULUMI_CONFIG={}", "PULUMI_CONFIG_SECRET_KEYS=[]"}) {
		t.Fatalf("empty config: got %q", env)
	}
}

func TestFindPluginPackages(t *testing.T) {
	site1, site2 := t.TempDir(), t.TempDir()
	write := func(dir, pkg, content string) {
		if err := os.MkdirAll(filepath.Join(dir, pkg), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, pkg, "pulumi-plugin.json"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(site1, "pulumi_command", `{"resource": true, "name": "command", "version": "1.2.1"}`)
	write(site1, "pulumi_policy", `{"resource": false, "name": "policy"}`)
	write(site1, "pulumi_random_thing", `{"resource": true, "version": "v4.0.0", "server": "https://example.com"}`)
	write(site1, "pulumi_tf", `{"resource": true, "name": "terraform-provider", "version": "0.3.0",
		"parameterization": {"name": "aws", "version": "5.0.0", "value": "aGk="}}`)
	write(site2, "pulumi_command", `{"resource": true, "name": "command", "version": "1.2.1"}`) // duplicate

	got, err := findPluginPackages([]string{site1, site2, filepath.Join(site1, "missing")})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("got %d packages: %+v", len(got), got)
	}
	if got[0].Name != "command" || got[0].Version != "1.2.1" {
		t.Errorf("got %+v", got[0])
	}
	if got[1].Name != "random-thing" || got[1].Version != "4.0.0" || got[1].Server != "https://example.com" {
		t.Errorf("got %+v", got[1])
	}
	if p := got[2].Parameterization; got[2].Name != "terraform-provider" || p == nil || p.Name != "aws" ||
		string(p.Value) != "hi" {
		t.Errorf("got %+v", got[2])
	}
}
