package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"

	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/types/known/emptypb"
)

// hostLogger is the part of provider.HostClient used here; tests substitute a recorder.
type hostLogger interface {
	Log(ctx context.Context, sev diag.Severity, urn resource.URN, msg string) error
	LogStatus(ctx context.Context, sev diag.Severity, urn resource.URN, msg string) error
}

type commandProvider struct {
	pulumirpc.UnimplementedResourceProviderServer

	mu   sync.Mutex
	host hostLogger // nil until the engine address is known (attach mode)

	// root is cancelled by Cancel; every running command derives from it so
	// that the engine's cancellation kills local processes and remote sessions.
	root   context.Context
	cancel context.CancelFunc
}

func newProvider(host *provider.HostClient) *commandProvider {
	p := &commandProvider{}
	p.root, p.cancel = context.WithCancel(context.Background())
	if host != nil { // avoid storing a typed nil in the interface
		p.host = host
	}
	return p
}

func (p *commandProvider) logger() hostLogger {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.host
}

func (p *commandProvider) attach(addr string) error {
	if addr == "" || p.logger() != nil {
		return nil
	}
	host, err := provider.NewHostClient(addr)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.host = host
	p.mu.Unlock()
	return nil
}

// opContext ends when either the request or the provider (Cancel) ends.
func (p *commandProvider) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(p.root, cancel)
	return ctx, func() { stop(); cancel() }
}

func (p *commandProvider) Handshake(_ context.Context, req *pulumirpc.ProviderHandshakeRequest) (*pulumirpc.ProviderHandshakeResponse, error) {
	if err := p.attach(req.GetEngineAddress()); err != nil {
		return nil, err
	}
	// Secrets are accepted so that secretness is known here: outputs keep the
	// secret marks of their inputs, and stdout/stderr become secret when a
	// command input is secret (see outputs in lifecycle.go).
	return &pulumirpc.ProviderHandshakeResponse{AcceptSecrets: true}, nil
}

func (p *commandProvider) Attach(_ context.Context, req *pulumirpc.PluginAttach) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, p.attach(req.GetAddress())
}

func (p *commandProvider) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

// GetSchema is only used by tooling (codegen, `pulumi package`), not by
// deployments of a Python program; a minimal valid package schema suffices.
func (p *commandProvider) GetSchema(context.Context, *pulumirpc.GetSchemaRequest) (*pulumirpc.GetSchemaResponse, error) {
	return &pulumirpc.GetSchemaResponse{Schema: `{"name":"command","version":"` + version + `"}`}, nil
}

// The provider has no configuration: accept whatever the engine sends.
func (p *commandProvider) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (p *commandProvider) DiffConfig(context.Context, *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
}

func (p *commandProvider) Configure(context.Context, *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	return &pulumirpc.ConfigureResponse{AcceptSecrets: true, SupportsPreview: true}, nil
}

func (p *commandProvider) Invoke(_ context.Context, req *pulumirpc.InvokeRequest) (*pulumirpc.InvokeResponse, error) {
	return nil, fmt.Errorf("function %s is not supported by hapx's command provider", req.GetTok())
}

func (p *commandProvider) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	p.cancel()
	return &emptypb.Empty{}, nil
}

// Read backs `pulumi refresh`: a command has no live state to compare with,
// so the stored state is returned unchanged (no drift).
func (p *commandProvider) Read(_ context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	return &pulumirpc.ReadResponse{Id: req.GetId(), Properties: req.GetProperties(), Inputs: req.GetInputs()}, nil
}

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// reporter sends messages about one resource to the engine's log.
type reporter struct {
	p   *commandProvider
	urn resource.URN
}

// status is ephemeral: shown in the progress display's Info column while the
// resource is being worked on, like command output lines.
func (r reporter) status(ctx context.Context, msg string) {
	if h := r.p.logger(); h != nil && msg != "" {
		_ = h.LogStatus(ctx, diag.Info, r.urn, msg)
	}
}

func (r reporter) warn(ctx context.Context, msg string) {
	if h := r.p.logger(); h != nil {
		_ = h.Log(ctx, diag.Warning, r.urn, msg)
	}
}
