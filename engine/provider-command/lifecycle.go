package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/types/known/emptypb"
)

func checkType(urn string) (string, error) {
	typ := string(resource.URN(urn).Type())
	if typ != localCommand && typ != remoteCommand {
		return "", fmt.Errorf("resource type %s is not supported by hapx's command provider", typ)
	}
	return typ, nil
}

func (p *commandProvider) Check(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	typ, err := checkType(req.GetUrn())
	if err != nil {
		return nil, err
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	resp := &pulumirpc.CheckResponse{}
	for _, f := range applyDefaults(typ, news) {
		resp.Failures = append(resp.Failures, &pulumirpc.CheckFailure{Reason: f})
	}
	resp.Inputs, err = marshal(news, true)
	return resp, err
}

func (p *commandProvider) Create(ctx context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	typ, err := checkType(req.GetUrn())
	if err != nil {
		return nil, err
	}
	ins, err := unmarshal(req.GetProperties())
	if err != nil {
		return nil, err
	}
	if req.GetPreview() {
		outs, err := marshal(previewOutputs(ins), true)
		return &pulumirpc.CreateResponse{Properties: outs}, err
	}
	spec := parseSpec(typ, ins)
	stdout, stderr, err := p.run(ctx, resource.URN(req.GetUrn()), req.GetTimeout(), spec, spec.Create, nil)
	if err != nil {
		return nil, err // nothing is recorded for a failed create
	}
	outs, err := marshal(outputs(ins, stdout, stderr), false)
	return &pulumirpc.CreateResponse{Id: newID(), Properties: outs}, err
}

func (p *commandProvider) Update(ctx context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	typ, err := checkType(req.GetUrn())
	if err != nil {
		return nil, err
	}
	olds, err := unmarshal(req.GetOlds())
	if err != nil {
		return nil, err
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	if req.GetPreview() {
		outs, err := marshal(previewOutputs(news), true)
		return &pulumirpc.UpdateResponse{Properties: outs}, err
	}
	spec := parseSpec(typ, news)
	command := defaultString(spec.Update, spec.Create)
	stdout, stderr := getString(olds, "stdout"), getString(olds, "stderr")
	if command != "" {
		if stdout, stderr, err = p.run(ctx, resource.URN(req.GetUrn()), req.GetTimeout(), spec, command, olds); err != nil {
			return nil, err // the engine keeps the previous state
		}
	}
	outs, err := marshal(outputs(news, stdout, stderr), false)
	return &pulumirpc.UpdateResponse{Properties: outs}, err
}

func (p *commandProvider) Delete(ctx context.Context, req *pulumirpc.DeleteRequest) (*emptypb.Empty, error) {
	typ, err := checkType(req.GetUrn())
	if err != nil {
		return nil, err
	}
	state, err := unmarshal(req.GetProperties())
	if err != nil {
		return nil, err
	}
	spec := parseSpec(typ, state)
	if spec.Delete != "" {
		if _, _, err := p.run(ctx, resource.URN(req.GetUrn()), req.GetTimeout(), spec, spec.Delete, state); err != nil {
			return nil, err
		}
	}
	return &emptypb.Empty{}, nil
}

// outputs are the inputs as given (secret marks included) plus the command's
// output. stdout/stderr are secret when any command input is secret, since the
// output may echo it. connection is left out of that rule: the SDK always
// marks it secret and a command's output does not derive from its credentials.
func outputs(ins resource.PropertyMap, stdout, stderr string) resource.PropertyMap {
	outs := ins.Copy()
	so, se := resource.NewProperty(stdout), resource.NewProperty(stderr)
	for k, v := range ins {
		if k != "connection" && v.ContainsSecrets() {
			so, se = resource.MakeSecret(so), resource.MakeSecret(se)
			break
		}
	}
	outs["stdout"], outs["stderr"] = so, se
	return outs
}

// previewOutputs: nothing runs in a preview, so the output is unknown.
func previewOutputs(ins resource.PropertyMap) resource.PropertyMap {
	outs := ins.Copy()
	outs["stdout"] = resource.MakeComputed(resource.NewProperty(""))
	outs["stderr"] = resource.MakeComputed(resource.NewProperty(""))
	return outs
}

// run executes one command of the resource, forwarding output lines to the
// engine as `logging` allows. prev is the previous state (update and delete),
// whose output goes into PULUMI_COMMAND_STDOUT/STDERR when asked for.
// timeout (seconds, 0: none) is the resource's customTimeouts for the operation.
func (p *commandProvider) run(ctx context.Context, urn resource.URN, timeout float64, spec commandSpec,
	command string, prev resource.PropertyMap,
) (string, string, error) {
	if command == "" {
		return "", "", nil
	}
	ctx, done := p.opContext(ctx)
	defer done()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(timeout*float64(time.Second)))
		defer cancel()
	}
	rep := reporter{p: p, urn: urn}

	env := map[string]string{}
	for k, v := range spec.Env {
		env[k] = v
	}
	if prev != nil && spec.AddPreviousOutputInEnv {
		env["PULUMI_COMMAND_STDOUT"] = getString(prev, "stdout")
		env["PULUMI_COMMAND_STDERR"] = getString(prev, "stderr")
	}

	var outBuf, errBuf strings.Builder
	outLog, errLog := &lineWriter{emit: func(l string) { rep.status(ctx, l) }}, &lineWriter{emit: func(l string) { rep.status(ctx, l) }}
	stdout, stderr := io.Writer(&outBuf), io.Writer(&errBuf)
	if spec.logs(logStdout) {
		stdout = io.MultiWriter(&outBuf, outLog)
	}
	if spec.logs(logStderr) {
		stderr = io.MultiWriter(&errBuf, errLog)
	}

	var err error
	if spec.Conn != nil {
		err = runRemote(ctx, rep, *spec.Conn, command, spec.Stdin, env, stdout, stderr)
	} else {
		err = runLocal(ctx, spec, command, env, stdout, stderr)
	}
	outLog.flush()
	errLog.flush()
	so, se := strings.TrimSuffix(outBuf.String(), "\n"), strings.TrimSuffix(errBuf.String(), "\n")
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) { // say why it was killed
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return "", "", commandError(err, spec, so, se)
	}
	return so, se, nil
}

// commandError reports a failed command. The command text, stdin and
// environment never appear (they may hold secrets); an output stream's tail
// appears only if `logging` already lets that stream reach the log.
func commandError(err error, spec commandSpec, stdout, stderr string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "command failed: %v", err)
	if t := tail(stdout); t != "" && spec.logs(logStdout) {
		fmt.Fprintf(&b, "\nstdout (last lines):\n%s", t)
	}
	if t := tail(stderr); t != "" && spec.logs(logStderr) {
		fmt.Fprintf(&b, "\nstderr (last lines):\n%s", t)
	}
	return errors.New(b.String())
}

func tail(s string) string {
	const maxLines, maxBytes = 20, 4096
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	t := strings.Join(lines, "\n")
	if len(t) > maxBytes {
		t = t[len(t)-maxBytes:]
	}
	return t
}

// lineWriter hands complete lines to emit, so the log shows whole lines.
type lineWriter struct {
	buf  []byte
	emit func(string)
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		w.emit(strings.TrimRight(string(w.buf[:i]), "\r"))
		w.buf = w.buf[i+1:]
	}
}

func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.emit(string(w.buf))
		w.buf = nil
	}
}
