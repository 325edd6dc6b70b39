// Command grpcipc serves and calls gRPC over local endpoints: Unix sockets,
// Linux abstract sockets and (on Windows) named pipes.
//
//	grpcipc demo                                  try it: a server in a child process, two calls
//	grpcipc serve [--listen ENDPOINT]             the demo server
//	grpcipc call [--connect ENDPOINT] METHOD [JSON]  call a method by reflection
//	grpcipc list [--connect ENDPOINT] [SERVICE]   list services, or a service's methods
//	grpcipc describe [--connect ENDPOINT] [SYMBOL]  a service, method or message in .proto syntax
//	grpcipc endpoint [--system] [APP]             print this OS's default (or machine-wide) endpoint
//	grpcipc bench [--quick] [--json F] [--chart F] measure the transports side by side
//
// Errors are one line on stderr and a non-zero exit status by the stage
// that failed (the usage text's "Exit status", which TestExitStatusByStage
// checks): 2 for a wrong command line; 1 for a failure before the call
// (connecting, reflection, finding the method) and any other; 64 plus the
// gRPC status code for a call that was made and failed (as grpcurl's: 68
// when --max-time passed); 130 for an interrupted demo.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `grpcipc: gRPC between processes on one machine, over Unix sockets,
Linux abstract sockets and Windows named pipes.

Usage:
  grpcipc demo [--count N]                         start a server in a child process, call it, clean up
  grpcipc serve [--listen ENDPOINT] [--allow PRINCIPAL]... [--policy FILE]
                                                   serve greet.Greeter, Echo, health, reflection, Identity
  grpcipc call [--connect ENDPOINT] METHOD [JSON]  call a method, found by server reflection
  grpcipc list [--connect ENDPOINT] [SERVICE]      list the services, or one service's methods
  grpcipc describe [--connect ENDPOINT] [SYMBOL]   print a service, method or message in .proto syntax
  grpcipc endpoint [--system] [APP]                print APP's endpoint on this OS: per user, or machine-wide
  grpcipc bench [--quick] [--wide] [--json F] [--chart F]
                                                   measure the transports side by side
  grpcipc --version                                which grpcipc this is

Endpoints: unix:///abs/path, unix:rel/path, unix-abstract:name (or unix:@name),
npipe:name (or \\.\pipe\name), tcp://host:port. The default is the one
"grpcipc endpoint" prints.

