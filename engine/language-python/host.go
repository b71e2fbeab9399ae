package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"github.com/pulumi/pulumi/sdk/v3/python/toolchain"
	"google.golang.org/protobuf/types/known/emptypb"
)

// The exec shim exits with this code after it has already reported the error to the user
// through the engine; the engine must then stop without printing anything more.
const exitCodeErrorAlreadyShown = 32

type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	shim string
	cli  cliArgs

	mu            sync.Mutex
	engineAddress string
	rootDir       string // from Handshake, used when a request carries no root
}

func newHost(shim string, cli cliArgs) *host {
	return &host{shim: shim, cli: cli, engineAddress: cli.engineAddress, rootDir: cli.root}
}

// Handshake is only sent by engines that attach to an already running host; it may carry
// the engine address and root directory that would otherwise come from the command line.
func (h *host) Handshake(_ context.Context, req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if req.GetEngineAddress() != "" {
		h.engineAddress = req.GetEngineAddress()
	}
	if req.GetRootDirectory() != "" {
		h.rootDir = req.GetRootDirectory()
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *host) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: Version}, nil
}

// Cancel has nothing to do: a running program is killed through its RPC context.
func (h *host) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

// toolchainFor resolves the Python toolchain (pip/poetry/uv plus virtualenv) for a program.
func (h *host) toolchainFor(info *pulumirpc.ProgramInfo) (toolchain.Toolchain, toolchain.PythonOptions, error) {
	h.mu.Lock()
	cli := h.cli
	cli.root = h.rootDir
	h.mu.Unlock()
	cwd, _ := os.Getwd()
	opts, err := resolveOptions(info, cli, cwd)
	if err != nil {
		return nil, opts, err
	}
	tc, err := toolchain.ResolveToolchain(opts)
	return tc, opts, err
}

// resolveOptions merges the program's runtime options (Pulumi.yaml `runtime.options`, sent
// in ProgramInfo) with command-line fallbacks into toolchain options. A relative virtualenv
// is resolved by the toolchain package against Root, the directory holding Pulumi.yaml.
func resolveOptions(info *pulumirpc.ProgramInfo, cli cliArgs, cwd string) (toolchain.PythonOptions, error) {
	root := firstNonEmpty(info.GetRootDirectory(), cli.root, info.GetProgramDirectory(), cwd)
	opts := toolchain.PythonOptions{
		Root:       root,
		ProgramDir: firstNonEmpty(info.GetProgramDirectory(), root),
	}

	raw := map[string]any{}
	if o := info.GetOptions(); o != nil {
		raw = o.AsMap()
	}
	str := func(key, fallback string) (string, error) {
		v, ok := raw[key]
		if !ok {
			return fallback, nil
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("runtime option %q must be a string, got %T", key, v)
		}
		return s, nil
	}

	var err error
	if opts.Virtualenv, err = str("virtualenv", cli.virtualenv); err != nil {
		return opts, err
	}
	tcName, err := str("toolchain", cli.toolchain)
	if err != nil {
		return opts, err
	}
	switch tcName {
	case "":
		opts.Toolchain = toolchain.Auto
	case "pip":
		opts.Toolchain = toolchain.Pip
	case "poetry":
		opts.Toolchain = toolchain.Poetry
	case "uv":
		opts.Toolchain = toolchain.Uv
	default:
		return opts, fmt.Errorf("unsupported Python toolchain %q (expected pip, poetry or uv)", tcName)
	}
	// Type checking before a run (the `typechecker` option) is not supported by this host.
	return opts, nil
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// shimArgs builds the Python command line that runs the user program through the exec shim.
func shimArgs(shim, engineAddress, tracing string, req *pulumirpc.RunRequest) []string {
	// -u: unbuffered, so prints reach the engine promptly and are not lost if Python dies.
	args := []string{"-u", shim}
	add := func(k, v string) {
		if v != "" {
			args = append(args, "--"+k, v)
		}
	}
	add("monitor", req.GetMonitorAddress())
	add("engine", engineAddress)
	add("project", req.GetProject())
	add("root_directory", req.GetInfo().GetRootDirectory())
	add("stack", req.GetStack())
	add("pwd", req.GetPwd())
	add("dry_run", fmt.Sprint(req.GetDryRun()))
	add("parallel", fmt.Sprint(req.GetParallel()))
	add("tracing", tracing)
	add("organization", req.GetOrganization())

	// The entry point is relative to the program directory; "." means its __main__.py.
	program := firstNonEmpty(req.GetInfo().GetEntryPoint(), req.GetProgram(), ".")
	if dir := req.GetInfo().GetProgramDirectory(); dir != "" && !filepath.IsAbs(program) {
		program = filepath.Join(dir, program)
	}
	args = append(args, program)
	return append(args, req.GetArgs()...)
}

// configEnv returns the variables through which the Python SDK receives stack config.
func configEnv(req *pulumirpc.RunRequest) ([]string, error) {
	cfg := req.GetConfig()
	if cfg == nil {
		cfg = map[string]string{}
	}
	secretKeys := req.GetConfigSecretKeys()
	if secretKeys == nil {
		secretKeys = []string{} // encode as [], not null
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	keysJSON, err := json.Marshal(secretKeys)
	if err != nil {
		return nil, err
	}
	return []string{"PULUMI_CONFIG=" + string(cfgJSON), "PULUMI_CONFIG_SECRET_KEYS=" + string(keysJSON)}, nil
}

func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	tc, _, err := h.toolchainFor(req.GetInfo())
	if err != nil {
		return nil, err
	}
	// A missing virtualenv gets a helpful message instead of "python: not found".
	if err := tc.ValidateVenv(ctx); err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}

	h.mu.Lock()
	engine := h.engineAddress
	h.mu.Unlock()
	cmd, err := tc.Command(ctx, shimArgs(h.shim, engine, h.cli.tracing, req)...)
	if err != nil {
		return nil, err
	}
	env, err := configEnv(req)
	if err != nil {
		return nil, fmt.Errorf("serializing config: %w", err)
	}
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Dir = firstNonEmpty(req.GetPwd(), req.GetInfo().GetProgramDirectory())
	// The engine captures our stdout/stderr and shows it as program output.
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr

	err = cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return &pulumirpc.RunResponse{}, nil
	case errors.As(err, &exitErr) && exitErr.ExitCode() == exitCodeErrorAlreadyShown:
		return &pulumirpc.RunResponse{Bail: true}, nil
	case errors.As(err, &exitErr):
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("program exited with non-zero exit code: %d", exitErr.ExitCode())}, nil
	default:
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("could not run the Python program: %v", err)}, nil
	}
}

