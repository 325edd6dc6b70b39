package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"flag"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/grpcipc/grpcipc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// clientFlags are the flags of the commands that call a server.
type clientFlags struct {
	connect            *string
	timeout            *time.Duration
	connectTimeout     seconds
	expect, pins       []string
	protos             []string
	protosets          []string
	importPaths        []string
	cacert, cert, keyf *string
	http2              *bool
	// grpcurl's: metadata for every request, for calls alone and for
	// reflection alone; ${NAME} expanded from the environment.
	headers, rpcHeaders, reflectHeaders []string
	expandHeaders                       *bool
	serverName                          *string
	maxMsgSize                          *int
}

// addClientFlags adds the flags of the commands that call a server; call
// adds those that only a call uses.
func addClientFlags(fs *flag.FlagSet, call bool) *clientFlags {
	f := &clientFlags{
		connect: fs.String("connect", "", "`endpoint` of the server (default: what \"grpcipc endpoint\" prints)"),
		timeout: fs.Duration("timeout", 10*time.Second, "give up after this long (the default of --connect-timeout, and of call's\n--max-time, which bounds the whole call command)"),
		cacert:  fs.String("cacert", "", "verify the server's TLS certificate against the CA certificates in this PEM `file`"),
		cert:    fs.String("cert", "", "present this client certificate (PEM `file`; with --key)"),
		keyf:    fs.String("key", "", "the private key of --cert (PEM `file`)"),
		http2:   fs.Bool("http2", false, "speak gRPC over HTTP/2 only (by default grpcipc's fast path is offered, and a\nserver that does not speak it is spoken to over HTTP/2)"),
	}
	f.expandHeaders = fs.Bool("expand-headers", false, "expand ${NAME} in -H, --rpc-header and --reflect-header values from the\nenvironment (an unset NAME is an error), as grpcurl's -expand-headers")
	f.serverName = fs.String("servername", "", "verify the server's TLS certificate for this `name` (with --cacert; default the\nendpoint's host)")
	f.maxMsgSize = new(int)
	headerFlags := []struct {
		name  string
		to    *[]string
		usage string
	}{
		{"H", &f.headers, "add request metadata `\"name: value\"` to calls and reflection (repeatable; a -bin\nname takes base64, as with grpcurl)"},
		{"reflect-header", &f.reflectHeaders, "add request metadata `\"name: value\"` to reflection requests only (repeatable)"},
	}
	if call {
		fs.IntVar(f.maxMsgSize, "max-msg-sz", 0, "accept replies of up to this many `bytes` (default 4194304, gRPC's 4 MiB)")
		headerFlags = append(headerFlags, struct {
			name  string
			to    *[]string
			usage string
		}{"rpc-header", &f.rpcHeaders, "add request metadata `\"name: value\"` to the call only (repeatable)"})
		fs.Bool("plaintext", true, "accepted for grpcurl's command lines: a local endpoint is plaintext unless TLS\nflags are given (grpcurl's -insecure, which skips verifying TLS, is not: use --pin)")
	}
	for _, h := range headerFlags {
		fs.Func(h.name, h.usage, func(v string) error {
			*h.to = append(*h.to, v)
			return nil
		})
	}
	fs.Var(&f.connectTimeout, "connect-timeout", "give connecting and reflection this long (`seconds`, as grpcurl's\n-connect-timeout, or a duration; default --timeout)")
	fs.Func("expect-server", "trust only a server whose process runs as `PRINCIPAL` (repeatable: any of; e.g.\nroot, same-user, user:NAME, uid:N; * trusts any). Default: same-user or root,\nwith a socket file of theirs in directories no one else can write", func(s string) error {
		if _, err := grpcipc.ParsePrincipal(s); err != nil {
			return unprefixed{err} // flag.Parse makes it a usage error
		}
		f.expect = append(f.expect, s)
		return nil
	})
	fs.Func("proto", "take service descriptions from this .proto `file` instead of server reflection (repeatable;\nit and each file it imports may hold up to 64 MiB)", func(s string) error {
		f.protos = append(f.protos, s)
		return nil
	})
	fs.Func("protoset", "take service descriptions from this compiled `file` (a FileDescriptorSet, as protoc\n--descriptor_set_out --include_imports writes, up to 64 MiB) instead of server reflection (repeatable)", func(s string) error {
		f.protosets = append(f.protosets, s)
		return nil
	})
	fs.Func("import-path", "`dir`ectory where --proto files and their imports are found (repeatable; default: the working directory)", func(s string) error {
		f.importPaths = append(f.importPaths, s)
		return nil
	})
	fs.Func("pin", "accept the server's TLS certificate by its SHA-256 `thumbprint`: 64 hex digits, or spki:HEX (repeatable)", func(s string) error {
		f.pins = append(f.pins, s)
		return nil
	})
	return f
}

