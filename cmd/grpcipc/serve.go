package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/demo"
)

// stopGrace is how long a stopping server waits for in-flight calls
// (health Watch streams end at once, with Unavailable).
const stopGrace = 10 * time.Second

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("serve", "[--listen ENDPOINT | --activated] [--allow PRINCIPAL]... [--policy FILE] [--cert F --key F [--client-ca F]] [--unauthenticated-tcp]",
		"Serve greet.Greeter/SayHello, grpcipc.examples.v1.Echo (unary, server, client\n"+
			"and bidi streaming; it echoes echo-* metadata and fails on request),\n"+
			"grpc.health.v1.Health, server reflection and grpcipc.v1.Identity/WhoAmI until\n"+
			"SIGINT or SIGTERM, then stop gracefully and remove the socket. Prints\n"+
			"\"serving ENDPOINT\" on stdout once it accepts calls.\n\n"+
			"On a local endpoint only this user may call, unless --allow widens it\n"+
			"(same-user, uid:N, gid:N, user:NAME, group:NAME, sid:SID, root or *; exe:/PATH\n"+
			"only inside an all_of in a --policy file) or --policy FILE sets a policy in\n"+
			"gRPC's authorization-policy JSON with those principals.\n\n"+
			"A tcp:// endpoint has no OS identity: it needs --cert, --key and --client-ca\n"+
			"(callers present a certificate), or --unauthenticated-tcp (anyone who can\n"+
			"reach the port may call; without TLS, loopback only).\n\n"+
			"With --cert and --key, calls run over TLS (on top of the identity check), and\n"+
			"the certificate's SHA-256 pin is printed after the serving line; --client-ca\n"+
			"also requires a client certificate signed by those CAs.",
		0, 0, stdout)
	listen := c.fs.String("listen", "", "`endpoint` to listen on (default: what \"grpcipc endpoint\" prints)")
	var allow []string
	c.fs.Func("allow", "also admit `PRINCIPAL` to every method (repeatable)", func(s string) error {
		allow = append(allow, s)
		return nil
	})
	policyFile := c.fs.String("policy", "", "the policy `file` (JSON) that decides who may call what")
	certFile := c.fs.String("cert", "", "serve TLS with this certificate (PEM `file`; with --key)")
	keyFile := c.fs.String("key", "", "the private key of --cert (PEM `file`)")
	clientCA := c.fs.String("client-ca", "", "require client certificates signed by the CAs in this PEM `file`")
	unauthTCP := c.fs.Bool("unauthenticated-tcp", false, "serve a tcp:// endpoint to callers without a client certificate:\nevery process that can reach the port may call (tcp has no OS identity)")
	activated := c.fs.Bool("activated", false, "serve the sockets systemd hands over (socket activation: LISTEN_FDS), not\n--listen's; see examples/systemd")
	if _, err := c.parse(args); err != nil {
		return err
	}
	if *activated && *listen != "" {
		return usageErrorf("serve: give --listen or --activated, not both")
	}
	ep, err := endpointOrDefault(*listen)
	if err != nil {
		return err
	}
	var opts []grpcipc.ListenOption
	var sopts []grpcipc.ServerOption
	if ep.Transport == grpcipc.TCP {
		switch {
		case *unauthTCP && *clientCA != "":
			return usageErrorf("serve: give --client-ca or --unauthenticated-tcp, not both")
		case *unauthTCP && *certFile == "" && !loopbackHost(ep.Address):
			return usageErrorf("serve: %s: without TLS (--cert, --key) only loopback callers are served; listen on 127.0.0.1 or [::1], or add TLS", ep)
		case *unauthTCP:
			sopts = append(sopts, grpcipc.WithUnauthenticatedTCP())
		case *clientCA == "" && len(allow) == 0 && *policyFile == "":
			return usageErrorf("serve: %s: tcp carries no OS identity, so callers must present a client certificate "+
				"(--cert, --key and --client-ca), or say --unauthenticated-tcp to let every process that can reach the port call", ep)
		}
	} else if *unauthTCP {
		return usageErrorf("serve: --unauthenticated-tcp applies only to tcp:// endpoints")
	}
	switch {
	case len(allow) > 0 && *policyFile != "":
		return usageErrorf("serve: give --allow or --policy, not both")
	case len(allow) > 0:
		ps := make([]grpcipc.Principal, len(allow))
		for i, s := range allow {
			if ps[i], err = grpcipc.ParsePrincipal(s); err != nil {
				return usageErrorf("--allow: %w", unprefixed{err})
			}
		}
		p, err := grpcipc.AllowPolicy(ps...)
		if err != nil {
			return usageErrorf("--allow: %w", unprefixed{err})
		}
		opts = append(opts, grpcipc.WithPolicy(p))
		sopts = append(sopts, grpcipc.WithPolicy(p))
	case *policyFile != "":
		// grpcipc.LoadPolicy's reading, with a cap on the file's size.
		b, err := readCapped(ctx, "--policy", *policyFile, maxSmallFile)
		if err != nil {
			return err
		}
		p, err := grpcipc.ParsePolicy(b)
		if err != nil {
			return fmt.Errorf("policy file %s: %w", *policyFile, unprefixed{err})
		}
		opts = append(opts, grpcipc.WithPolicy(p))
		sopts = append(sopts, grpcipc.WithPolicy(p))
	}
	sopts = append(sopts, grpcipc.WithLogger(slog.New(slog.NewTextHandler(stderr, nil))))
	var pin string
	if *certFile != "" || *keyFile != "" || *clientCA != "" {
		kp, err := loadKeyPair(ctx, *certFile, *keyFile)
		if err != nil {
			return err
		}
		cfg := &tls.Config{Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS12}
		if *clientCA != "" {
			pool, err := loadCAs(ctx, "--client-ca", *clientCA)
			if err != nil {
				return err
			}
			cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
		sopts = append(sopts, grpcipc.WithTLS(cfg))
		pin = grpcipc.CertPin(kp.Certificate[0]).String()
	}
	var listeners []net.Listener
	var eps []string
	if *activated {
		if listeners, err = grpcipc.ActivatedListeners(opts...); err != nil {
			return err
		}
		for _, l := range listeners {
			eps = append(eps, activatedEndpoint(l))
		}
	} else {
		lis, err := grpcipc.Listen(ctx, ep.String(), opts...)
		if err != nil {
			return err
		}
		listeners, eps = []net.Listener{lis}, []string{ep.String()}
	}
	srv, err := demo.NewServer(sopts...)
	if err != nil {
		for _, l := range listeners {
			l.Close()
		}
		return err
	}
	served := make(chan error, len(listeners))
	for i, l := range listeners {
		go func() { served <- srv.Serve(l) }()
		fmt.Fprintf(stdout, "serving %s\n", eps[i])
	}
	if pin != "" {
		fmt.Fprintf(stdout, "tls certificate sha256 %s\n", pin)
	}

	select {
	case err := <-served:
		srv.Stop()
		return fmt.Errorf("serve %s: %w", strings.Join(eps, ", "), unprefixed{err})
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(stopGrace):
		fmt.Fprintf(stderr, "grpcipc serve: calls still running after %v; stopping them\n", stopGrace)
		srv.Stop()
	}
	for range listeners {
		<-served
	}
	fmt.Fprintf(stdout, "stopped %s\n", strings.Join(eps, ", "))
	return nil
}

