package main

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/types/known/structpb"
)

const (
	localURN  = "urn:pulumi:t::p::command:local:Command::c"
	remoteURN = "urn:pulumi:t::p::command:remote:Command::r"
)

// recorder stands in for the engine's log service.
type recorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) Log(_ context.Context, sev diag.Severity, _ resource.URN, msg string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, string(sev)+": "+msg)
	return nil
}

func (r *recorder) LogStatus(ctx context.Context, sev diag.Severity, urn resource.URN, msg string) error {
	return r.Log(ctx, sev, urn, msg)
}

func (r *recorder) text() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.msgs, "\n")
}

func testProvider() (*commandProvider, *recorder) {
	p := newProvider(nil)
	rec := &recorder{}
	p.host = rec
	return p, rec
}

func pm(m map[string]any) resource.PropertyMap {
	out := resource.PropertyMap{}
	for k, v := range m {
		if pv, ok := v.(resource.PropertyValue); ok {
			out[resource.PropertyKey(k)] = pv
		} else {
			out[resource.PropertyKey(k)] = resource.NewPropertyValue(v)
		}
	}
	return out
}

func secret(v any) resource.PropertyValue { return resource.MakeSecret(resource.NewPropertyValue(v)) }

func wire(t *testing.T, m resource.PropertyMap) *structpb.Struct {
	t.Helper()
	s, err := marshal(m, true)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func unwire(t *testing.T, s *structpb.Struct) resource.PropertyMap {
	t.Helper()
	m, err := unmarshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checked runs Check like the engine does before Create/Update/Diff.
func checked(t *testing.T, p *commandProvider, urn string, ins resource.PropertyMap) resource.PropertyMap {
	t.Helper()
	resp, err := p.Check(context.Background(), &pulumirpc.CheckRequest{Urn: urn, News: wire(t, ins)})
	if err != nil || len(resp.Failures) > 0 {
		t.Fatalf("check: %v %v", err, resp.GetFailures())
	}
	return unwire(t, resp.Inputs)
}

func create(t *testing.T, p *commandProvider, urn string, ins resource.PropertyMap) (resource.PropertyMap, error) {
	t.Helper()
	resp, err := p.Create(context.Background(), &pulumirpc.CreateRequest{Urn: urn, Properties: wire(t, checked(t, p, urn, ins))})
	if err != nil {
		return nil, err
	}
	if resp.Id == "" {
		t.Fatal("create returned no id")
	}
	return unwire(t, resp.Properties), nil
}

func update(t *testing.T, p *commandProvider, urn string, olds, ins resource.PropertyMap) (resource.PropertyMap, error) {
	t.Helper()
	resp, err := p.Update(context.Background(), &pulumirpc.UpdateRequest{
		Urn: urn, Id: "x", Olds: wire(t, olds), News: wire(t, checked(t, p, urn, ins)),
	})
	if err != nil {
		return nil, err
	}
	return unwire(t, resp.Properties), nil
}

func destroy(t *testing.T, p *commandProvider, urn string, state resource.PropertyMap) error {
	t.Helper()
	_, err := p.Delete(context.Background(), &pulumirpc.DeleteRequest{Urn: urn, Id: "x", Properties: wire(t, state)})
	return err
}
