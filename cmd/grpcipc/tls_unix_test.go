//go:build unix

package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
)

func writeKeyPair(t *testing.T, dir, name string) (cert, key string, pin string) {
	t.Helper()
	kp, err := grpcipc.NewKeyPair(name)
	if err != nil {
		t.Fatal(err)
	}
	c, k, err := kp.PEM()
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(cert, c, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, k, 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key, kp.Pin.String()
}

func TestCLITLS(t *testing.T) {
	dir := testutil.ShortTempDir(t)
	serverCert, serverKey, serverPin := writeKeyPair(t, dir, "server")
	clientCert, clientKey, _ := writeKeyPair(t, dir, "client")
	_, _, otherPin := writeKeyPair(t, dir, "other")
	endpoint := "unix://" + filepath.Join(dir, "tls.sock")

	cmd := cliCommand(t, nil, "serve", "--listen", endpoint, "--cert", serverCert, "--key", serverKey, "--client-ca", clientCert)
	cmd.Stderr = os.Stderr
	r := testutil.Start(t, cmd)
	if line, _ := r.ReadString('\n'); line != "serving "+endpoint+"\n" {
		t.Fatalf("serve said %q", line)
	}
	if line, _ := r.ReadString('\n'); line != "tls certificate sha256 "+serverPin+"\n" {
		t.Errorf("serve's second line is %q; want its certificate's pin", line)
	}
	go io.Copy(io.Discard, r)

	hello := []string{"greet.Greeter/SayHello", `{"name":"tls"}`}
	withClientCert := []string{"--cert", clientCert, "--key", clientKey}
	for _, tc := range []struct {
		name  string
		flags []string
		ok    bool
		want  string
	}{
		{"pinned", append([]string{"--pin", serverPin}, withClientCert...), true, "Hello tls"},
		{"CA", append([]string{"--cacert", serverCert}, withClientCert...), true, "Hello tls"},
		{"CA and --servername", append([]string{"--cacert", serverCert, "--servername", "server"}, withClientCert...), true, "Hello tls"},
		{"CA and another --servername", append([]string{"--cacert", serverCert, "--servername", "elsewhere"}, withClientCert...), false, "not elsewhere"},
		{"pinned and expected", append([]string{"--pin", serverPin, "--expect-server", "same-user"}, withClientCert...), true, "Hello tls"},
		{"wrong pin", append([]string{"--pin", otherPin}, withClientCert...), false, "matches no pinned SHA-256 thumbprint"},
		{"no client certificate", []string{"--pin", serverPin}, false, "Unavailable"},
		{"no TLS", nil, false, "Unavailable"},
		{"cert without key", []string{"--pin", serverPin, "--cert", clientCert}, false, "--cert and --key go together"},
		{"bad pin", []string{"--pin", "xyz"}, false, `pin "xyz": want 64 hex digits`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{"call", "--connect", endpoint}, tc.flags...), hello...)
			code, stdout, stderr := runCLI(t, nil, args...)
			if tc.ok {
				if code != 0 || !strings.Contains(stdout, tc.want) {
					t.Errorf("exit %d, %q, %q", code, stdout, stderr)
				}
				return
			}
			if code == 0 {
				t.Fatalf("succeeded: %q", stdout)
			}
			oneErrorLine(t, stderr, tc.want)
		})
	}
}