// activatedEndpoint names an activated socket in grpcipc's endpoint syntax.
func activatedEndpoint(l net.Listener) string {
	if name, ok := strings.CutPrefix(l.Addr().String(), "@"); ok {
		return "unix-abstract:" + name
	}
	ep, err := grpcipc.ParseEndpoint("unix:" + l.Addr().String())
	if err != nil {
		return l.Addr().String()
	}
	return ep.String()
}

// endpointOrDefault parses s, or returns the default endpoint of the
// grpcipc application when s is empty.
func endpointOrDefault(s string) (grpcipc.Endpoint, error) {
	if s == "" {
		return grpcipc.DefaultEndpoint("grpcipc")
	}
	ep, err := grpcipc.ParseEndpoint(s)
	if err != nil {
		return ep, usageErrorf("%w", err) // a mistake in the command line
	}
	return ep, nil
}

func runEndpoint(args []string, stdout io.Writer) error {
	c := newCommand("endpoint", "[--system] [APP]",
		"Print the endpoint a server of APP (default grpcipc) listens on, and its clients\n"+
			"connect to, on this OS.\n\n"+
			"Without --system, the per-user endpoint (grpcipc.DefaultEndpoint; for grpcipc, the\n"+
			"one serve, call, list and describe use without --listen or --connect): each user\n"+
			"has their own (in $XDG_RUNTIME_DIR or TMPDIR; root's in /run or /var/run;\n"+
			"npipe:APP-SID on Windows), and a client looks in its own user's. Use it for a\n"+
			"server that serves its own user: an agent, a plugin host, a tool's helper.\n\n"+
			"With --system, the machine-wide endpoint (grpcipc.SystemEndpoint), the same\n"+
			"whoever asks: /run/APP/APP.sock on Linux, /var/run/APP/APP.sock on macOS and the\n"+
			"BSDs, npipe:APP on Windows. Use it for a daemon that serves other users: only root\n"+
			"(on Windows, an administrator or a service) can create it, the daemon's policy\n"+
			"(serve --allow, --policy) says who may call, and its clients give it to --connect.", 0, 1, stdout)
	system := c.fs.Bool("system", false, "print the machine-wide endpoint of a daemon that serves other users, not the per-user one")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	app := "grpcipc"
	if len(pos) == 1 {
		app = pos[0]
	}
	endpointOf := grpcipc.DefaultEndpoint
	if *system {
		endpointOf = grpcipc.SystemEndpoint
	}
	ep, err := endpointOf(app)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, ep)
	return nil
}

// loopbackHost reports whether host:port names a loopback address.
func loopbackHost(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