Exit status, by the stage that failed (as grpcurl's):
  0     done
  1     connecting, reflection and what comes before the call: no server at the
        endpoint, its permissions refuse this user, a server not the one expected,
        --connect-timeout passed, reflection refused or failed, no such service,
        method or symbol, a request or --proto file that is not valid (no server
        and permissions also with --proto or --protoset); and any failure not
        listed here (serve's, a file not written)
  2     a wrong command line: an unknown command or flag, a bad flag value or
        endpoint, a wrong number of arguments
  64+N  the call was made and failed with gRPC status code N: 68 when --max-time
        passed (DeadlineExceeded, at any stage), 69 NotFound, 71 PermissionDenied,
        78 Unavailable. With --proto or --protoset the call makes the connection:
        a failure to connect is then the call's (but for no server and permissions)
  130   demo interrupted

Run "grpcipc COMMAND --help" for a command's flags.
`

// versionLine says which grpcipc this is: the module version it was
// installed at ("(devel)" when built in a checkout, with the commit), and
// the Go that built it.
func versionLine() string {
	v, commit := "(unknown)", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		v = bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				commit = " commit " + s.Value[:12]
			}
		}
	}
	return fmt.Sprintf("grpcipc %s%s, %s %s/%s", v, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// exitError carries an exit status other than 1.
type exitError struct {
	code  int
	err   error
	quiet bool // already reported on standard output (call --format-error)
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErrorf reports a mistake in the command line (exit status 2).
func usageErrorf(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

// run executes the command line args and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "-version", "--version", "version":
		fmt.Fprintln(stdout, versionLine())
		return 0
	case "serve":
		err = runServe(ctx, rest, stdout, stderr)
	case "call":
		err = runCall(ctx, rest, stdout, stderr)
	case "list":
		err = runList(ctx, rest, stdout)
	case "describe":
		err = runDescribe(ctx, rest, stdout)
	case "endpoint":
		err = runEndpoint(rest, stdout)
	case "demo":
		err = runDemo(ctx, rest, stdout, stderr)
	case "bench":
		err = runBench(ctx, rest, stdout, stderr)
	default:
		err = unknownCommand(cmd)
	}
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ee *exitError
	if !errors.As(err, &ee) || !ee.quiet {
		fmt.Fprintln(stderr, prefixed(oneLine(err.Error())))
	}
	if ee != nil {
		return ee.code
	}
	return 1
}

// prefixed begins msg with "grpcipc: " once: the errors of the grpcipc
// package already do.
func prefixed(msg string) string {
	if strings.HasPrefix(msg, "grpcipc: ") {
		return msg
	}
	return "grpcipc: " + msg
}

// unprefixed is an error of the grpcipc package put in the command's own
// words ("--allow: ...", "policy file F: ..."): its text without the
// "grpcipc: " it begins with, which run prints once, in front of the whole
// message. It unwraps to err.
type unprefixed struct{ err error }

func (e unprefixed) Error() string { return strings.TrimPrefix(e.err.Error(), "grpcipc: ") }
func (e unprefixed) Unwrap() error { return e.err }

// oneLine folds a message onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// command is one subcommand's flags and positional arguments.
type command struct {
	name, args, about string
	fs                *flag.FlagSet
	stdout            io.Writer
	minArgs, maxArgs  int
}

func newCommand(name, args, about string, minArgs, maxArgs int, stdout io.Writer) *command {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &command{name: name, args: args, about: about, fs: fs, stdout: stdout, minArgs: minArgs, maxArgs: maxArgs}
}

// parse parses flags wherever they stand among the positional arguments
// ("--" ends the flags). On --help it prints the usage to stdout and
// returns flag.ErrHelp.
func (c *command) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := c.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.printUsage()
				return nil, flag.ErrHelp
			}
			return nil, usageErrorf("%s: %s; run grpcipc %s --help", c.name, twoDashes.ReplaceAllString(err.Error(), "$1--$2"), c.name)
		}
		rest := c.fs.Args()
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if len(pos) < c.minArgs || len(pos) > c.maxArgs {
		return nil, usageErrorf("%s takes %s; run grpcipc %s --help", c.name, argCount(c.minArgs, c.maxArgs), c.name)
	}
	return pos, nil
}

// twoDashes finds a word flag that the flag package's errors name with one
// dash (-max-time), to spell it as the usage lines do (--max-time).
var twoDashes = regexp.MustCompile(`(^|[\s:])-([a-z][a-z0-9]*(?:-[a-z0-9]+)+|[a-z][a-z0-9]+)\b`)

func argCount(lo, hi int) string {
	words := []string{"no arguments", "one argument", "two arguments"}
	switch {
	case lo == hi && lo < len(words):
		return words[lo]
	case lo == 0 && hi == 1:
		return "at most one argument"
	case lo == 1 && hi == 2:
		return "one or two arguments"
	}
	return fmt.Sprintf("%d to %d arguments", lo, hi)
}

func (c *command) printUsage() {
	fmt.Fprintf(c.stdout, "Usage: grpcipc %s %s\n\n%s\n", c.name, c.args, c.about)
	var flags strings.Builder
	c.fs.VisitAll(func(f *flag.Flag) { writeFlag(&flags, f) })
	if flags.Len() > 0 {
		fmt.Fprintf(c.stdout, "\nFlags:\n%s", flags.String())
	}
}

// writeFlag describes f as the usage lines spell it: --name for a word,
// -x for a letter (grpcurl's -d, -H, -v), either of which parses.
func writeFlag(w *strings.Builder, f *flag.Flag) {
	dash := "--"
	if len(f.Name) == 1 {
		dash = "-"
	}
	arg, usage := flag.UnquoteUsage(f)
	if arg == "value" {
		arg = "string"
	}
	fmt.Fprintf(w, "  %s%s", dash, f.Name)
	if _, isBool := f.Value.(interface{ IsBoolFlag() bool }); !isBool && arg != "" {
		fmt.Fprintf(w, " %s", arg)
	}
	switch f.DefValue {
	case "", "false", "0", "0s", "[]":
	default:
		if _, isString := f.Value.(interface{ String() string }); isString && arg == "string" {
			usage += fmt.Sprintf(" (default %q)", f.DefValue)
		} else {
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
	}
	w.WriteString("\n    \t")
	w.WriteString(strings.ReplaceAll(usage, "\n", "\n    \t"))
	w.WriteString("\n")
}
