// Package demo is the server behind "grpcipc serve" and "grpcipc demo":
// greet.Greeter (the ASP.NET Core template's service), grpc.health.v1,
// server reflection and grpcipc.v1.Identity.
package demo

import (
	"context"
	"strconv"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/pb/greetpb"
	"github.com/grpcipc/grpcipc/internal/pb/identitypb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/proto"
)

// Server is the demo gRPC server with its health service.
type Server struct {
	*grpc.Server
	Health *health.Server
}

// NewServer returns the demo server for a listener on ep, with grpcipc's
// server options (opts add TLS, say) and the services registered and
// reported SERVING.
func NewServer(ep grpcipc.Endpoint, opts ...grpcipc.ServerOption) (*Server, error) {
	sopts, err := grpcipc.ServerOptions(opts...)
	if err != nil {
		return nil, err
	}
	s := grpc.NewServer(sopts...)
	greetpb.RegisterGreeterServer(s, greeter{})
	identitypb.RegisterIdentityServer(s, identity{ep: ep})
	hs := health.NewServer()
	healthpb.RegisterHealthServer(s, hs)
	reflection.Register(s)
	for name := range s.GetServiceInfo() {
		hs.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	return &Server{Server: s, Health: hs}, nil
}

// GracefulStop reports NOT_SERVING to health watchers, then stops the
// server once in-flight calls are done.
func (s *Server) GracefulStop() {
	s.Health.Shutdown()
	s.Server.GracefulStop()
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
