package admission

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"golang.org/x/sys/windows"
)

// TestPipeSecondProcess: a client in another process calls SayHello and
// WhoAmI over a named pipe; each side sees the other's PID and SID.
func TestPipeSecondProcess(t *testing.T) {
	endpoint := testutil.Endpoint(t)
	e2e.StartServer(t, endpoint)
	tu, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		t.Fatal(err)
	}
	mySID := tu.User.Sid.String()
	for _, method := range []string{"SayHello", "WhoAmI"} {
		out, err := testutil.HelperCommand(t, os.Geteuid(), os.Getegid(), "call", endpoint, method).Output()
		if err != nil {
			t.Fatalf("%s from a second process: %v", method, err)
		}
		var res e2e.CallResult
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("helper printed %q: %v", out, err)
		}
		if res.Code != "OK" {
			t.Fatalf("%s: %s %s", method, res.Code, res.Message)
		}
		if res.ServerPID != os.Getpid() || res.ServerUID != mySID {
			t.Errorf("the client saw the server as pid %d %s; want pid %d %s", res.ServerPID, res.ServerUID, os.Getpid(), mySID)
		}
		if method != "WhoAmI" {
			continue
		}
		if res.Who.PID != int64(res.PID) || res.Who.UID != mySID {
			t.Errorf("the server saw the client as pid %d %s; want pid %d %s", res.Who.PID, res.Who.UID, res.PID, mySID)
		}
		exe, _ := os.Executable()
		if !strings.EqualFold(filepath.Base(res.Who.Exe), filepath.Base(exe)) {
			t.Errorf("the server saw the client's executable as %q; want %s", res.Who.Exe, filepath.Base(exe))
		}
		t.Logf("client pid %d (%s), server pid %d: %s", res.PID, res.Who.Exe, os.Getpid(), strconv.Quote(res.Who.User))
	}
}
