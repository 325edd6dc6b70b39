// Command otel shows OpenTelemetry's gRPC instrumentation on a grpcipc
// server: otelgrpc's server stats handler, given to the server with
// grpcipc.WithStatsHandler, records the same spans and metrics for calls
// on grpcipc's fast path as for calls over HTTP/2.
//
// It serves grpc.health.v1.Health on a socket in a temporary directory,
// makes a few calls to it, once on the fast path and once over HTTP/2
// (grpcipc.WithHTTP2), and prints what the OpenTelemetry SDK's in-memory
// exporters recorded.
//
//	cd examples/otel && go run .
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/grpcipc/grpcipc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// health is the service: "" and "greet" are serving, any other service is
// unknown (NotFound), Watch sends the current status once and ends, and
// List is left unimplemented (Unimplemented, from the handler).
type health struct {
	healthpb.UnimplementedHealthServer
}

func (health) Check(_ context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	switch req.GetService() {
	case "", "greet":
		return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
	}
	return nil, status.Errorf(codes.NotFound, "unknown service %q", req.GetService())
}

func (h health) Watch(req *healthpb.HealthCheckRequest, stream grpc.ServerStreamingServer[healthpb.HealthCheckResponse]) error {
	resp, err := h.Check(stream.Context(), req)
	if err != nil {
		return err
	}
	return stream.Send(resp)
}

// call is one call the client makes, and the code it must end with.
type call struct {
	Method  string // the full method
	Service string // the request's service (Check, Watch)
	Code    codes.Code
}

// calls are the calls the example makes, in order.
var calls = []call{
	{healthpb.Health_Check_FullMethodName, "", codes.OK},
	{healthpb.Health_Check_FullMethodName, "greet", codes.OK},
	{healthpb.Health_Check_FullMethodName, "no-such-service", codes.NotFound},
	{healthpb.Health_Watch_FullMethodName, "greet", codes.OK},
	{healthpb.Health_List_FullMethodName, "", codes.Unimplemented},
}

// do makes the call.
func (c call) do(ctx context.Context, conn grpc.ClientConnInterface) error {
	hc := healthpb.NewHealthClient(conn)
	switch c.Method {
	case healthpb.Health_Check_FullMethodName:
		_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: c.Service})
		return err
	case healthpb.Health_Watch_FullMethodName:
		stream, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: c.Service})
		if err != nil {
			return err
		}
		for {
			if _, err := stream.Recv(); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
		}
	case healthpb.Health_List_FullMethodName:
		_, err := hc.List(ctx, &healthpb.HealthListRequest{})
		return err
	}
	// A method the server does not have: a Check request will do.
	return conn.Invoke(ctx, c.Method, &healthpb.HealthCheckRequest{Service: c.Service}, &healthpb.HealthCheckResponse{})
}

// recording is what the OpenTelemetry SDK recorded for one run of calls.
type recording struct {
	Protocol   string              // what the client spoke: client.Protocol()
	Socket     string              // the server's socket file
	Parent     trace.SpanContext   // the client's span, around the calls
	Spans      tracetest.SpanStubs // all ended spans: the client's and the server's
	Errs       []error             // each call's error, as the client saw it
	Metrics    metricdata.ResourceMetrics
	SocketGone bool // the socket file was removed when the server stopped
}

// record starts a server instrumented by otelgrpc on a socket in a new
// temporary directory, makes calls to it from a grpcipc client (over
// HTTP/2 if http2), stops it and returns what was recorded.
func record(ctx context.Context, http2 bool, calls []call) (*recording, error) {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(ctx)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(ctx)
	prop := propagation.TraceContext{}

	// The server: grpcipc.WithStatsHandler applies otelgrpc's handler to
	// both protocols.
	dir, err := os.MkdirTemp("", "grpcipc-otel-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	rec := &recording{Socket: filepath.Join(dir, "otel.sock")}
	endpoint := "unix://" + rec.Socket
	lis, err := grpcipc.Listen(ctx, endpoint)
	if err != nil {
		return nil, err
	}
	handler := otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(tp), otelgrpc.WithMeterProvider(mp), otelgrpc.WithPropagators(prop),
	)
	srv, err := grpcipc.NewServer(grpcipc.WithStatsHandler(handler))
	if err != nil {
		lis.Close()
		return nil, err
	}
	healthpb.RegisterHealthServer(srv, health{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	stopped := false
	defer func() {
		if !stopped {
			srv.Stop()
		}
	}()

	// The client: its calls carry its span's context (W3C traceparent
	// metadata), which the server's spans continue.
	var opts []grpcipc.ClientOption
	if http2 {
		opts = append(opts, grpcipc.WithHTTP2())
	}
	opts = append(opts,
		grpcipc.WithUnaryClientInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(inject(ctx, prop), method, req, reply, cc, opts...)
		}),
		grpcipc.WithStreamClientInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(inject(ctx, prop), desc, cc, method, opts...)
		}),
	)
	conn, err := grpcipc.NewClient(endpoint, opts...)
	if err != nil {
		return nil, err
	}
	cctx, span := tp.Tracer("example").Start(ctx, "client calls", trace.WithSpanKind(trace.SpanKindClient))
	rec.Parent = span.SpanContext()
	for _, c := range calls {
		err := c.do(cctx, conn)
		rec.Errs = append(rec.Errs, err)
		if status.Code(err) != c.Code {
			span.End()
			conn.Close()
			return nil, fmt.Errorf("%s(%q): got %v, want code %v", c.Method, c.Service, err, c.Code)
		}
	}
	span.End()
	rec.Protocol = string(conn.Protocol())
	if err := conn.Close(); err != nil {
		return nil, err
	}

	// GracefulStop returns once every handler has returned, and so once
	// every server span has ended (the stats handler's End event comes
	// after the reply has been written, so a client can see its reply
	// before the span ends).
	srv.GracefulStop()
	stopped = true
	if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return nil, fmt.Errorf("serve: %w", err)
	}
	if _, err := os.Lstat(rec.Socket); errors.Is(err, os.ErrNotExist) {
		rec.SocketGone = true
	}

	rec.Spans = spans.GetSpans()
	if err := reader.Collect(ctx, &rec.Metrics); err != nil {
		return nil, err
	}
	return rec, nil
}

