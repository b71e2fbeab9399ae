package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/python/toolchain"
)

// pluginJSON is the pulumi-plugin.json file that Pulumi provider SDKs ship inside their
// Python package (e.g. site-packages/pulumi_command/pulumi-plugin.json).
type pluginJSON struct {
	Resource         bool   `json:"resource"`
	Name             string `json:"name"`
	Version          string `json:"version"`
	Server           string `json:"server"`
	Parameterization *struct {
		Name    string `json:"name"`
		Version string `json:"version"`
		Value   []byte `json:"value"` // base64 in the file
	} `json:"parameterization"`
}

// importPath asks the environment's interpreter for its sys.path, so that venvs, system
// installs and .pth-added directories are all covered without guessing lib/pythonX.Y paths.
func importPath(ctx context.Context, tc toolchain.Toolchain, dir string) ([]string, error) {
	cmd, err := tc.Command(ctx, "-c", "import json, sys; print(json.dumps([p for p in sys.path if p]))")
	if err != nil {
		return nil, err
	}
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("asking %s for its sys.path: %w", cmd.Path, err)
	}
	var dirs []string
	if err := json.Unmarshal(out, &dirs); err != nil {
		return nil, fmt.Errorf("parsing sys.path from %s: %w", cmd.Path, err)
	}
	return dirs, nil
}

// findPluginPackages reads <dir>/<package>/pulumi-plugin.json for every package directly
// under each dir and returns the resource plugins, deduplicated (the first dir wins, as in
// Python's own import order) and sorted by name.
func findPluginPackages(dirs []string) ([]pluginJSON, error) {
	seen := map[string]bool{}
	var result []pluginJSON
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join(dir, "*", "pulumi-plugin.json"))
		if err != nil {
			return nil, err
		}
		sort.Strings(files)
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			var p pluginJSON
			if err := json.Unmarshal(data, &p); err != nil {
				return nil, fmt.Errorf("parsing %s: %w", f, err)
			}
			if !p.Resource {
				continue
			}
			if p.Name == "" {
				// Older SDKs omit the name: derive it from the package (pulumi_foo_bar -> foo-bar).
				pkg := filepath.Base(filepath.Dir(f))
				p.Name = strings.ReplaceAll(strings.TrimPrefix(pkg, "pulumi_"), "_", "-")
			}
			p.Version = strings.TrimPrefix(p.Version, "v")
			key := p.Name + "@" + p.Version
			if p.Parameterization != nil {
				key += "/" + p.Parameterization.Name + "@" + p.Parameterization.Version
			}
			if seen[key] {
				continue
			}
			seen[key] = true
			result = append(result, p)
		}
	}
	sort.SliceStable(result, func(i, j int) bool { return result[i].Name < result[j].Name })
	return result, nil
}