func (h *host) GetRequiredPlugins(ctx context.Context, req *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	pkgs, err := h.installedPlugins(ctx, req.GetInfo())
	if err != nil {
		return nil, err
	}
	resp := &pulumirpc.GetRequiredPluginsResponse{}
	for _, p := range pkgs {
		if p.Parameterization != nil {
			continue // parameterized packages can only be described by GetRequiredPackages
		}
		resp.Plugins = append(resp.Plugins, &pulumirpc.PluginDependency{
			Name: p.Name, Kind: "resource", Version: p.Version, Server: p.Server,
		})
	}
	return resp, nil
}

func (h *host) GetRequiredPackages(ctx context.Context, req *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	pkgs, err := h.installedPlugins(ctx, req.GetInfo())
	if err != nil {
		return nil, err
	}
	resp := &pulumirpc.GetRequiredPackagesResponse{}
	for _, p := range pkgs {
		dep := &pulumirpc.PackageDependency{Name: p.Name, Kind: "resource", Version: p.Version, Server: p.Server}
		if pp := p.Parameterization; pp != nil {
			dep.Parameterization = &pulumirpc.PackageParameterization{
				Name: pp.Name, Version: pp.Version, Value: pp.Value,
			}
		}
		resp.Packages = append(resp.Packages, dep)
	}
	return resp, nil
}

// installedPlugins lists the resource plugins declared by the Python packages installed in
// the program's environment.
func (h *host) installedPlugins(ctx context.Context, info *pulumirpc.ProgramInfo) ([]pluginJSON, error) {
	tc, _, err := h.toolchainFor(info)
	if err != nil {
		return nil, err
	}
	if err := tc.ValidateVenv(ctx); err != nil {
		return nil, err
	}
	dirs, err := importPath(ctx, tc, info.GetProgramDirectory())
	if err != nil {
		return nil, err
	}
	return findPluginPackages(dirs)
}

func (h *host) InstallDependencies(req *pulumirpc.InstallDependenciesRequest,
	server pulumirpc.LanguageRuntime_InstallDependenciesServer,
) error {
	tc, opts, err := h.toolchainFor(req.GetInfo())
	if err != nil {
		return err
	}
	closer, stdout, stderr, err := rpcutil.MakeInstallDependenciesStreams(server, req.GetIsTerminal())
	if err != nil {
		return err
	}
	defer closer.Close()
	// For pip this (re)creates the virtualenv and runs `pip install -r requirements.txt`.
	if err := tc.InstallDependencies(server.Context(), opts.ProgramDir, req.GetUseLanguageVersionTools(),
		true /*showOutput*/, stdout, stderr); err != nil {
		return err
	}
	return closer.Close()
}

func (h *host) GetProgramDependencies(ctx context.Context, req *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	tc, _, err := h.toolchainFor(req.GetInfo())
	if err != nil {
		return nil, err
	}
	pkgs, err := tc.ListPackages(ctx, req.GetTransitiveDependencies()) // pip list --format json
	if err != nil {
		return nil, err
	}
	resp := &pulumirpc.GetProgramDependenciesResponse{}
	for _, p := range pkgs {
		resp.Dependencies = append(resp.Dependencies, &pulumirpc.DependencyInfo{Name: p.Name, Version: p.Version})
	}
	return resp, nil
}

func (h *host) About(ctx context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	tc, opts, err := h.toolchainFor(req.GetInfo())
	if err != nil {
		return nil, err
	}
	info, err := tc.About(ctx)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.AboutResponse{
		Executable: info.PythonExecutable,
		Version:    info.PythonVersion.String(),
		Metadata:   map[string]string{"toolchain": toolchain.Name(opts.Toolchain)},
	}, nil
}
