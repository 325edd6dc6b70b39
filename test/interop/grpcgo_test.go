package interop

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// grpc-go's interop cases report a failure through grpclog's Fatal, which
// exits the process: this logger panics instead, so that a case fails its
// test, and keeps grpc-go's own lines to errors, as its default does.
type interopLogger struct{ grpclog.LoggerV2 }

type interopFailure struct{ msg string }

func (interopLogger) Fatal(args ...any)   { panic(interopFailure{fmt.Sprint(args...)}) }
func (interopLogger) Fatalln(args ...any) { panic(interopFailure{fmt.Sprint(args...)}) }
func (interopLogger) Fatalf(format string, args ...any) {
	panic(interopFailure{fmt.Sprintf(format, args...)})
}

// FatalDepth: grpclog's component loggers call this one.
func (interopLogger) FatalDepth(_ int, args ...any) { panic(interopFailure{fmt.Sprint(args...)}) }

func init() {
	grpclog.SetLoggerV2(interopLogger{grpclog.NewLoggerV2(discard{}, discard{}, os.Stderr)})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// runInteropCase runs one of grpc-go's interop cases, turning its Fatal
// into a test failure.
func runInteropCase(t *testing.T, name string, f func(ctx context.Context)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		defer func() {
			if r := recover(); r != nil {
				if fail, ok := r.(interopFailure); ok {
					t.Fatalf("interop case %s: %s", name, fail.msg)
				}
				panic(r)
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		f(ctx)
	})
}

// TestGRPCInterop runs grpc-go's own interop cases (google.golang.org/grpc/
// interop) across grpcipc and plain grpc-go, both ways: the judges of
// whether grpcipc still speaks gRPC. grpcipc's client speaks its fast path
// to grpcipc's server and HTTP/2 to any other; with WithHTTP2 it speaks
// HTTP/2 to grpcipc's server too, on the same listener.
func TestGRPCInterop(t *testing.T) {
	serveGRPCIPC := func(t *testing.T) string {
		endpoint := testutil.Endpoint(t)
		l, err := grpcipc.Listen(context.Background(), endpoint)
		if err != nil {
			t.Fatal(err)
		}
		s := newGRPCIPCServer(t)
		testgrpc.RegisterTestServiceServer(s, interop.NewTestServer())
		go s.Serve(l)
		t.Cleanup(s.Stop)
		return endpoint
	}
	servePlain := func(t *testing.T) string {
		path := filepath.Join(testutil.ShortTempDir(t), "plain.sock")
		l, err := net.Listen("unix", path)
		if err != nil {
			t.Skipf("no AF_UNIX here for a plain grpc-go server (Wine 8 has none): %v", err)
		}
		s := grpc.NewServer()
		testgrpc.RegisterTestServiceServer(s, interop.NewTestServer())
		go s.Serve(l)
		t.Cleanup(s.Stop)
		return "unix://" + filepath.ToSlash(path)
	}
	dialGRPCIPC := func(t *testing.T, endpoint string) grpc.ClientConnInterface { return e2e.NewClient(t, endpoint) }
	dialGRPCIPCHTTP2 := func(t *testing.T, endpoint string) grpc.ClientConnInterface {
		return e2e.NewClient(t, endpoint, grpcipc.WithHTTP2())
	}
	dialPlain := func(t *testing.T, endpoint string) grpc.ClientConnInterface {
		ep, err := grpcipc.ParseEndpoint(endpoint)
		if err != nil {
			t.Fatal(err)
		}
		if ep.Transport != grpcipc.Unix {
			t.Skipf("plain grpc-go dials unix sockets, not %s", ep.Transport)
		}
		cc, err := grpc.NewClient("unix://"+ep.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	for _, pair := range []struct {
		name     string
		serve    func(*testing.T) string
		dial     func(*testing.T, string) grpc.ClientConnInterface
		onlyOS   string
		protocol grpcipc.Protocol // what a grpcipc client speaks: ClientConn.Protocol
	}{
		{"grpcipc client, grpcipc server", serveGRPCIPC, dialGRPCIPC, "", grpcipc.ProtocolFast},
		{"grpcipc client, plain grpc-go server", servePlain, dialGRPCIPC, "", grpcipc.ProtocolHTTP2},
		{"plain grpc-go client, grpcipc server", serveGRPCIPC, dialPlain, "!windows", ""},
		{"grpcipc client WithHTTP2, grpcipc server", serveGRPCIPC, dialGRPCIPCHTTP2, "", grpcipc.ProtocolHTTP2},
	} {
		t.Run(pair.name, func(t *testing.T) {
			if pair.onlyOS == "!windows" && runtime.GOOS == "windows" {
				t.Skip("plain grpc-go has no named-pipe dialer; the grpcipc server listens on a pipe here")
			}
			conn := pair.dial(t, pair.serve(t))
			tc := testgrpc.NewTestServiceClient(conn)
			for _, c := range []struct {
				name string
				f    func(context.Context, testgrpc.TestServiceClient, ...grpc.CallOption)
			}{
				{"empty_unary", interop.DoEmptyUnaryCall},
				{"large_unary", interop.DoLargeUnaryCall},
				{"client_streaming", interop.DoClientStreaming},
				{"server_streaming", interop.DoServerStreaming},
				{"ping_pong", interop.DoPingPong},
				{"empty_stream", interop.DoEmptyStream},
				{"timeout_on_sleeping_server", interop.DoTimeoutOnSleepingServer},
				{"cancel_after_begin", interop.DoCancelAfterBegin},
				{"cancel_after_first_response", interop.DoCancelAfterFirstResponse},
				{"custom_metadata", interop.DoCustomMetadata},
				{"status_code_and_message", interop.DoStatusCodeAndMessage},
				{"special_status_message", interop.DoSpecialStatusMessage},
			} {
				runInteropCase(t, c.name, func(ctx context.Context) { c.f(ctx, tc) })
			}
			runInteropCase(t, "unimplemented_service", func(ctx context.Context) {
				interop.DoUnimplementedService(ctx, testgrpc.NewUnimplementedServiceClient(conn))
			})
			runInteropCase(t, "unimplemented_method", func(ctx context.Context) {
				if cc, ok := conn.(*grpc.ClientConn); ok {
					interop.DoUnimplementedMethod(ctx, cc)
				} else {
					doUnimplementedMethod(ctx, conn)
				}
			})
			if cc, ok := conn.(*grpcipc.ClientConn); ok {
				if got := cc.Protocol(); got != pair.protocol {
					t.Errorf("after the cases the grpcipc client speaks %q, want %q", got, pair.protocol)
				}
			}
		})
	}
}

// TestInteropHarnessFails: a failing interop case fails its test (the
// logger turns grpc-go's Fatal into a panic that runInteropCase catches)
// rather than passing or exiting the test binary.
func TestInteropHarnessFails(t *testing.T) {
	endpoint := testutil.Endpoint(t)
	l, err := grpcipc.Listen(context.Background(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	s := newGRPCIPCServer(t) // no TestService: every case fails
	go s.Serve(l)
	t.Cleanup(s.Stop)
	tc := testgrpc.NewTestServiceClient(e2e.NewClient(t, endpoint))
	defer func() {
		if _, ok := recover().(interopFailure); !ok {
			t.Error("a failing interop case did not report its failure")
		}
	}()
	interop.DoEmptyUnaryCall(context.Background(), tc)
}

// doUnimplementedMethod is interop.DoUnimplementedMethod, which takes a
// *grpc.ClientConn, for any connection: grpcipc's speaking its fast path
// has none.
func doUnimplementedMethod(ctx context.Context, cc grpc.ClientConnInterface) {
	var req, reply proto.Message
	if err := cc.Invoke(ctx, "/grpc.testing.TestService/UnimplementedCall", req, reply); err == nil || status.Code(err) != codes.Unimplemented {
		grpclog.Fatalf("ClientConn.Invoke(_, _, _, _, _) = %v, want error code %s", err, codes.Unimplemented)
	}
}

// newGRPCIPCServer is grpcipc's server with its defaults.
func newGRPCIPCServer(t *testing.T) *grpcipc.Server {
	t.Helper()
	s, err := grpcipc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
