// Package demo is the server behind "grpcipc serve" and "grpcipc demo":
// greet.Greeter (the ASP.NET Core template's service), grpc.health.v1,
// server reflection and grpcipc.v1.Identity.
package demo

import (
	"context"
	"strconv"
	"sync"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/pb/greetpb"
	"github.com/grpcipc/grpcipc/internal/pb/identitypb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Server is the demo gRPC server with its health service.
type Server struct {
	*grpcipc.Server
	Health *health.Server

	watch *healthWatch
}

// NewServer returns the demo server for a listener on ep, made by
// grpcipc.NewServer with opts (a policy, TLS, say), with the services
// registered and reported SERVING.
func NewServer(ep grpcipc.Endpoint, opts ...grpcipc.ServerOption) (*Server, error) {
	s, err := grpcipc.NewServer(opts...)
	if err != nil {
		return nil, err
	}
	greetpb.RegisterGreeterServer(s, greeter{})
	identitypb.RegisterIdentityServer(s, identity{ep: ep})
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

type identity struct {
	identitypb.UnimplementedIdentityServer
	ep grpcipc.Endpoint
}

func (id identity) WhoAmI(ctx context.Context, _ *identitypb.WhoAmIRequest) (*identitypb.WhoAmIResponse, error) {
	return WhoAmI(ctx, id.ep), nil
}

// WhoAmI describes the caller of the call ctx belongs to, as the server on
// ep saw it: grpcipc.v1.Identity/WhoAmI's answer.
func WhoAmI(ctx context.Context, ep grpcipc.Endpoint) *identitypb.WhoAmIResponse {
	resp := &identitypb.WhoAmIResponse{Transport: string(ep.Transport), Endpoint: ep.String()}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return resp
	}
	if p.Addr != nil {
		resp.PeerAddress = p.Addr.String()
	}
	if ai, ok := p.AuthInfo.(interface {
		GetCommonAuthInfo() credentials.CommonAuthInfo
	}); ok {
		resp.SecurityLevel = ai.GetCommonAuthInfo().SecurityLevel.String()
	}
	ai, ok := grpcipc.AuthInfoFromPeer(p)
	if !ok || ai.Peer == nil {
		return resp
	}
	c := ai.Peer
	if pid, ok := c.PID(); ok {
		resp.Pid = proto.Int64(int64(pid))
	}
	if uid, ok := c.UID(); ok {
		resp.Uid = proto.String(strconv.Itoa(uid))
	} else if sid, ok := c.SID(); ok {
		resp.Uid = proto.String(sid)
	}
	if gid, ok := c.GID(); ok {
		resp.Gid = proto.String(strconv.Itoa(gid))
	}
	if groups, ok := c.Groups(); ok {
		for _, g := range groups {
			resp.Groups = append(resp.Groups, strconv.Itoa(g))
		}
	} else if sids, ok := c.GroupSIDs(); ok {
		resp.Groups = sids
	}
	if name, ok := c.Username(); ok {
		resp.User = proto.String(name)
	}
	if exe, ok := c.Executable(); ok {
		resp.Executable = proto.String(exe)
	}
	return resp
}
