// Command pulumi-resource-command is hapx's own "command" resource provider.
//
// The official pulumi-command provider cannot be fetched on the build machines
// (no GitHub, no get.pulumi.com, and its Go module is not on the module proxy),
// so this binary implements the part of its protocol that hapx uses:
// command:local:Command and command:remote:Command, with the property names and
// defaults of the pulumi_command 1.2.1 SDK. The engine finds it on PATH.
package main

import (
	"fmt"
	"os"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// version is what the SDK asks for (pulumi-plugin.json of pulumi_command 1.2.1),
// so the engine treats this binary as that plugin.
const version = "1.2.1"

func main() {
	err := provider.Main("command", func(host *provider.HostClient) (pulumirpc.ResourceProviderServer, error) {
		return newProvider(host), nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
