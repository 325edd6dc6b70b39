package client

import (
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/credentials/local"
)

// Transport credentials of one's own through WithGRPCDialOptions would
// turn the server check off: an error, with the way to keep the checks.
func TestOwnTransportCredentialsRefused(t *testing.T) {
	endpoint := testutil.Endpoint(t)
	for name, opt := range map[string]grpc.DialOption{
		"insecure": grpc.WithTransportCredentials(insecure.NewCredentials()),
		"local":    grpc.WithTransportCredentials(local.NewCredentials()),
	} {
		_, err := grpcipc.NewClient(endpoint, grpcipc.WithExpectedServer(grpcipc.SameUser()), grpcipc.WithGRPCDialOptions(opt))
		if err == nil || !strings.Contains(err.Error(), "ClientCredentials") {
			t.Errorf("%s credentials through WithGRPCDialOptions: %v; want an error naming ClientCredentials", name, err)
		}
	}
	// Other dial options are fine.
	conn, err := grpcipc.NewClient(endpoint, grpcipc.WithGRPCDialOptions(grpc.WithUserAgent("x")))
	if err != nil {
		t.Fatalf("a dial option that sets no credentials: %v", err)
	}
	conn.Close()
}

// ClientCredentials keeps the checks in a grpc.ClientConn of one's own.
func TestClientCredentialsKeepChecks(t *testing.T) {
	ep, _ := e2e.StartServer(t, testutil.Endpoint(t))
	dial := func(expect ...grpcipc.Principal) error {
		var opts []grpcipc.ClientOption
		if len(expect) > 0 {
			opts = append(opts, grpcipc.WithExpectedServer(expect...))
		}
		creds, err := grpcipc.ClientCredentials(ep.String(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient("passthrough:///"+ep.String(), grpc.WithContextDialer(grpcipc.Dial), grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = greetpb.NewGreeterClient(conn).SayHello(e2e.Context(t), &greetpb.HelloRequest{Name: "x"})
		return err
	}
	if err := dial(); err != nil {
		t.Errorf("default expectation, own server: %v", err)
	}
	sid, err := grpcipc.ParsePrincipal("sid:S-1-5-21-1-2-3-4242")
	if err != nil {
		t.Fatal(err)
	}
	if err := dial(grpcipc.UID(4242), sid); err == nil || !strings.Contains(err.Error(), "untrusted server") {
		t.Errorf("expecting someone else: %v; want untrusted server", err)
	}
	if _, err := grpcipc.ClientCredentials(ep.String(), grpcipc.WithGRPCDialOptions(grpc.WithUserAgent("x"))); err == nil {
		t.Error("ClientCredentials accepted WithGRPCDialOptions")
	}
}