// options turns the flags into NewClient options; the files they name are
// read within ctx.
func (f *clientFlags) options(ctx context.Context) ([]grpcipc.ClientOption, error) {
	var opts []grpcipc.ClientOption
	if *f.http2 {
		opts = append(opts, grpcipc.WithHTTP2())
	}
	if len(f.expect) > 0 {
		expect := make([]grpcipc.Principal, len(f.expect))
		for i, s := range f.expect {
			p, err := grpcipc.ParsePrincipal(s)
			if err != nil {
				return nil, err
			}
			expect[i] = p
		}
		opts = append(opts, grpcipc.WithExpectedServer(expect...))
	}
	if *f.serverName != "" && *f.cacert == "" {
		return nil, usageErrorf("--servername names the certificate --cacert verifies: give --cacert too")
	}
	if *f.cacert != "" || *f.cert != "" || *f.keyf != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: *f.serverName}
		if *f.cacert != "" {
			pool, err := loadCAs(ctx, "--cacert", *f.cacert)
			if err != nil {
				return nil, err
			}
			cfg.RootCAs = pool
		}
		if *f.cert != "" || *f.keyf != "" {
			kp, err := loadKeyPair(ctx, *f.cert, *f.keyf)
			if err != nil {
				return nil, err
			}
			cfg.Certificates = []tls.Certificate{kp}
		}
		opts = append(opts, grpcipc.WithTLS(cfg))
	}
	if len(f.pins) > 0 {
		pins := make([]grpcipc.Pin, len(f.pins))
		for i, s := range f.pins {
			p, err := grpcipc.ParsePin(s)
			if err != nil {
				return nil, err
			}
			pins[i] = p
		}
		opts = append(opts, grpcipc.WithPins(pins...))
	}
	return opts, nil
}

// metadata is the request metadata of calls (rpc) or of reflection
// requests (!rpc): -H's and the --rpc-header's or --reflect-header's.
func (f *clientFlags) metadata(rpc bool) (metadata.MD, error) {
	hs := append([]string(nil), f.headers...)
	if rpc {
		hs = append(hs, f.rpcHeaders...)
	} else {
		hs = append(hs, f.reflectHeaders...)
	}
	if *f.expandHeaders {
		for i, h := range hs {
			var missing []string
			hs[i] = os.Expand(h, func(name string) string {
				v, ok := os.LookupEnv(name)
				if !ok {
					missing = append(missing, name)
				}
				return v
			})
			if len(missing) > 0 {
				return nil, usageErrorf("header %q: --expand-headers: %s is not set", h, strings.Join(missing, ", "))
			}
		}
	}
	return parseHeaders(hs)
}

// callOptions are the call options the flags ask for.
func (f *clientFlags) callOptions() []grpc.CallOption {
	if *f.maxMsgSize > 0 {
		return []grpc.CallOption{grpc.MaxCallRecvMsgSize(*f.maxMsgSize)}
	}
	return nil
}

// loadKeyPair reads --cert and --key (each up to maxSmallFile bytes, within
// ctx).
func loadKeyPair(ctx context.Context, cert, key string) (tls.Certificate, error) {
	if cert == "" || key == "" {
		return tls.Certificate{}, usageErrorf("--cert and --key go together")
	}
	certPEM, err := readCapped(ctx, "--cert", cert, maxSmallFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := readCapped(ctx, "--key", key, maxSmallFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	kp, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("loading --cert %s and --key %s: %w", cert, key, err)
	}
	return kp, nil
}

// loadCAs reads the CA certificates of the PEM file the flag what names
// (up to maxSmallFile bytes, within ctx).
func loadCAs(ctx context.Context, what, file string) (*x509.CertPool, error) {
	b, err := readCapped(ctx, what, file, maxSmallFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: %s holds no PEM certificate", what, file)
	}
	return pool, nil
}

// parseHeaders reads -H's "name: value" pairs; the values of -bin names
// are base64, as grpcurl takes them.
func parseHeaders(hs []string) (metadata.MD, error) {
	md := metadata.MD{}
	for _, h := range hs {
		name, value, ok := strings.Cut(h, ":")
		name = strings.ToLower(strings.TrimSpace(name))
		if !ok || name == "" {
			return nil, usageErrorf("header %q: want \"name: value\"", h)
		}
		value = strings.TrimSpace(value)
		if strings.HasSuffix(name, "-bin") {
			// base64, as grpcurl takes it; what is not base64 is sent as
			// it is, as grpcurl sends it.
			if b, err := base64.StdEncoding.DecodeString(value); err == nil {
				value = string(b)
			} else if b, err := base64.RawStdEncoding.DecodeString(value); err == nil {
				value = string(b)
			}
		}
		md.Append(name, value)
	}
	return md, nil
}

// seconds is a time limit given as grpcurl gives it (seconds, "2.5") or as
// a Go duration ("2.5s", "1m"); zero when not given.
type seconds time.Duration

func (s *seconds) String() string { return time.Duration(*s).String() }

func (s *seconds) Set(v string) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		f, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil || f > float64(math.MaxInt64/int64(time.Second)) {
			return fmt.Errorf("%q is neither seconds nor a duration", v)
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d <= 0 {
		return fmt.Errorf("%q is not positive", v)
	}
	*s = seconds(d)
	return nil
}

// or is the limit given, or def.
func (s seconds) or(def time.Duration) time.Duration {
	if s == 0 {
		return def
	}
	return time.Duration(s)
}
