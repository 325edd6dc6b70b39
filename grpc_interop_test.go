package grpcipc_test

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
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
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
// whether grpcipc still speaks gRPC.
func TestGRPCInterop(t *testing.T) {
	serveGRPCIPC := func(t *testing.T) string {
		endpoint := testutil.Endpoint(t)
		l, err := grpcipc.Listen(context.Background(), endpoint)
		if err != nil {
			t.Fatal(err)
		}
		s := grpc.NewServer(grpcipcServerOptions(t)...)
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
	dialGRPCIPC := func(t *testing.T, endpoint string) *grpc.ClientConn { return newClient(t, endpoint) }
	dialPlain := func(t *testing.T, endpoint string) *grpc.ClientConn {
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
		name   string
		serve  func(*testing.T) string
		dial   func(*testing.T, string) *grpc.ClientConn
		onlyOS string
	}{
		{"grpcipc client, grpcipc server", serveGRPCIPC, dialGRPCIPC, ""},
		{"grpcipc client, plain grpc-go server", servePlain, dialGRPCIPC, ""},
		{"plain grpc-go client, grpcipc server", serveGRPCIPC, dialPlain, "!windows"},
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
				interop.DoUnimplementedMethod(ctx, conn)
			})
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
	s := grpc.NewServer(grpcipcServerOptions(t)...) // no TestService: every case fails
	go s.Serve(l)
	t.Cleanup(s.Stop)
	tc := testgrpc.NewTestServiceClient(newClient(t, endpoint))
	defer func() {
		if _, ok := recover().(interopFailure); !ok {
			t.Error("a failing interop case did not report its failure")
		}
	}()
	interop.DoEmptyUnaryCall(context.Background(), tc)
}

func grpcipcServerOptions(t *testing.T) []grpc.ServerOption {
	t.Helper()
	opts, err := grpcipc.ServerOptions()
	if err != nil {
		t.Fatal(err)
	}
	return opts
}