// inject adds the span context in ctx to its outgoing metadata.
func inject(ctx context.Context, p propagation.TextMapPropagator) context.Context {
	md, _ := metadata.FromOutgoingContext(ctx)
	md = md.Copy()
	p.Inject(ctx, mdCarrier(md))
	return metadata.NewOutgoingContext(ctx, md)
}

// mdCarrier is gRPC metadata as a [propagation.TextMapCarrier].
type mdCarrier metadata.MD

func (c mdCarrier) Get(key string) string {
	if v := metadata.MD(c).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}
func (c mdCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }
func (c mdCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// serverSpans are the server's spans, in the order they started: the
// order of the calls, which the client makes one after the other. (They
// may end in another order: a span ends just after its reply is sent.)
func (r *recording) serverSpans() tracetest.SpanStubs {
	var s tracetest.SpanStubs
	for _, sp := range r.Spans {
		if sp.SpanKind == trace.SpanKindServer {
			s = append(s, sp)
		}
	}
	slices.SortStableFunc(s, func(a, b tracetest.SpanStub) int { return a.StartTime.Compare(b.StartTime) })
	return s
}

// print writes the recording for a reader.
func (r *recording) print(w io.Writer) {
	fmt.Fprintf(w, "client.Protocol() = %q, server on %s\n", r.Protocol, r.Socket)
	fmt.Fprintf(w, "  server spans (the client's span %s is their parent):\n", r.Parent.SpanID())
	for _, s := range r.serverSpans() {
		var attrs []string
		for _, a := range s.Attributes {
			attrs = append(attrs, fmt.Sprintf("%s=%s", a.Key, a.Value.String()))
		}
		slices.Sort(attrs)
		st := s.Status.Code.String()
		if s.Status.Description != "" {
			st += fmt.Sprintf(" %q", s.Status.Description)
		}
		fmt.Fprintf(w, "    %s (%s, parent %s, status %s)\n      %s\n",
			s.Name, s.SpanKind, s.Parent.SpanID(), st, strings.Join(attrs, " "))
	}
	fmt.Fprintf(w, "  metrics:\n")
	for _, sm := range r.Metrics.ScopeMetrics {
		for _, m := range sm.Metrics {
			fmt.Fprintf(w, "    %s (%s, from %s): %s\n", m.Name, m.Unit, sm.Scope.Name, describe(m.Data))
		}
	}
	if r.SocketGone {
		fmt.Fprintf(w, "  server stopped, socket removed\n")
	} else {
		fmt.Fprintf(w, "  server stopped, but its socket is still there\n")
	}
}

// describe summarizes a metric's data.
func describe(d metricdata.Aggregation) string {
	if h, ok := d.(metricdata.Histogram[float64]); ok {
		var n uint64
		var parts []string
		for _, dp := range h.DataPoints {
			n += dp.Count
			m, _ := dp.Attributes.Value("rpc.method")
			c, _ := dp.Attributes.Value("rpc.response.status_code")
			parts = append(parts, fmt.Sprintf("%s %s ×%d", m.String(), c.String(), dp.Count))
		}
		slices.Sort(parts)
		return fmt.Sprintf("%d calls: %s", n, strings.Join(parts, ", "))
	}
	return fmt.Sprintf("%T", d)
}

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, out io.Writer) error {
	for _, http2 := range []bool{false, true} {
		rec, err := record(ctx, http2, calls)
		if err != nil {
			return err
		}
		if http2 {
			fmt.Fprintf(out, "\nHTTP/2 (grpcipc.WithHTTP2): ")
		} else {
			fmt.Fprintf(out, "fast path: ")
		}
		rec.print(out)
	}
	return nil
}
