package grpcipc

import (
	"errors"
	"strings"
	"testing"
)

func TestParseEndpoint(t *testing.T) {
	long := func(n int) string { return "/" + strings.Repeat("a", n-1) }
	tests := []struct {
		in, goos string
		want     Endpoint
		str      string // canonical String(); "" means the input itself
	}{
		{"unix:///run/app.sock", "linux", Endpoint{Unix, "/run/app.sock"}, ""},
		{"unix:/run/app.sock", "linux", Endpoint{Unix, "/run/app.sock"}, "unix:///run/app.sock"},
		{"unix:rel/app.sock", "linux", Endpoint{Unix, "rel/app.sock"}, ""},
		{"unix:app.sock", "darwin", Endpoint{Unix, "app.sock"}, ""},
		{"unix:" + long(107), "linux", Endpoint{Unix, long(107)}, "unix://" + long(107)},
		{"unix:" + long(103), "darwin", Endpoint{Unix, long(103)}, "unix://" + long(103)},
		{"unix-abstract:name", "linux", Endpoint{UnixAbstract, "name"}, ""},
		{"unix-abstract:with/slash", "linux", Endpoint{UnixAbstract, "with/slash"}, ""},
		{"unix:@name", "linux", Endpoint{UnixAbstract, "name"}, "unix-abstract:name"},
		{"unix-abstract:" + strings.Repeat("n", 106), "linux", Endpoint{UnixAbstract, strings.Repeat("n", 106)}, ""},
		{"npipe:app", "linux", Endpoint{NamedPipe, "app"}, ""},
		{"npipe:app", "windows", Endpoint{NamedPipe, "app"}, ""},
		{"npipe:////./pipe/docker_engine", "windows", Endpoint{NamedPipe, "docker_engine"}, "npipe:docker_engine"},
		{`\\.\pipe\app`, "windows", Endpoint{NamedPipe, "app"}, "npipe:app"},
		{`\\.\PIPE\app`, "linux", Endpoint{NamedPipe, "app"}, "npipe:app"},
		{`npipe:\\.\pipe\app`, "windows", Endpoint{NamedPipe, "app"}, "npipe:app"},
		{"npipe://./pipe/app", "windows", Endpoint{NamedPipe, "app"}, "npipe:app"},
		{`unix:C:\x\y.sock`, "windows", Endpoint{Unix, `C:\x\y.sock`}, ""},
		{"unix:///C:/x/y.sock", "windows", Endpoint{Unix, "C:/x/y.sock"}, "unix:C:/x/y.sock"},
		{"unix:///C:/x/y.sock", "linux", Endpoint{Unix, "/C:/x/y.sock"}, ""},
		{"unix:/C:/x/y.sock", "windows", Endpoint{Unix, "C:/x/y.sock"}, "unix:C:/x/y.sock"},
		{"tcp://127.0.0.1:50051", "linux", Endpoint{TCP, "127.0.0.1:50051"}, ""},
		{"tcp://[::1]:0", "linux", Endpoint{TCP, "[::1]:0"}, ""},
		{"localhost:50051", "linux", Endpoint{TCP, "localhost:50051"}, "tcp://localhost:50051"},
		{":50051", "linux", Endpoint{TCP, ":50051"}, "tcp://:50051"},
	}
	for _, tt := range tests {
		t.Run(tt.goos+"/"+tt.in, func(t *testing.T) {
			got, err := parseEndpoint(tt.in, tt.goos)
			if err != nil {
				t.Fatalf("parseEndpoint(%q, %s): %v", tt.in, tt.goos, err)
			}
			if got != tt.want {
				t.Fatalf("parseEndpoint(%q, %s) = %#v, want %#v", tt.in, tt.goos, got, tt.want)
			}
			str := tt.str
			if str == "" {
				str = tt.in
			}
			if got.String() != str {
				t.Errorf("String() = %q, want %q", got.String(), str)
			}
			again, err := parseEndpoint(got.String(), tt.goos)
			if err != nil || again != got {
				t.Errorf("String() does not round-trip: parseEndpoint(%q) = %#v, %v", got.String(), again, err)
			}
		})
	}
}

