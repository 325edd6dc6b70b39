package grpcipc

import (
	"net"
	"runtime"
	"strconv"
	"strings"
)

// Transport names the kind of connection an [Endpoint] is reached by.
type Transport string

// The transports grpcipc knows. Not every OS has every one: see
// [ParseEndpoint].
const (
	// Unix is a Unix domain socket bound to a file path (Linux, macOS, the
	// BSDs; Windows 10 and later).
	Unix Transport = "unix"
	// UnixAbstract is a Linux abstract socket: a name with no file, and so no
	// file permissions. Only the peer check protects it.
	UnixAbstract Transport = "unix-abstract"
	// NamedPipe is a Windows named pipe, \\.\pipe\NAME.
	NamedPipe Transport = "npipe"
	// TCP is a TCP socket, for a peer on another machine.
	TCP Transport = "tcp"
)

// Inherited is the transport of a connection that a parent process made
// and handed to a child it started ([StartChild], [ChildListener],
// [ParentConn]): a Unix socket pair, or on Windows a named pipe of a
// random name that admits only the child's process. Such an endpoint has
// no string a client could dial; its Address names the process at the
// other end ("child pid 4242", "parent pid 4241").
const Inherited Transport = "inherited"

// Endpoint is a parsed endpoint string: where a server listens and a client
// connects. The zero value is not a valid endpoint; make one with
// [ParseEndpoint] or [DefaultEndpoint].
type Endpoint struct {
	// Transport is the kind of connection.
	Transport Transport
	// Address depends on the transport. Unix: the socket path as given
	// (a relative path is relative to the working directory). UnixAbstract:
	// the name, without the leading '@' or NUL. NamedPipe: the pipe's name,
	// the part after \\.\pipe\. TCP: host:port.
	Address string
}

// String returns the endpoint in grpcipc's canonical syntax, which
// [ParseEndpoint] turns back into the same Endpoint:
// unix:///abs/path (or unix:rel/path), unix-abstract:name, npipe:name,
// tcp://host:port. An [Inherited] endpoint, which has no string to dial,
// is described in words.
func (e Endpoint) String() string {
	switch e.Transport {
	case Unix:
		if strings.HasPrefix(e.Address, "/") {
			return "unix://" + e.Address
		}
		return "unix:" + e.Address
	case UnixAbstract:
		return "unix-abstract:" + e.Address
	case NamedPipe:
		return "npipe:" + e.Address
	case TCP:
		return "tcp://" + e.Address
	case Inherited:
		return "the inherited connection to the " + e.Address
	}
	return string(e.Transport) + ":" + e.Address
}

// ParseEndpoint parses an endpoint string. The same strings work for
// [Listen], [NewClient], [Dial] and the grpcipc command:
//
//	unix:///abs/path, unix:/abs/path, unix:rel/path   Unix socket file
//	unix-abstract:name, unix:@name                    Linux abstract socket
//	npipe:name, npipe:////./pipe/name, \\.\pipe\name  Windows named pipe
//	tcp://host:port, host:port                        TCP
//
// The unix forms are grpc-go's own. Named-pipe strings parse on every OS, so
// that a configuration can name one, but only Windows serves them. The error
// (an [*EndpointError] wrapping [ErrInvalidEndpoint]) names the string and
// says why it was refused: an unknown scheme, an empty path, a socket path
// longer than the OS allows (107 bytes on Linux and Windows, 103 on macOS and
// the BSDs, as sun_path keeps a byte for its NUL; a path is never
// truncated), an abstract socket on an OS other than Linux, or a remote
// named pipe.
func ParseEndpoint(s string) (Endpoint, error) {
	return parseEndpoint(s, runtime.GOOS)
}

// maxSocketPath is the longest Unix socket path, in bytes, that goos can
// bind: sun_path less the NUL that Go's and C's socket code append.
func maxSocketPath(goos string) int {
	switch goos {
	case "linux", "android", "windows":
		return 107
	default: // darwin, ios, freebsd, netbsd, openbsd, dragonfly, ...
		return 103
	}
}

func hasAbstractSockets(goos string) bool { return goos == "linux" || goos == "android" }

