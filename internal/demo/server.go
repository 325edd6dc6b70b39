// Package demo is the server behind "grpcipc serve" and "grpcipc demo":
// greet.Greeter (the ASP.NET Core template's service),
// grpcipc.examples.v1.Echo (all four kinds of call), grpc.health.v1,
// server reflection and grpcipc.v1.Identity.
package demo

import (
	"context"
	"sync"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/echopb"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/identity"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// Server is the demo gRPC server with its health service.
type Server struct {
	*grpcipc.Server
	Health *health.Server

	watch *healthWatch
}

// NewServer returns the demo server, made by grpcipc.NewServer with opts (a
// policy, TLS, say), with the services registered and reported SERVING.
func NewServer(opts ...grpcipc.ServerOption) (*Server, error) {
	s, err := grpcipc.NewServer(opts...)
	if err != nil {
		return nil, err
	}
	greetpb.RegisterGreeterServer(s, greeter{})
	echopb.RegisterEchoServer(s, echo{})
	identity.Register(s)
	hs := health.NewServer()
	watch := &healthWatch{Server: hs, stopping: make(chan struct{})}
	healthpb.RegisterHealthServer(s, watch)
	reflection.Register(s)
	for name := range s.GetServiceInfo() {
		hs.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	return &Server{Server: s, Health: hs, watch: watch}, nil
}

// GracefulStop reports NOT_SERVING to health watchers and ends their Watch
// streams with codes.Unavailable, then stops the server once the other
// in-flight calls are done.
func (s *Server) GracefulStop() {
	s.watch.shutdown()
	s.Server.GracefulStop()
}

// errShuttingDown ends the Watch streams of a stopping server.
var errShuttingDown = status.Error(codes.Unavailable, "the server is shutting down")

// healthWatch is grpc.health.v1.Health with Watch streams that end when
// the server stops. grpc-go's health.Server reports NOT_SERVING on
// Shutdown but keeps each Watch open until the client goes away, and a
// graceful stop waits for every open call: a watcher would hold the
// server up until it is stopped by force.
type healthWatch struct {
	*health.Server
	stopping chan struct{} // closed by shutdown
	once     sync.Once
}

func (h *healthWatch) shutdown() {
	h.once.Do(func() {
		h.Server.Shutdown()
		close(h.stopping)
	})
}

// Watch runs health.Server's Watch until the client goes away or the
// server shuts down. On shutdown the watcher gets the service's last
// status (NOT_SERVING, unless the service is unknown) before its stream
// ends with codes.Unavailable.
func (h *healthWatch) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	go func() {
		select {
		case <-h.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	ws := &watchStream{Health_WatchServer: stream, ctx: ctx, last: -1}
	err := h.Server.Watch(req, ws)
	select {
	case <-h.stopping:
	default:
		return err // the client went away, or a Send failed
	}
	if stream.Context().Err() != nil {
		return err
	}
	// health.Server.Watch may have seen the cancellation before the
	// status Shutdown set: send that status if the watcher lacks it.
	if st, cerr := h.Server.Check(stream.Context(), req); cerr == nil && st.GetStatus() != ws.last {
		if err := stream.Send(st); err != nil {
			return err
		}
	}
	return errShuttingDown
}

// watchStream is a Watch stream whose context also ends when the server
// shuts down, and which remembers the last status sent.
type watchStream struct {
	healthpb.Health_WatchServer
	ctx  context.Context
	last healthpb.HealthCheckResponse_ServingStatus
}

func (s *watchStream) Context() context.Context { return s.ctx }

func (s *watchStream) Send(resp *healthpb.HealthCheckResponse) error {
	if err := s.Health_WatchServer.Send(resp); err != nil {
		return err
	}
	s.last = resp.GetStatus()
	return nil
}

type greeter struct {
	greetpb.UnimplementedGreeterServer
}

func (greeter) SayHello(_ context.Context, req *greetpb.HelloRequest) (*greetpb.HelloReply, error) {
	return &greetpb.HelloReply{Message: "Hello " + req.GetName()}, nil
}
