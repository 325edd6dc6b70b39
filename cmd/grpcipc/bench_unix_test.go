//go:build unix

package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/grpcipc/grpcipc/internal/testutil"
)

func TestBench(t *testing.T) {
	tmp := testutil.ShortTempDir(t)
	out := testutil.ShortTempDir(t)
	jsonFile, chartFile := filepath.Join(out, "b.json"), filepath.Join(out, "b.svg")
	code, stdout, stderr := runCLI(t, []string{"TMPDIR=" + tmp}, "bench", "--quick", "--reps", "1", "--json", jsonFile, "--chart", chartFile)
	if code != 0 {
		t.Fatalf("bench exited %d: %s %s", code, stdout, stderr)
	}
	t.Logf("bench printed:\n%s", stdout)
	for _, want := range []string{"vs tcp", "unary 1 KiB", "throughput 1 KiB x32", "stream 1 MiB", "raw unix", "raw-alloc unix", "grpc-go tcp", "grpc-go unix", "grpcipc unix", "grpcipc-http2 unix", "grpcipc unix-abstract", "64 MiB heaps", "allocs", "range: none with one round"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the table lacks %q", want)
		}
	}
	// A summary per workload (4 of them, the stream with two heaps), and
	// lines of at most 100 columns.
	if n := strings.Count(stdout, "  summary: fast path "); n != 5 {
		t.Errorf("%d summary lines, want 5", n)
	}
	for _, line := range strings.Split(stdout, "\n") {
		if n := utf8.RuneCountInString(line); n > 100 {
			t.Errorf("a line of %d columns: %s", n, line)
		}
	}
	b, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	var results []map[string]any
	if err := json.Unmarshal(b, &results); err != nil {
		t.Fatalf("--json: %v", err)
	}
	// 3 workloads on 6 targets (raw-alloc streams only; grpcipc-http2 is
	// grpcipc's server with a client that asks for HTTP/2), the stream on 7
	// targets with each heap.
	want := 3*6 + 2*7
	if runtime.GOOS == "linux" {
		want += 4 // the payload of 64 MiB, four ways
		for _, w := range []string{"sealed memfd, 1 call", "memfd made in place, 1 call", "raw socket, 1 MiB reads", "fast path, 1 MiB stream", "64 MiB, sealed memfd, 1 call: "} {
			if !strings.Contains(stdout, w) {
				t.Errorf("the payload table lacks %q", w)
			}
		}
	}
	if len(results) != want {
		t.Errorf("--json has %d results, want %d", len(results), want)
	}
	median := func(r map[string]any, k string) float64 {
		f, _ := r[k].(map[string]any)
		v, _ := f["median"].(float64)
		return v
	}
	for _, r := range results {
		for _, k := range []string{"stack", "transport", "workload", "callers", "size_bytes", "heap", "p50_us", "p99_us", "calls_per_s", "mb_per_s", "cpu_us_per_call", "allocs_per_call", "rounds"} {
			if _, ok := r[k]; !ok {
				t.Errorf("result %v lacks %s", r, k)
			}
		}
		if r["workload"] == "payload" {
			for _, k := range []string{"way", "cpu_ms_per_payload", "client_peak_rss_mib", "server_peak_rss_mib"} {
				if _, ok := r[k]; !ok {
					t.Errorf("payload result %v lacks %s", r, k)
				}
			}
			if median(r, "mb_per_s") <= 0 || median(r, "cpu_ms_per_payload") <= 0 || median(r, "server_peak_rss_mib") < 64 {
				t.Errorf("payload result measured nothing (or less than its payload held): %v", r)
			}
			continue
		}
		for _, k := range []string{"p50_us", "calls_per_s", "cpu_us_per_call"} {
			f, ok := r[k].(map[string]any)
			if _, hasMin := f["min"]; !ok || !hasMin || f["max"] == nil {
				t.Errorf("%s of %v is not {median, min, max}", k, r)
			}
		}
		if r["workload"] == "unary" && median(r, "p50_us") <= 0 || r["workload"] == "stream" && median(r, "mb_per_s") <= 0 || median(r, "cpu_us_per_call") <= 0 {
			t.Errorf("result measured nothing: %v", r)
		}
	}
	svg, err := os.ReadFile(chartFile)
	if err != nil || !bytes.HasPrefix(svg, []byte("<svg")) || !bytes.Contains(svg, []byte("grpcipc unix")) || bytes.Contains(svg, []byte(`fill=""`)) {
		t.Errorf("--chart wrote %d bytes: %v", len(svg), err)
	}
	for d := xml.NewDecoder(bytes.NewReader(svg)); ; {
		if _, err := d.Token(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Errorf("--chart wrote no XML: %v", err)
			}
			break
		}
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("bench left %v in its temporary directory", ents)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "--chart", "x.png"}, "--chart writes SVG"},
		{[]string{"bench", "--reps", "0"}, "--reps must be from 1 to 100"},
	} {
		code, _, stderr := runCLI(t, nil, tc.args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2", tc.args, code)
		}
		oneErrorLine(t, stderr, tc.want)
	}
}