func parseEndpoint(s, goos string) (Endpoint, error) {
	switch {
	case s == "":
		return Endpoint{}, endpointErr(s, "empty endpoint")
	case strings.IndexByte(s, 0) >= 0:
		return Endpoint{}, endpointErr(s, "contains a NUL byte")
	case strings.HasPrefix(s, "unix-abstract:"):
		return parseAbstract(s, strings.TrimPrefix(s, "unix-abstract:"), goos)
	case strings.HasPrefix(s, "unix:"):
		return parseUnix(s, strings.TrimPrefix(s, "unix:"), goos)
	case strings.HasPrefix(s, "npipe:"):
		rest := strings.TrimPrefix(s, "npipe:")
		if strings.HasPrefix(rest, "//") || strings.HasPrefix(rest, `\\`) {
			// Docker's npipe:////./pipe/name (an empty authority, then the
			// path //./pipe/name), npipe://./pipe/name or npipe:\\.\pipe\name.
			if strings.HasPrefix(rest, "////") {
				rest = rest[2:]
			}
			return parsePipePath(s, strings.ReplaceAll(rest, "/", `\`))
		}
		return pipeEndpoint(s, rest)
	case strings.HasPrefix(s, `\\`):
		return parsePipePath(s, s)
	case strings.HasPrefix(s, "tcp://"):
		return parseHostPort(s, strings.TrimPrefix(s, "tcp://"))
	}
	if i := strings.Index(s, "://"); i > 0 {
		return Endpoint{}, endpointErr(s, "unknown scheme %q (want unix, unix-abstract, npipe or tcp)", s[:i])
	}
	if strings.HasPrefix(s, "/") {
		return Endpoint{}, endpointErr(s, "a bare path is not an endpoint; write unix://%s", s)
	}
	if _, port, err := net.SplitHostPort(s); err == nil && isDigits(port) {
		return parseHostPort(s, s)
	}
	if i := strings.IndexByte(s, ':'); i > 0 {
		return Endpoint{}, endpointErr(s, "unknown scheme %q (want unix, unix-abstract, npipe or tcp)", s[:i])
	}
	return Endpoint{}, endpointErr(s, "not an endpoint: want unix:PATH, unix-abstract:NAME, npipe:NAME or tcp://HOST:PORT")
}

func parseAbstract(s, name, goos string) (Endpoint, error) {
	if !hasAbstractSockets(goos) {
		return Endpoint{}, unsupportedErr(s, "abstract sockets exist only on Linux, not on %s", goos)
	}
	if name == "" {
		return Endpoint{}, endpointErr(s, "empty abstract socket name")
	}
	// The kernel sees a NUL, then the name: one byte of sun_path goes to the
	// NUL, and Go's socket code keeps one more.
	if limit := maxSocketPath(goos) - 1; len(name) > limit {
		return Endpoint{}, endpointErr(s, "abstract socket name is %d bytes; %s allows at most %d", len(name), goos, limit)
	}
	return Endpoint{Transport: UnixAbstract, Address: name}, nil
}

func parseUnix(s, rest, goos string) (Endpoint, error) {
	if strings.HasPrefix(rest, "@") {
		return parseAbstract(s, rest[1:], goos)
	}
	path := rest
	if strings.HasPrefix(rest, "//") {
		// unix://AUTHORITY/PATH: grpc-go accepts only an empty authority.
		if !strings.HasPrefix(rest, "///") {
			return Endpoint{}, endpointErr(s, "unix:// takes no host; write unix:///abs/path or unix:rel/path")
		}
		path = rest[2:]
	}
	if goos == "windows" && strings.HasPrefix(path, "/") && isDrivePath(path[1:]) {
		path = path[1:] // unix:///C:/x/y.sock, unix:/C:/x/y.sock
	}
	switch {
	case path == "":
		return Endpoint{}, endpointErr(s, "empty socket path")
	case strings.HasSuffix(path, "/") || goos == "windows" && strings.HasSuffix(path, `\`):
		return Endpoint{}, endpointErr(s, "socket path ends in a separator, so it names a directory")
	case len(path) > maxSocketPath(goos):
		return Endpoint{}, endpointErr(s, "socket path is %d bytes; %s allows at most %d (sun_path); use a shorter path",
			len(path), goos, maxSocketPath(goos))
	}
	return Endpoint{Transport: Unix, Address: path}, nil
}

// isDrivePath reports whether p starts like C:/ or C:\.
func isDrivePath(p string) bool {
	return len(p) >= 3 && (p[0]|0x20 >= 'a' && p[0]|0x20 <= 'z') && p[1] == ':' && (p[2] == '/' || p[2] == '\\')
}

// parsePipePath parses a Win32 pipe path, \\.\pipe\NAME.
func parsePipePath(s, p string) (Endpoint, error) {
	const local = `\\.\pipe\`
	if len(p) >= len(local) && strings.EqualFold(p[:len(local)], local) {
		return pipeEndpoint(s, p[len(local):])
	}
	if parts := strings.SplitN(p[2:], `\`, 3); len(parts) == 3 && strings.EqualFold(parts[1], "pipe") {
		return Endpoint{}, endpointErr(s, "remote named pipe on host %q refused: only local pipes (\\\\.\\pipe\\NAME) are served", parts[0])
	}
	return Endpoint{}, endpointErr(s, `not a named pipe path: want \\.\pipe\NAME`)
}

func pipeEndpoint(s, name string) (Endpoint, error) {
	switch {
	case name == "":
		return Endpoint{}, endpointErr(s, "empty pipe name")
	case strings.ContainsRune(name, '\\'):
		return Endpoint{}, endpointErr(s, "pipe name contains a backslash")
	case strings.HasPrefix(name, "/"):
		return Endpoint{}, endpointErr(s, "pipe name starts with a slash")
	case len(name) > 247: // 256 characters with the \\.\pipe\ prefix
		return Endpoint{}, endpointErr(s, "pipe name is %d bytes; Windows allows at most 247", len(name))
	}
	return Endpoint{Transport: NamedPipe, Address: name}, nil
}

func parseHostPort(s, hp string) (Endpoint, error) {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return Endpoint{}, endpointErr(s, "want tcp://HOST:PORT: %v", err)
	}
	if strings.ContainsAny(host, "/?#") || strings.ContainsAny(port, "/?#") {
		return Endpoint{}, endpointErr(s, "tcp endpoint takes no path or query")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || !isDigits(port) {
		return Endpoint{}, endpointErr(s, "port %q is not a number from 0 to 65535", port)
	} else if host == "" && n == 0 {
		return Endpoint{}, endpointErr(s, "no host and no port")
	}
	return Endpoint{Transport: TCP, Address: hp}, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
