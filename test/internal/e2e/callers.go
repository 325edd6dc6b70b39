package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/identity/identitypb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// CallResult is what the "call" helper prints.
type CallResult struct {
	PID     int    `json:"pid"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Who     struct {
		PID  int64  `json:"pid"`
		UID  string `json:"uid"`
		GID  string `json:"gid"`
		User string `json:"user"`
		Exe  string `json:"exe"`
		// Where the server saw it run (when its policy names cgroups)
		Cgroup   string `json:"cgroup"`
		Unit     string `json:"unit"`
		UserUnit string `json:"user_unit"`
	} `json:"who"`
	// The server's identity as this client saw it.
	ServerPID int    `json:"server_pid"`
	ServerUID string `json:"server_uid"`
	// Protocol is what the client spoke by the end of the call.
	Protocol grpcipc.Protocol `json:"protocol"`
}

func init() {
	// call ENDPOINT METHOD [EXPECTED-SERVER...]: calls SayHello or WhoAmI
	// once through grpcipc.NewClient and prints a CallResult.
	testutil.RegisterHelper("call", func(args []string) error {
		var opts []grpcipc.ClientOption
		if len(args) > 2 {
			var expect []grpcipc.Principal
			for _, s := range args[2:] {
				p, err := grpcipc.ParsePrincipal(s)
				if err != nil {
					return err
				}
				expect = append(expect, p)
			}
			opts = append(opts, grpcipc.WithExpectedServer(expect...))
		}
		endpoint := args[0]
		if app, ok := strings.CutPrefix(endpoint, "system:"); ok {
			ep, err := grpcipc.SystemEndpoint(app) // as the other user sees it
			if err != nil {
				return err
			}
			endpoint = ep.String()
		}
		conn, err := grpcipc.NewClient(endpoint, opts...)
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res := CallResult{PID: os.Getpid()}
		var p peer.Peer
		switch args[1] {
		case "SayHello":
			_, err = greetpb.NewGreeterClient(conn).SayHello(ctx, &greetpb.HelloRequest{Name: "helper"}, grpc.Peer(&p))
		case "WhoAmI":
			var who *identitypb.WhoAmIResponse
			who, err = identitypb.NewIdentityClient(conn).WhoAmI(ctx, &identitypb.WhoAmIRequest{}, grpc.Peer(&p))
			if err == nil {
				res.Who.PID, res.Who.UID, res.Who.GID = who.GetPid(), who.GetUid(), who.GetGid()
				res.Who.User, res.Who.Exe = who.GetUser(), who.GetExecutable()
				res.Who.Cgroup, res.Who.Unit, res.Who.UserUnit = who.GetCgroup(), who.GetUnit(), who.GetUserUnit()
			}
		default:
			return fmt.Errorf("no method %q", args[1])
		}
		if ai, ok := grpcipc.AuthInfoFromPeer(&p); ok && ai.Peer != nil {
			res.ServerPID, _ = ai.Peer.PID()
			if uid, ok := ai.Peer.UID(); ok {
				res.ServerUID = strconv.Itoa(uid)
			} else {
				res.ServerUID, _ = ai.Peer.SID()
			}
		}
		st := status.Convert(err)
		res.Code, res.Message = st.Code().String(), st.Message()
		res.Protocol = conn.Protocol()
		return json.NewEncoder(os.Stdout).Encode(res)
	})
}

// Caller is who a helper runs as.
type Caller struct {
	UID, GID int
	Groups   []int
	Exe      string // "" for the shared copy of the test binary
	// Cgroup: a directory of the cgroup v2 hierarchy the helper starts
	// in (Linux; "" for this process's own)
	Cgroup string
}

func (c Caller) String() string {
	return fmt.Sprintf("uid %d gid %d groups %v exe %s", c.UID, c.GID, c.Groups, filepath.Base(c.Exe))
}

// Call runs the call helper as c and returns what it got.
func Call(t *testing.T, c Caller, endpoint, method string) CallResult {
	t.Helper()
	var cmd = testutil.HelperCommand(t, c.UID, c.GID, "call", endpoint, method)
	if c.Exe != "" || c.Groups != nil {
		exe := c.Exe
		if exe == "" {
			exe = cmd.Path
		}
		cmd = testutil.HelperCommandAt(t, exe, c.UID, c.GID, c.Groups, "call", endpoint, method)
	}
	if c.Cgroup != "" {
		startIn(t, cmd, c.Cgroup)
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("call helper as %v: %v", c, err)
	}
	var res CallResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("call helper printed %q: %v", out, err)
	}
	return res
}

var (
	// Root is uid 0.
	Root = Caller{UID: 0, GID: 0}
	// Nobody is uid 65534, the unprivileged user.
	Nobody = Caller{UID: testutil.Nobody, GID: testutil.Nobody}
	// Other is a uid with no user.
	Other = Caller{UID: 12345, GID: 12345}
)
