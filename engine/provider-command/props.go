package main

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"google.golang.org/protobuf/types/known/structpb"
)

const (
	localCommand  = "command:local:Command"
	remoteCommand = "command:remote:Command"
)

// Logging modes (the Logging enums of both SDK modules).
const (
	logStdout         = "stdout"
	logStderr         = "stderr"
	logStdoutAndError = "stdoutAndStderr"
	logNone           = "none"
)

func unmarshal(s *structpb.Struct) (resource.PropertyMap, error) {
	return plugin.UnmarshalProperties(s, plugin.MarshalOptions{
		KeepUnknowns: true, KeepSecrets: true, KeepResources: true,
	})
}

func marshal(m resource.PropertyMap, keepUnknowns bool) (*structpb.Struct, error) {
	return plugin.MarshalProperties(m, plugin.MarshalOptions{
		KeepUnknowns: keepUnknowns, KeepSecrets: true, KeepResources: true,
	})
}

// plain strips secret wrappers at every level, for reading values.
func plain(v resource.PropertyValue) resource.PropertyValue {
	switch {
	case v.IsSecret():
		return plain(v.SecretValue().Element)
	case v.IsArray():
		out := make([]resource.PropertyValue, len(v.ArrayValue()))
		for i, e := range v.ArrayValue() {
			out[i] = plain(e)
		}
		return resource.NewProperty(out)
	case v.IsObject():
		out := resource.PropertyMap{}
		for k, e := range v.ObjectValue() {
			out[k] = plain(e)
		}
		return resource.NewProperty(out)
	}
	return v
}

func get(m resource.PropertyMap, key string) resource.PropertyValue {
	return plain(m[resource.PropertyKey(key)])
}

func scalarString(v resource.PropertyValue) string {
	switch {
	case v.IsString():
		return v.StringValue()
	case v.IsNumber():
		return strconv.FormatFloat(v.NumberValue(), 'f', -1, 64)
	case v.IsBool():
		return strconv.FormatBool(v.BoolValue())
	}
	return ""
}

func getString(m resource.PropertyMap, key string) string { return scalarString(get(m, key)) }

func getBool(m resource.PropertyMap, key string, def bool) bool {
	if v := get(m, key); v.IsBool() {
		return v.BoolValue()
	}
	return def
}

func getInt(m resource.PropertyMap, key string, def int) int {
	if v := get(m, key); v.IsNumber() {
		return int(v.NumberValue())
	}
	return def
}

func getStrings(m resource.PropertyMap, key string) []string {
	var out []string
	if v := get(m, key); v.IsArray() {
		for _, e := range v.ArrayValue() {
			out = append(out, scalarString(e))
		}
	}
	return out
}

func getStringMap(m resource.PropertyMap, key string) map[string]string {
	out := map[string]string{}
	if v := get(m, key); v.IsObject() {
		for k, e := range v.ObjectValue() {
			out[string(k)] = scalarString(e)
		}
	}
	return out
}

// commandSpec is one resource's inputs as the runners need them.
type commandSpec struct {
	Create, Update, Delete string
	Stdin                  string
	Env                    map[string]string
	Interpreter            []string // local only
	Dir                    string   // local only
	Logging                string
	AddPreviousOutputInEnv bool
	Conn                   *connSpec // remote only
}

type connSpec struct {
	Host, User, Password, PrivateKey, PrivateKeyPassword string
	AgentSocketPath, HostKey                             string
	Port, DialErrorLimit, PerDialTimeout                 int
	HasProxy                                             bool
}

func parseSpec(typ string, m resource.PropertyMap) commandSpec {
	s := commandSpec{
		Create:                 getString(m, "create"),
		Update:                 getString(m, "update"),
		Delete:                 getString(m, "delete"),
		Stdin:                  getString(m, "stdin"),
		Env:                    getStringMap(m, "environment"),
		Interpreter:            getStrings(m, "interpreter"),
		Dir:                    getString(m, "dir"),
		Logging:                getString(m, "logging"),
		AddPreviousOutputInEnv: getBool(m, "addPreviousOutputInEnv", true),
	}
	if s.Logging == "" {
		s.Logging = logStdoutAndError
	}
	if typ == remoteCommand {
		c := parseConn(get(m, "connection"))
		s.Conn = &c
	}
	return s
}

func parseConn(v resource.PropertyValue) connSpec {
	m := resource.PropertyMap{}
	if v.IsObject() {
		m = v.ObjectValue()
	}
	return connSpec{
		Host:               getString(m, "host"),
		Port:               getInt(m, "port", 22),
		User:               defaultString(getString(m, "user"), "root"),
		Password:           getString(m, "password"),
		PrivateKey:         getString(m, "privateKey"),
		PrivateKeyPassword: getString(m, "privateKeyPassword"),
		AgentSocketPath:    getString(m, "agentSocketPath"),
		HostKey:            getString(m, "hostKey"),
		DialErrorLimit:     getInt(m, "dialErrorLimit", 10),
		PerDialTimeout:     getInt(m, "perDialTimeout", 15),
		HasProxy:           get(m, "proxy").HasValue(),
	}
}

func defaultString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (s commandSpec) logs(stream string) bool {
	return s.Logging == logStdoutAndError || s.Logging == stream
}

// setDefault fills key when it is absent or null, leaving unknowns alone.
func setDefault(m resource.PropertyMap, key string, v resource.PropertyValue) {
	if cur, ok := m[resource.PropertyKey(key)]; !ok || cur.IsNull() {
		m[resource.PropertyKey(key)] = v
	}
}

// applyDefaults gives the checked inputs the SDK's documented defaults, so
// state and diffs do not depend on which SDK (or none) filled them in, and
// reports inputs the provider cannot work with.
func applyDefaults(typ string, m resource.PropertyMap) []string {
	var failures []string
	setDefault(m, "addPreviousOutputInEnv", resource.NewProperty(true))
	if v := get(m, "logging"); v.IsString() && !slices.Contains(
		[]string{logStdout, logStderr, logStdoutAndError, logNone}, v.StringValue()) {
		failures = append(failures, fmt.Sprintf("logging: %q is not one of stdout, stderr, stdoutAndStderr, none", v.StringValue()))
	}
	if typ != remoteCommand {
		return failures
	}
	conn, ok := m["connection"]
	if !ok || conn.IsNull() {
		return append(failures, "connection: required")
	}
	// The SDK always wraps connection as a secret; defaults go inside the wrapper.
	inner, secret := conn, false
	if inner.IsSecret() {
		inner, secret = inner.SecretValue().Element, true
	}
	if inner.IsComputed() {
		return failures
	}
	if !inner.IsObject() {
		return append(failures, "connection: must be an object")
	}
	obj := inner.ObjectValue().Copy()
	if h := obj["host"]; !h.ContainsUnknowns() && !plain(h).IsString() {
		failures = append(failures, "connection.host: required")
	}
	setDefault(obj, "port", resource.NewProperty(22.0))
	setDefault(obj, "user", resource.NewProperty("root"))
	setDefault(obj, "dialErrorLimit", resource.NewProperty(10.0))
	setDefault(obj, "perDialTimeout", resource.NewProperty(15.0))
	out := resource.NewProperty(obj)
	if secret {
		out = resource.MakeSecret(out)
	}
	m["connection"] = out
	return failures
}
