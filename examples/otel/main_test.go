package main

import (
	"bytes"
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// semconvEnv is the variable otelgrpc reads, when its handler is made, to
// choose its attribute and metric names.
const semconvEnv = "OTEL_SEMCONV_STABILITY_OPT_IN"

// protocol is one way for the client to call.
type protocol struct {
	name  string
	http2 bool             // grpcipc.WithHTTP2
	want  grpcipc.Protocol // client.Protocol()
}

var protocols = []protocol{
	{"fast path", false, grpcipc.ProtocolFast},
	{"HTTP/2", true, grpcipc.ProtocolHTTP2},
}

// semconv is one of otelgrpc's naming modes.
type semconv struct {
	name    string
	env     string   // semconvEnv's value
	metrics []string // the server's metrics, each a histogram of call durations
	old     bool     // rpc.system and rpc.service as well (the older conventions)
}

const (
	durationMetric    = "rpc.server.call.duration" // seconds
	oldDurationMetric = "rpc.server.duration"      // milliseconds, before semconv 1.38
)

var (
	stable = semconv{"stable", "", []string{durationMetric}, false}
	dup    = semconv{"rpc/dup", "rpc/dup", []string{oldDurationMetric, durationMetric}, true}
)

// TestOtel makes the example's calls on the fast path and over HTTP/2 and
// checks that otelgrpc records what it should, and the same, for both.
func TestOtel(t *testing.T) {
	for _, mode := range []semconv{stable, dup} {
		t.Run(mode.name, func(t *testing.T) {
			t.Setenv(semconvEnv, mode.env)
			recs := recordBoth(t, calls, mode)
			compare(t, calls, recs[0], recs[1], true)
		})
	}
}

// TestUnknownMethod calls what the server does not serve: an unknown
// service, and an unknown method of a known service. No handler runs,
// grpcipc answers UNIMPLEMENTED; otelgrpc still records a span and a
// duration for each call, the same on both protocols.
//
// Except for one thing, which the test logs rather than fails on: the
// status message of an unknown service's call, which otelgrpc copies into
// the span's status description. On the fast path it is grpc-go's
// "unknown service greet.Nope" (fast_server.go, Server.unimplemented);
// over HTTP/2 grpcipc's grpc.UnknownServiceHandler answers every unknown
// call with "unknown method Hello for service greet.Nope"
// (credentials.go, unimplemented), since it cannot tell an unknown service
// from an unknown method. The client sees the same difference.
func TestUnknownMethod(t *testing.T) {
	t.Setenv(semconvEnv, "")
	unknown := []call{
		{"/greet.Nope/Hello", "", codes.Unimplemented},
		{"/grpc.health.v1.Health/Nope", "", codes.Unimplemented},
	}
	recs := recordBoth(t, unknown, stable)
	compare(t, unknown, recs[0], recs[1], false)
	for i, c := range unknown {
		fast, h2 := status.Convert(recs[0].Errs[i]).Message(), status.Convert(recs[1].Errs[i]).Message()
		if fast != h2 {
			t.Logf("%s: the status message (and so the span's status description) differs: fast path %q, HTTP/2 %q", c.Method, fast, h2)
		}
	}
}

// TestRun runs the example as `go run .` does.
func TestRun(t *testing.T) {
	t.Setenv(semconvEnv, "")
	var out bytes.Buffer
	if err := run(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{
		`client.Protocol() = "grpcipc"`, `client.Protocol() = "http2"`,
		durationMetric + " (s, from " + otelgrpc.ScopeName + "): 5 calls",
		"grpc.health.v1.Health/List (server, parent ",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("the output does not say %q:\n%s", want, s)
		}
	}
	if n := strings.Count(s, "server stopped, socket removed"); n != 2 {
		t.Errorf("the output says %d times that the socket was removed, want 2:\n%s", n, s)
	}
}

// recordBoth records calls on the fast path, then over HTTP/2, checking
// each recording.
func recordBoth(t *testing.T, cs []call, mode semconv) [2]*recording {
	t.Helper()
	var recs [2]*recording
	for i, p := range protocols {
		rec, err := record(context.Background(), p.http2, cs)
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		check(t, p, mode, cs, rec)
		recs[i] = rec
	}
	return recs
}

// check checks what otelgrpc recorded for calls made over p.
func check(t *testing.T, p protocol, mode semconv, cs []call, rec *recording) {
	t.Helper()
	if rec.Protocol != string(p.want) {
		t.Errorf("%s: client.Protocol() = %q, want %q", p.name, rec.Protocol, p.want)
	}
	if !rec.SocketGone {
		t.Errorf("%s: the socket %s is still there after the server stopped", p.name, rec.Socket)
	}

	// One server span per call, named after the call's method, a child of
	// the client's span.
	spans := rec.serverSpans()
	if len(spans) != len(cs) {
		t.Fatalf("%s: %d server spans for %d calls: %v", p.name, len(spans), len(cs), spanNames(spans))
	}
	for i, c := range cs {
		s := spans[i]
		name := c.Method[1:]
		if s.Name != name {
			t.Errorf("%s: call %d (%s): span named %q, want %q", p.name, i, c.Method, s.Name, name)
		}
		if s.SpanKind != trace.SpanKindServer {
			t.Errorf("%s: %s: span kind %v, want server", p.name, c.Method, s.SpanKind)
		}
		if !s.Parent.IsRemote() || s.Parent.TraceID() != rec.Parent.TraceID() || s.Parent.SpanID() != rec.Parent.SpanID() {
			t.Errorf("%s: %s: span's parent %v (remote %v), want the client's span %v",
				p.name, c.Method, s.Parent.SpanID(), s.Parent.IsRemote(), rec.Parent.SpanID())
		}

		// The status: Error, with the status message, for the codes
		// otelgrpc deems a server's fault; unset for OK and the others.
		wantStatus, wantDesc := otelcodes.Unset, ""
		if serverFault(c.Code) {
			wantStatus, wantDesc = otelcodes.Error, status.Convert(rec.Errs[i]).Message()
		}
		if s.Status.Code != wantStatus || s.Status.Description != wantDesc {
			t.Errorf("%s: %s (%v): span status %v %q, want %v %q",
				p.name, c.Method, c.Code, s.Status.Code, s.Status.Description, wantStatus, wantDesc)
		}

		attrs := attrMap(s.Attributes)
		want := map[string]string{
			"rpc.system.name":          "grpc",
			"rpc.method":               name,
			"rpc.response.status_code": canonical(c.Code),
			"server.address":           rec.Socket,
		}
		if mode.old {
			want["rpc.system"] = "grpc"
			want["rpc.service"] = name[:strings.LastIndex(name, "/")]
		}
		for k, v := range want {
			if attrs[k] != v {
				t.Errorf("%s: %s: span attribute %s = %q, want %q", p.name, c.Method, k, attrs[k], v)
			}
		}
	}

	// The duration metrics: a data point per call.
	got := durations(rec)
	for _, name := range mode.metrics {
		points, ok := got[name]
		if !ok {
			t.Errorf("%s: no %s metric; got %v", p.name, name, slices.Sorted(maps.Keys(got)))
			continue
		}
		want := map[string]uint64{}
		for _, c := range cs {
			kv := []attribute.KeyValue{
				attribute.String("rpc.system.name", "grpc"),
				attribute.String("rpc.method", c.Method[1:]),
				attribute.String("rpc.response.status_code", canonical(c.Code)),
			}
			if mode.old {
				kv = append(kv, attribute.String("rpc.system", "grpc"), attribute.String("rpc.service", c.Method[1:strings.LastIndex(c.Method, "/")]))
			}
			if name == durationMetric && serverFault(c.Code) {
				kv = append(kv, attribute.String("error.type", canonical(c.Code)))
			}
			want[encode(attribute.NewSet(kv...))]++
		}
		if !maps.Equal(points, want) {
			t.Errorf("%s: %s: data points (attributes: calls)\n got %v\nwant %v", p.name, name, points, want)
		}
	}
	if len(got) != len(mode.metrics) {
		t.Errorf("%s: metrics %v, want %v", p.name, slices.Sorted(maps.Keys(got)), mode.metrics)
	}
}

// compare checks that the fast path and HTTP/2 recorded the same: span
// names, kinds, statuses (with their descriptions, if messages) and
// attributes (but server.address, each run's own socket), and metrics.
func compare(t *testing.T, cs []call, fast, h2 *recording, messages bool) {
	t.Helper()
	fs, hs := fast.serverSpans(), h2.serverSpans()
	for i, c := range cs {
		f, h := fs[i], hs[i]
		if f.Name != h.Name || f.SpanKind != h.SpanKind || f.Status.Code != h.Status.Code {
			t.Errorf("%s: fast path span %q %v %v, HTTP/2 span %q %v %v",
				c.Method, f.Name, f.SpanKind, f.Status.Code, h.Name, h.SpanKind, h.Status.Code)
		}
		if messages && f.Status.Description != h.Status.Description {
			t.Errorf("%s: fast path span's status description %q, HTTP/2's %q", c.Method, f.Status.Description, h.Status.Description)
		}
		fa, ha := attrMap(f.Attributes), attrMap(h.Attributes)
		delete(fa, "server.address")
		delete(ha, "server.address")
		if !maps.Equal(fa, ha) {
			t.Errorf("%s: span attributes differ:\nfast path %v\n   HTTP/2 %v", c.Method, fa, ha)
		}
		if len(f.Events) != len(h.Events) || len(f.Links) != len(h.Links) {
			t.Errorf("%s: fast path span has %d events and %d links, HTTP/2 span %d and %d",
				c.Method, len(f.Events), len(f.Links), len(h.Events), len(h.Links))
		}
	}
	fm, hm := durations(fast), durations(h2)
	for name, f := range fm {
		if !maps.Equal(f, hm[name]) {
			t.Errorf("%s: data points differ:\nfast path %v\n   HTTP/2 %v", name, f, hm[name])
		}
	}
	if len(fm) != len(hm) {
		t.Errorf("metrics differ: fast path %v, HTTP/2 %v", slices.Sorted(maps.Keys(fm)), slices.Sorted(maps.Keys(hm)))
	}
}

// durations are otelgrpc's histograms in rec: for each metric, the
// number of calls counted under each set of attributes.
func durations(rec *recording) map[string]map[string]uint64 {
	out := map[string]map[string]uint64{}
	for _, sm := range rec.Metrics.ScopeMetrics {
		if sm.Scope.Name != otelgrpc.ScopeName {
			continue
		}
		for _, m := range sm.Metrics {
			points := map[string]uint64{}
			if h, ok := m.Data.(metricdata.Histogram[float64]); ok {
				for _, dp := range h.DataPoints {
					points[encode(dp.Attributes)] += dp.Count
				}
			}
			out[m.Name] = points
		}
	}
	return out
}

// serverFault says whether otelgrpc's server handler marks a call that
// ended with c as an error (span status Error, error.type on the metric).
func serverFault(c codes.Code) bool {
	switch c {
	case codes.Unknown, codes.DeadlineExceeded, codes.Unimplemented, codes.Internal, codes.Unavailable, codes.DataLoss:
		return true
	}
	return false
}

// canonical is a code's name in rpc.response.status_code.
func canonical(c codes.Code) string {
	return map[codes.Code]string{
		codes.OK: "OK", codes.NotFound: "NOT_FOUND", codes.Unimplemented: "UNIMPLEMENTED",
	}[c]
}

func encode(s attribute.Set) string { return s.Encoded(attribute.DefaultEncoder()) }

func attrMap(kv []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, a := range kv {
		m[string(a.Key)] = a.Value.String()
	}
	return m
}

func spanNames(spans tracetest.SpanStubs) []string {
	var names []string
	for _, s := range spans {
		names = append(names, s.Name)
	}
	return names
}
