package grpcipc

import (
	"fmt"
	"path"
	"runtime"
	"strconv"
)

// DefaultEndpoint returns the endpoint a server of the application app should
// listen on, and its clients connect to, on this OS, in the way the
// reference docs pick a transport by OS at startup:
//
//   - Linux: $XDG_RUNTIME_DIR/APP/APP.sock when XDG_RUNTIME_DIR is set to an
//     absolute path; /run/APP/APP.sock for root; otherwise
//     TMPDIR/APP-UID/APP.sock, a directory of the user's own.
//   - macOS and the BSDs: TMPDIR/APP-UID/APP.sock (macOS's TMPDIR is
//     already per user); /var/run/APP/APP.sock for root.
//   - Windows: the named pipe npipe:APP-SID, SID being the user's security
//     identifier, so that two users' servers never meet.
//
// Where the path would be longer than the OS allows, /tmp/APP-UID/APP.sock
// is used. [Listen] creates the socket's directory, mode 0700, when it is
// missing, and refuses an existing one that another user owns or could
// write to.
//
// app must be 1 to 64 characters of ASCII letters, digits, '.', '_' and '-',
// and not start with '.' or '-'.
//
// DefaultEndpoint is per user: a client run by another user looks in its
// own place. A daemon that serves other users listens on [SystemEndpoint]
// instead, and its clients connect there.
func DefaultEndpoint(app string) (Endpoint, error) {
	f, err := currentFacts()
	if err != nil {
		return Endpoint{}, fmt.Errorf("grpcipc: the default endpoint of %q: %w", app, err)
	}
	return defaultEndpoint(app, f)
}

// SystemEndpoint returns the machine-wide endpoint of the application app,
// for a daemon that serves other users: the same for every caller,
// whoever runs it.
//
//   - Linux: /run/APP/APP.sock
//   - macOS and the BSDs: /var/run/APP/APP.sock
//   - Windows: the named pipe npipe:APP
//
// Only root (on Windows, an administrator or a service) can create it. The
// daemon's policy ([WithPolicy]) says who may call, and [Listen] makes the
// socket file and its directory let in those the policy admits and no
// one else. app must be as for [DefaultEndpoint].
func SystemEndpoint(app string) (Endpoint, error) {
	return systemEndpoint(app, runtime.GOOS)
}

func systemEndpoint(app, goos string) (Endpoint, error) {
	if err := checkAppName(app); err != nil {
		return Endpoint{}, err
	}
	switch goos {
	case "windows":
		return parseEndpoint("npipe:"+app, goos)
	case "linux", "android":
		return parseEndpoint("unix://"+path.Join("/run", app, app+".sock"), goos)
	}
	return parseEndpoint("unix://"+path.Join("/var/run", app, app+".sock"), goos)
}

// osFacts are what the default endpoint depends on, gathered per OS by
// currentFacts so that defaultEndpoint can be tested for every OS anywhere.
type osFacts struct {
	goos       string
	runtimeDir string // $XDG_RUNTIME_DIR
	euid       int
	tempDir    string
	sid        string // Windows: the user's SID
}

func defaultEndpoint(app string, f osFacts) (Endpoint, error) {
	if err := checkAppName(app); err != nil {
		return Endpoint{}, err
	}
	if f.goos == "windows" {
		if f.sid == "" {
			return Endpoint{}, endpointErr(app, "no user SID to make the default pipe name from")
		}
		return parseEndpoint("npipe:"+app+"-"+f.sid, f.goos)
	}
	sock := app + ".sock"
	perUser := app + "-" + strconv.Itoa(f.euid)
	var dir string
	switch {
	case (f.goos == "linux" || f.goos == "android") && path.IsAbs(f.runtimeDir):
		dir = path.Join(f.runtimeDir, app)
	case f.euid == 0 && (f.goos == "linux" || f.goos == "android"):
		dir = path.Join("/run", app)
	case f.euid == 0:
		dir = path.Join("/var/run", app)
	case path.IsAbs(f.tempDir):
		dir = path.Join(f.tempDir, perUser)
	default:
		dir = path.Join("/tmp", perUser)
	}
	p := path.Join(dir, sock)
	if len(p) > maxSocketPath(f.goos) {
		p = path.Join("/tmp", perUser, sock)
	}
	return parseEndpoint("unix://"+p, f.goos)
}

func checkAppName(app string) error {
	if app == "" || len(app) > 64 {
		return endpointErr(app, "application name must be 1 to 64 characters")
	}
	if app[0] == '.' || app[0] == '-' {
		return endpointErr(app, "application name must not start with %q", app[0])
	}
	for i := 0; i < len(app); i++ {
		c := app[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return endpointErr(app, "application name may hold only letters, digits, '.', '_' and '-'")
		}
	}
	return nil
}
