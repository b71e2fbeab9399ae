// Command pulumi-language-python is a minimal Pulumi language host for Python programs.
//
// The official host (sdk/python/cmd/pulumi-language-python) is not published on the Go
// module proxy, so hapx builds this small replacement. It implements the
// pulumirpc.LanguageRuntime gRPC service and runs programs through the
// pulumi-language-python-exec shim shipped with the Pulumi SDK, which must sit next to
// this binary.
//
// The engine starts it as `pulumi-language-python [flags] ENGINE_ADDRESS`, reads the
// port printed on the first line of stdout, and kills the process when it is done.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/logging"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
)

// Version reported by GetPluginInfo; matches the Pulumi SDK/CLI this host is built against.
const Version = "3.260.0"

const execShimName = "pulumi-language-python-exec"

// cliArgs holds what the engine (or older CLIs) may pass on the command line.
type cliArgs struct {
	engineAddress string
	tracing       string
	root          string
	virtualenv    string // only used when the program info carries no options
	toolchain     string
	typechecker   string
	logToStderr   bool
	verbose       int
}

// parseArgs parses the command line by hand rather than with the flag package, because the
// engine may pass flags this host does not know (e.g. logging flags added in later
// versions) and an unknown flag must not make the host exit. Flags may be written with one
// or two dashes, as `-name=value` or `-name value`. Unknown flags are skipped; an unknown
// flag is assumed to take no separate value. The first positional argument is the engine
// address.
func parseArgs(args []string) cliArgs {
	var c cliArgs
	valued := map[string]*string{
		"tracing": &c.tracing, "root": &c.root, "virtualenv": &c.virtualenv,
		"toolchain": &c.toolchain, "typechecker": &c.typechecker,
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			if i+1 < len(args) && c.engineAddress == "" {
				c.engineAddress = args[i+1]
			}
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			if c.engineAddress == "" {
				c.engineAddress = a
			}
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch {
		case valued[name] != nil:
			if !hasValue && i+1 < len(args) {
				i++
				value = args[i]
			}
			*valued[name] = value
		case name == "logtostderr":
			c.logToStderr = !hasValue || value == "true"
		case name == "v":
			if !hasValue && i+1 < len(args) {
				i++
				value = args[i]
			}
			c.verbose, _ = strconv.Atoi(value)
		}
	}
	return c
}

// findExecShim locates the exec shim next to this binary, looking both at the path we were
// started from and at the symlink-resolved path.
func findExecShim() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	candidates := []string{filepath.Join(filepath.Dir(exe), execShimName)}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		candidates = append(candidates, filepath.Join(filepath.Dir(resolved), execShimName))
	}
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return c, nil
		}
	}
	return "", fmt.Errorf("could not find %s next to %s", execShimName, exe)
}

func main() {
	args := parseArgs(os.Args[1:])
	logging.InitLogging(args.logToStderr, args.verbose, false)

	shim, err := findExecShim()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-python: %v\n", err)
		os.Exit(1)
	}

	host := newHost(shim, args)
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, host)
			return nil
		},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-python: could not start RPC server: %v\n", err)
		os.Exit(1)
	}

	// Plugin protocol: the first line on stdout is the port the engine should dial.
	fmt.Printf("%d\n", handle.Port)

	// Serve until the engine kills us (or the server stops on its own).
	if err := <-handle.Done; err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-python: %v\n", err)
		os.Exit(1)
	}
}
