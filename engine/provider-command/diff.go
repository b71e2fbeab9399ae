package main

import (
	"context"
	"slices"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// replaceKeys force a new resource: triggers exist for exactly that, and a
// different connection means a different machine to run on.
var replaceKeys = []string{"triggers", "connection"}

// updateKeys re-run the command in place (update, or create when update is unset).
var updateKeys = []string{
	"create", "update", "delete", "stdin", "environment", "interpreter", "dir",
	"logging", "addPreviousOutputInEnv", "assetPaths", "archivePaths",
}

// sameValue treats absent and null alike and anything unknown as changed.
// Secretness counts: a value that became secret must reach the state as one.
func sameValue(a, b resource.PropertyValue) bool {
	if !a.HasValue() || !b.HasValue() {
		return !a.HasValue() && !b.HasValue()
	}
	if a.ContainsUnknowns() || b.ContainsUnknowns() {
		return false
	}
	return a.DeepEquals(b)
}

var replaceKind = map[pulumirpc.PropertyDiff_Kind]pulumirpc.PropertyDiff_Kind{
	pulumirpc.PropertyDiff_ADD:    pulumirpc.PropertyDiff_ADD_REPLACE,
	pulumirpc.PropertyDiff_DELETE: pulumirpc.PropertyDiff_DELETE_REPLACE,
	pulumirpc.PropertyDiff_UPDATE: pulumirpc.PropertyDiff_UPDATE_REPLACE,
}

func diffProps(olds, news resource.PropertyMap) *pulumirpc.DiffResponse {
	resp := &pulumirpc.DiffResponse{
		Changes:         pulumirpc.DiffResponse_DIFF_NONE,
		DetailedDiff:    map[string]*pulumirpc.PropertyDiff{},
		HasDetailedDiff: true,
	}
	for _, key := range slices.Concat(replaceKeys, updateKeys) {
		o, n := olds[resource.PropertyKey(key)], news[resource.PropertyKey(key)]
		if sameValue(o, n) {
			continue
		}
		replace := slices.Contains(replaceKeys, key)
		kind := pulumirpc.PropertyDiff_UPDATE
		switch {
		case !o.HasValue():
			kind = pulumirpc.PropertyDiff_ADD
		case !n.HasValue():
			kind = pulumirpc.PropertyDiff_DELETE
		}
		if replace {
			kind = replaceKind[kind]
			resp.Replaces = append(resp.Replaces, key)
		}
		resp.Changes = pulumirpc.DiffResponse_DIFF_SOME
		resp.Diffs = append(resp.Diffs, key)
		resp.DetailedDiff[key] = &pulumirpc.PropertyDiff{Kind: kind, InputDiff: true}
	}
	return resp
}

// Diff compares the stored outputs (which carry the inputs) with the checked news.
func (p *commandProvider) Diff(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	olds, err := unmarshal(req.GetOlds())
	if err != nil {
		return nil, err
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	return diffProps(olds, news), nil
}