func TestParseEndpointErrors(t *testing.T) {
	tests := []struct {
		in, goos    string
		why         string // in the message
		unsupported bool   // wraps errors.ErrUnsupported
	}{
		{"", "linux", "empty endpoint", false},
		{"dns:///host:1", "linux", `unknown scheme "dns"`, false},
		{"http://x:1", "linux", `unknown scheme "http"`, false},
		{"foo:bar", "linux", `unknown scheme "foo"`, false},
		{"/run/app.sock", "linux", "write unix:///run/app.sock", false},
		{"unix:", "linux", "empty socket path", false},
		{"unix://", "linux", "takes no host", false},
		{"unix:///", "linux", "names a directory", false},
		{"unix://host/path", "linux", "takes no host", false},
		{"unix:/run/dir/", "linux", "names a directory", false},
		{"unix:/" + strings.Repeat("a", 107), "linux", "108 bytes; linux allows at most 107", false},
		{"unix:/" + strings.Repeat("a", 103), "darwin", "104 bytes; darwin allows at most 103", false},
		{"unix:/a\x00b", "linux", "NUL", false},
		{"unix-abstract:", "linux", "empty abstract socket name", false},
		{"unix:@", "linux", "empty abstract socket name", false},
		{"unix-abstract:" + strings.Repeat("n", 107), "linux", "107 bytes; linux allows at most 106", false},
		{"unix-abstract:name", "darwin", "abstract sockets exist only on Linux", true},
		{"unix:@name", "windows", "abstract sockets exist only on Linux", true},
		{"npipe:", "windows", "empty pipe name", false},
		{`\\server\pipe\app`, "windows", `remote named pipe on host "server" refused`, false},
		{"npipe:////server/pipe/app", "windows", `remote named pipe on host "server" refused`, false},
		{`\\.\mailslot\x`, "windows", `not a named pipe path`, false},
		{`npipe:a\b`, "windows", "backslash", false},
		{"tcp://", "linux", "want tcp://HOST:PORT", false},
		{"tcp://host", "linux", "want tcp://HOST:PORT", false},
		{"tcp://host:http", "linux", `port "http" is not a number`, false},
		{"tcp://host:70000", "linux", `port "70000" is not a number`, false},
		{"tcp://host:1/path", "linux", "takes no path", false},
		{"justaname", "linux", "not an endpoint", false},
	}
	for _, tt := range tests {
		t.Run(tt.goos+"/"+tt.in, func(t *testing.T) {
			ep, err := parseEndpoint(tt.in, tt.goos)
			if err == nil {
				t.Fatalf("parseEndpoint(%q, %s) = %#v, want an error", tt.in, tt.goos, ep)
			}
			if !errors.Is(err, ErrInvalidEndpoint) {
				t.Errorf("error %q does not wrap ErrInvalidEndpoint", err)
			}
			if got := errors.Is(err, errors.ErrUnsupported); got != tt.unsupported {
				t.Errorf("errors.Is(%q, ErrUnsupported) = %v, want %v", err, got, tt.unsupported)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.why) {
				t.Errorf("error %q does not say %q", msg, tt.why)
			}
			if tt.in != "" && len(tt.in) < 80 && !strings.Contains(msg, strings.ReplaceAll(tt.in, "\x00", `\x00`)) &&
				!strings.Contains(msg, strings.ReplaceAll(tt.in, `\`, `\\`)) {
				t.Errorf("error %q does not name the endpoint %q", msg, tt.in)
			}
		})
	}
}

func TestDefaultEndpoint(t *testing.T) {
	tests := []struct {
		name string
		app  string
		f    osFacts
		want string
	}{
		{"linux xdg", "app", osFacts{goos: "linux", runtimeDir: "/run/user/1000", euid: 1000, tempDir: "/tmp"}, "unix:///run/user/1000/app/app.sock"},
		{"linux xdg relative ignored", "app", osFacts{goos: "linux", runtimeDir: "run", euid: 1000, tempDir: "/tmp"}, "unix:///tmp/app-1000/app.sock"},
		{"linux root", "app", osFacts{goos: "linux", euid: 0, tempDir: "/tmp"}, "unix:///run/app/app.sock"},
		{"linux root xdg", "app", osFacts{goos: "linux", runtimeDir: "/run/user/0", euid: 0}, "unix:///run/user/0/app/app.sock"},
		{"linux user", "app", osFacts{goos: "linux", euid: 1000, tempDir: "/var/tmp"}, "unix:///var/tmp/app-1000/app.sock"},
		{"linux no tempdir", "app", osFacts{goos: "linux", euid: 1000}, "unix:///tmp/app-1000/app.sock"},
		{"linux long xdg", "app", osFacts{goos: "linux", runtimeDir: "/" + strings.Repeat("x", 100), euid: 1000}, "unix:///tmp/app-1000/app.sock"},
		{"darwin user", "app", osFacts{goos: "darwin", euid: 501, tempDir: "/var/folders/zz/abc/T/"}, "unix:///var/folders/zz/abc/T/app-501/app.sock"},
		{"darwin ignores xdg", "app", osFacts{goos: "darwin", runtimeDir: "/run/user/501", euid: 501, tempDir: "/private/tmp"}, "unix:///private/tmp/app-501/app.sock"},
		{"darwin root", "app", osFacts{goos: "darwin", euid: 0}, "unix:///var/run/app/app.sock"},
		{"freebsd user", "my.app_2", osFacts{goos: "freebsd", euid: 1001, tempDir: "/tmp"}, "unix:///tmp/my.app_2-1001/my.app_2.sock"},
		{"windows", "app", osFacts{goos: "windows", euid: -1, sid: "S-1-5-21-1-2-3-1001"}, "npipe:app-S-1-5-21-1-2-3-1001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep, err := defaultEndpoint(tt.app, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if ep.String() != tt.want {
				t.Errorf("defaultEndpoint(%q) = %s, want %s", tt.app, ep, tt.want)
			}
		})
	}
	for _, bad := range []string{"", ".", "..", "-x", ".hidden", "a/b", `a\b`, "a b", "ünï", strings.Repeat("a", 65)} {
		t.Run("bad/"+bad, func(t *testing.T) {
			if ep, err := defaultEndpoint(bad, osFacts{goos: "linux", euid: 1000}); err == nil || !errors.Is(err, ErrInvalidEndpoint) {
				t.Errorf("defaultEndpoint(%q) = %v, %v; want an invalid-endpoint error", bad, ep, err)
			}
		})
	}
	if ep, err := defaultEndpoint("app", osFacts{goos: "windows"}); err == nil {
		t.Errorf("windows without a SID = %v, want an error", ep)
	}
}

func TestSystemEndpoint(t *testing.T) {
	for goos, want := range map[string]string{
		"linux":   "unix:///run/kvd/kvd.sock",
		"darwin":  "unix:///var/run/kvd/kvd.sock",
		"freebsd": "unix:///var/run/kvd/kvd.sock",
		"windows": "npipe:kvd",
	} {
		ep, err := systemEndpoint("kvd", goos)
		if err != nil || ep.String() != want {
			t.Errorf("%s: systemEndpoint(kvd) = %v, %v; want %s", goos, ep, err, want)
		}
	}
	if ep, err := systemEndpoint("../etc", "linux"); !errors.Is(err, ErrInvalidEndpoint) {
		t.Errorf("systemEndpoint(../etc) = %v, %v; want an invalid-endpoint error", ep, err)
	}
	if _, err := SystemEndpoint("kvd"); err != nil {
		t.Errorf("SystemEndpoint on this OS: %v", err)
	}
}

func TestDefaultEndpointThisOS(t *testing.T) {
	ep, err := DefaultEndpoint("grpcipc")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseEndpoint(ep.String()); err != nil {
		t.Errorf("DefaultEndpoint's %s does not parse: %v", ep, err)
	}
}

func FuzzParseEndpoint(f *testing.F) {
	for _, s := range []string{"unix:///a/b", "unix:a", "unix:@x", "unix-abstract:x", "npipe:x",
		`\\.\pipe\x`, "npipe:////./pipe/x", "tcp://h:1", "h:1", "unix:///C:/x", `unix:C:\x`, "a://b",
		"unix:/A:/0"} {
		f.Add(s, "linux")
		f.Add(s, "windows")
		f.Add(s, "darwin")
	}
	f.Fuzz(func(t *testing.T, s, goos string) {
		ep, err := parseEndpoint(s, goos)
		if err != nil {
			if !errors.Is(err, ErrInvalidEndpoint) {
				t.Fatalf("error %v does not wrap ErrInvalidEndpoint", err)
			}
			return
		}
		again, err := parseEndpoint(ep.String(), goos)
		if err != nil || again != ep {
			t.Fatalf("%q -> %#v -> %q -> %#v, %v", s, ep, ep.String(), again, err)
		}
	})
}
