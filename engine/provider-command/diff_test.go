package main

import (
	"context"
	"slices"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

func TestDiffRules(t *testing.T) {
	p, _ := testProvider()
	base := func() resource.PropertyMap {
		return pm(map[string]any{
			"create":      "echo hi",
			"stdin":       secret("x"),
			"triggers":    []any{"a", 1.0},
			"environment": map[string]any{"A": "1"},
		})
	}
	olds := checked(t, p, localURN, base())
	olds["stdout"], olds["stderr"] = resource.NewProperty("hi"), resource.NewProperty("")

	diff := func(mut func(resource.PropertyMap)) *pulumirpc.DiffResponse {
		t.Helper()
		news := base()
		mut(news)
		resp, err := p.Diff(context.Background(), &pulumirpc.DiffRequest{
			Urn: localURN, Olds: wire(t, olds), News: wire(t, checked(t, p, localURN, news)),
		})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	if r := diff(func(resource.PropertyMap) {}); r.Changes != pulumirpc.DiffResponse_DIFF_NONE || len(r.Replaces) > 0 {
		t.Fatalf("no change: %v", r)
	}
	r := diff(func(m resource.PropertyMap) { m["triggers"] = resource.NewPropertyValue([]any{"b", 1.0}) })
	if r.Changes != pulumirpc.DiffResponse_DIFF_SOME || !slices.Equal(r.Replaces, []string{"triggers"}) ||
		r.DetailedDiff["triggers"].Kind != pulumirpc.PropertyDiff_UPDATE_REPLACE {
		t.Fatalf("triggers: %v", r)
	}
	r = diff(func(m resource.PropertyMap) { m["triggers"] = resource.MakeComputed(resource.NewProperty("")) })
	if !slices.Equal(r.Replaces, []string{"triggers"}) {
		t.Fatalf("unknown triggers: %v", r)
	}
	r = diff(func(m resource.PropertyMap) { m["stdin"] = secret("y") })
	if r.Changes != pulumirpc.DiffResponse_DIFF_SOME || len(r.Replaces) > 0 || !slices.Equal(r.Diffs, []string{"stdin"}) {
		t.Fatalf("stdin: %v", r)
	}
	r = diff(func(m resource.PropertyMap) { m["environment"] = resource.NewPropertyValue(map[string]any{"A": "2"}) })
	if len(r.Replaces) > 0 || !slices.Equal(r.Diffs, []string{"environment"}) {
		t.Fatalf("environment: %v", r)
	}
	r = diff(func(m resource.PropertyMap) { m["delete"] = resource.NewProperty("rm x") })
	if len(r.Replaces) > 0 || r.DetailedDiff["delete"].Kind != pulumirpc.PropertyDiff_ADD {
		t.Fatalf("delete added: %v", r)
	}
	r = diff(func(m resource.PropertyMap) { delete(m, "triggers") })
	if r.DetailedDiff["triggers"].Kind != pulumirpc.PropertyDiff_DELETE_REPLACE {
		t.Fatalf("triggers removed: %v", r)
	}
}

func TestDiffConnectionReplaces(t *testing.T) {
	p, _ := testProvider()
	conn := func(host string) resource.PropertyValue {
		return secret(map[string]any{"host": host, "privateKey": "k"})
	}
	olds := checked(t, p, remoteURN, pm(map[string]any{"create": "true", "connection": conn("10.0.0.1")}))
	for host, want := range map[string]bool{"10.0.0.1": false, "10.0.0.2": true} {
		news := checked(t, p, remoteURN, pm(map[string]any{"create": "true", "connection": conn(host)}))
		r, err := p.Diff(context.Background(), &pulumirpc.DiffRequest{Urn: remoteURN, Olds: wire(t, olds), News: wire(t, news)})
		if err != nil || slices.Contains(r.Replaces, "connection") != want {
			t.Fatalf("%s: %v %v", host, err, r)
		}
	}
}

func TestCheckDefaultsKeepConnectionSecret(t *testing.T) {
	p, _ := testProvider()
	ins := checked(t, p, remoteURN, pm(map[string]any{"create": "true", "connection": secret(map[string]any{"host": "h"})}))
	c := ins["connection"]
	if !c.IsSecret() {
		t.Fatal("connection lost its secret mark")
	}
	got := parseConn(plain(c))
	if got.Port != 22 || got.User != "root" || got.DialErrorLimit != 10 || got.PerDialTimeout != 15 {
		t.Fatalf("defaults: %+v", got)
	}
	resp, err := p.Check(context.Background(), &pulumirpc.CheckRequest{Urn: remoteURN, News: wire(t, pm(map[string]any{"create": "x"}))})
	if err != nil || len(resp.Failures) != 1 {
		t.Fatalf("missing connection must fail check: %v %v", err, resp.GetFailures())
	}
}
