package fastpath

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// method is a registered method: a unary one has md, a streaming one sd.
type method struct {
	name string // full: /pkg.Service/Method
	impl any
	md   *grpc.MethodDesc
	sd   *grpc.StreamDesc
	// took: how long a unary handler takes, a moving average (ns;
	// inline.go)
	took atomic.Int64
	// notInline: calls left to run on workers since the watchdog found a
	// handler of the method running inline through a tick (inline.go)
	notInline atomic.Int64
}

// RegisterService adds a service's methods to the server's table. The
// root's Server calls it after grpc.Server.RegisterService has checked
// impl and duplicates, and before Serve.
func (s *Server) RegisterService(sd *grpc.ServiceDesc, impl any) {
	s.services[sd.ServiceName] = true
	for i := range sd.Methods {
		d := &sd.Methods[i]
		name := "/" + sd.ServiceName + "/" + d.MethodName
		s.methods[name] = &method{name: name, impl: impl, md: d}
	}
	for i := range sd.Streams {
		d := &sd.Streams[i]
		name := "/" + sd.ServiceName + "/" + d.StreamName
		s.methods[name] = &method{name: name, impl: impl, sd: d}
	}
}

// internName returns a method's name without a copy, if registered.
func (s *Server) internName(b []byte) string {
	if m, ok := s.methods[string(b)]; ok {
		return m.name
	}
	return string(b)
}

// Unimplemented is grpc-go's UNIMPLEMENTED for a method this server
// lacks, in grpc-go's words (the root's HTTP/2 half answers with it too).
func (s *Server) Unimplemented(method string) error {
	svc, m, _ := cutMethod(method)
	if !s.services[svc] {
		return status.Errorf(codes.Unimplemented, "unknown service %v", svc)
	}
	return status.Errorf(codes.Unimplemented, "unknown method %v for service %v", m, svc)
}

// cutMethod splits "/pkg.Service/Method".
func cutMethod(full string) (svc, m string, ok bool) {
	if len(full) > 0 && full[0] == '/' {
		full = full[1:]
	}
	for i := len(full) - 1; i >= 0; i-- {
		if full[i] == '/' {
			return full[:i], full[i+1:], true
		}
	}
	return full, "", false
}

// chainUnary makes one interceptor of several, the first outermost; nil
// for none.
func chainUnary(is []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	switch len(is) {
	case 0:
		return nil
	case 1:
		return is[0]
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return is[0](ctx, req, info, unaryNext(is, 1, info, handler))
	}
}

func unaryNext(is []grpc.UnaryServerInterceptor, i int, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) grpc.UnaryHandler {
	if i == len(is) {
		return h
	}
	return func(ctx context.Context, req any) (any, error) {
		return is[i](ctx, req, info, unaryNext(is, i+1, info, h))
	}
}

// chainStream makes one interceptor of several, the first outermost; nil
// for none.
func chainStream(is []grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	switch len(is) {
	case 0:
		return nil
	case 1:
		return is[0]
	}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return is[0](srv, ss, info, streamNext(is, 1, info, handler))
	}
}

func streamNext(is []grpc.StreamServerInterceptor, i int, info *grpc.StreamServerInfo, h grpc.StreamHandler) grpc.StreamHandler {
	if i == len(is) {
		return h
	}
	return func(srv any, ss grpc.ServerStream) error {
		return is[i](srv, ss, info, streamNext(is, i+1, info, h))
	}
}
