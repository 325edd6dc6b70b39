package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/grpcipc/grpcipc"
)

// clientFlags are the flags of the commands that call a server.
type clientFlags struct {
	connect            *string
	timeout            *time.Duration
	connectTimeout     seconds
	expect, pins       []string
	protos             []string
	importPaths        []string
	cacert, cert, keyf *string
	http2              *bool
}

func addClientFlags(fs *flag.FlagSet) *clientFlags {
	f := &clientFlags{
		connect: fs.String("connect", "", "`endpoint` of the server (default: what \"grpcipc endpoint\" prints)"),
		timeout: fs.Duration("timeout", 10*time.Second, "give up after this long: connecting and reflection, and the call each (see\n--connect-timeout and --max-time)"),
		cacert:  fs.String("cacert", "", "verify the server's TLS certificate against the CA certificates in this PEM `file`"),
		cert:    fs.String("cert", "", "present this client certificate (PEM `file`; with --key)"),
		keyf:    fs.String("key", "", "the private key of --cert (PEM `file`)"),
		http2:   fs.Bool("http2", false, "speak gRPC over HTTP/2 rather than offer grpcipc's fast path (which a server\nthat does not speak it gets HTTP/2 instead of anyway)"),
	}
	fs.Var(&f.connectTimeout, "connect-timeout", "give connecting and reflection this long (`seconds`, as grpcurl's\n-connect-timeout, or a duration; default --timeout)")
	fs.Func("expect-server", "trust only a server whose process runs as `PRINCIPAL` (repeatable: any of; e.g. root, same-user, user:NAME, uid:N;\n* trusts any). Default: same-user or root, with a socket file of theirs in directories no one else can write", func(s string) error {
		if _, err := grpcipc.ParsePrincipal(s); err != nil {
			return err // flag.Parse makes it a usage error
		}
		f.expect = append(f.expect, s)
		return nil
	})
	fs.Func("proto", "take service descriptions from this .proto `file` instead of server reflection (repeatable)", func(s string) error {
		f.protos = append(f.protos, s)
		return nil
	})
	fs.Func("import-path", "where --proto files and their imports are found (repeatable; default: the working directory)", func(s string) error {
		f.importPaths = append(f.importPaths, s)
		return nil
	})
	fs.Func("pin", "accept the server's TLS certificate by its SHA-256 thumbprint: 64 hex digits, or spki:HEX (repeatable)", func(s string) error {
		f.pins = append(f.pins, s)
		return nil
	})
	return f
}

// options turns the flags into NewClient options.
func (f *clientFlags) options() ([]grpcipc.ClientOption, error) {
	var opts []grpcipc.ClientOption
	if *f.http2 {
		opts = append(opts, grpcipc.WithHTTP2())
	}
	if len(f.expect) > 0 {
		opts = append(opts, grpcipc.WithExpectedServer(f.expect...))
	}
	if *f.cacert != "" || *f.cert != "" || *f.keyf != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if *f.cacert != "" {
			pool, err := loadCAs(*f.cacert)
			if err != nil {
				return nil, err
			}
			cfg.RootCAs = pool
		}
		if *f.cert != "" || *f.keyf != "" {
			kp, err := loadKeyPair(*f.cert, *f.keyf)
			if err != nil {
				return nil, err
			}
			cfg.Certificates = []tls.Certificate{kp}
		}
		opts = append(opts, grpcipc.WithTLS(cfg))
	}
	if len(f.pins) > 0 {
		opts = append(opts, grpcipc.WithPins(f.pins...))
	}
	return opts, nil
}

func loadKeyPair(cert, key string) (tls.Certificate, error) {
	if cert == "" || key == "" {
		return tls.Certificate{}, usageErrorf("--cert and --key go together")
	}
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("loading --cert %s and --key %s: %w", cert, key, err)
	}
	return kp, nil
}

func loadCAs(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}
