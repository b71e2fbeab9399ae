//go:build tools

// Records the CLI's main package as a dependency so `go mod tidy` pins
// everything it needs in go.sum; build.sh then runs `go build` on it.
package tools

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
