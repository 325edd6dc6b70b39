// Package identity is grpcipc.v1.Identity, a service that tells each caller
// how the server saw it: the transport and endpoint, and the calling
// process's pid, uid, gid, groups, user and executable as the operating
// system reported them (SIDs on Windows). It lets an operator check from
// the client side what a policy will be matched against:
//
//	srv, err := grpcipc.NewServer()
//	...
//	identity.Register(srv) // then: grpcipc call grpcipc.v1.Identity/WhoAmI
//
// The service reveals nothing a caller could not learn about itself; on a
// server whose policy should not admit it to everyone, name it in the
// policy's rules like any other service ("/grpcipc.v1.Identity/*").
package identity

import (
	"context"
	"strconv"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/identity/identitypb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"
)

// Register adds grpcipc.v1.Identity to s: a grpcipc.Server, or a
// grpc.Server made with grpcipc.ServerOptions (on any other server the
// answers carry no OS identity).
func Register(s grpc.ServiceRegistrar) {
	identitypb.RegisterIdentityServer(s, server{})
}

type server struct {
	identitypb.UnimplementedIdentityServer
}

func (server) WhoAmI(ctx context.Context, _ *identitypb.WhoAmIRequest) (*identitypb.WhoAmIResponse, error) {
	return WhoAmI(ctx), nil
}

// WhoAmI describes the caller of the call that ctx belongs to, as the server
// saw it: the answer of grpcipc.v1.Identity/WhoAmI. A field the server
// did not know is left unset.
func WhoAmI(ctx context.Context) *identitypb.WhoAmIResponse {
	resp := &identitypb.WhoAmIResponse{}
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
	if !ok {
		return resp
	}
	resp.Transport = string(ai.Transport)
	if ai.Endpoint.Transport != "" {
		resp.Endpoint = ai.Endpoint.String()
	}
	c := ai.Peer
	if c == nil {
		return resp
	}
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
	if cg, ok := c.Cgroup(); ok {
		resp.Cgroup = proto.String(cg)
	}
	if u, ok := c.Unit(); ok {
		resp.Unit = proto.String(u)
	}
	if u, ok := c.UserUnit(); ok {
		resp.UserUnit = proto.String(u)
	}
	if l, ok := c.Label(); ok {
		resp.Label = proto.String(l)
	}
	return resp
}
