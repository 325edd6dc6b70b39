package bench

// The payload workload: one large payload moved from one process to
// another four ways, in the same run: a raw socket (1 MiB writes, the
// floor of copying), the fast path's server stream of 1 MiB messages, a
// sealed memory file handed over with one call (grpcipc.SealedFile,
// SendFiles, MapFile), and one made in place before the move
// (grpcipc.NewMemoryFile). Each is timed from the request to the receiver
// having read every byte (a CRC-32 over them, the same work for all);
// CPU is both processes'; peak RSS is each process's high-water mark,
// reset before each move (Linux).

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/cmd/grpcipc/internal/bench/benchpb"
)

// Payload is the workload kind that moves one large payload.
const Payload = "payload"

// Ways of moving a payload.
const (
	WaySocket = "socket" // a raw Unix socket, 1 MiB writes and reads
	WayStream = "stream" // the fast path's server stream of 1 MiB messages
	WayMemfd  = "memfd"  // a sealed memory file with one call, the payload copied in
	// WayInPlace: a sealed memory file with one call, made in place
	// before (grpcipc.NewMemoryFile): the sender's bytes are there
	WayInPlace = "memfd-in-place"
)

// PayloadSizes are the payloads moved.
func PayloadSizes(quick bool) []int {
	if quick {
		return []int{64 << 20}
	}
	return []int{64 << 20, 256 << 20}
}

// payloadChunk: the socket's writes and reads, and the stream's messages.
const payloadChunk = 1 << 20

// payloadMove is one payload moved.
type payloadMove struct {
	took                 time.Duration
	cpu                  time.Duration // both processes
	clientRSS, serverRSS int64         // peak, bytes (0: unknown)
}

// RunPayloads moves each payload size each way, rounds times, with fresh
// server processes each round (spawn: a grpcipc server and a raw one,
// over Unix sockets), and returns a Result per size and way.
func RunPayloads(ctx context.Context, o Options) ([]Result, error) {
	if runtime.GOOS != "linux" {
		return nil, nil // sealed memory files are Linux's
	}
	if o.Rounds < 1 {
		o.Rounds = 3
	}
	sizes := PayloadSizes(o.Quick)
	ways := []string{WaySocket, WayStream, WayMemfd, WayInPlace}
	got := map[[2]int][]payloadMove{}
	want := map[int]uint32{}
	for _, n := range sizes {
		want[n] = expectedSum(n)
	}
	for round := range o.Rounds {
		if o.Progress != nil {
			o.Progress(round, o.Rounds, fmt.Sprintf("payloads, round %d/%d", round+1, o.Rounds))
		}
		fast, err := o.Spawn(ctx, Target{Stack: StackGRPCIPC, Transport: string(grpcipc.Unix)}, 0)
		if err != nil {
			return nil, err
		}
		raw, err := o.Spawn(ctx, Target{Stack: StackRaw, Transport: "unix"}, 0)
		if err != nil {
			fast.Close()
			return nil, err
		}
		conn, err := grpcipc.NewClient(fast.Target().Endpoint)
		if err != nil {
			fast.Close()
			raw.Close()
			return nil, err
		}
		client := benchpb.NewBenchClient(conn)
		for si, n := range sizes {
			// Each server makes its payload of n bytes before the moves:
			// the bytes a sender has, not part of moving them.
			if err := preparePayloads(ctx, client, raw.Target().Endpoint, n); err != nil {
				conn.Close()
				fast.Close()
				raw.Close()
				return nil, fmt.Errorf("making the servers' payloads of %s: %w", SizeString(n), err)
			}
			for wi, way := range ways {
				srv := fast
				if way == WaySocket {
					srv = raw
				}
				m, err := movePayload(ctx, client, srv, way, n, want[n])
				if err != nil {
					conn.Close()
					fast.Close()
					raw.Close()
					return nil, fmt.Errorf("%s of %s: %w", way, SizeString(n), err)
				}
				got[[2]int{si, wi}] = append(got[[2]int{si, wi}], m)
			}
		}
		conn.Close()
		fast.Close()
		raw.Close()
	}
	var out []Result
	for si, n := range sizes {
		for wi, way := range ways {
			ms := got[[2]int{si, wi}]
			stack := StackGRPCIPC
			if way == WaySocket {
				stack = StackRaw
			}
			mb := func(m payloadMove) float64 { return float64(n) / 1e6 / m.took.Seconds() } // MB, as streams count
			r := Result{
				Stack: stack, Transport: "unix", Workload: Payload, Way: way, SizeBytes: n, Heap: HeapTiny, Rounds: len(ms),
				MBPerSec:         figureOf(ms, mb),
				CPUmsPerPayload:  ptr(figureOf(ms, func(m payloadMove) float64 { return float64(m.cpu.Microseconds()) / 1e3 })),
				ClientPeakRSSMiB: ptr(figureOf(ms, func(m payloadMove) float64 { return float64(m.clientRSS) / (1 << 20) })),
				ServerPeakRSSMiB: ptr(figureOf(ms, func(m payloadMove) float64 { return float64(m.serverRSS) / (1 << 20) })),
			}
			out = append(out, r)
		}
	}
	return out, nil
}

func ptr[T any](v T) *T { return &v }

// figureOf is the median and range of f over ms.
func figureOf(ms []payloadMove, f func(payloadMove) float64) Figure {
	vs := make([]float64, len(ms))
	for i, m := range ms {
		vs[i] = f(m)
	}
	slices.Sort(vs)
	return Figure{Median: vs[len(vs)/2], Min: vs[0], Max: vs[len(vs)-1]}
}

// expectedSum is the CRC-32 of the server's payload of n bytes
// (payloadOf), made a chunk at a time.
func expectedSum(n int) uint32 {
	b := make([]byte, payloadChunk)
	var sum uint32
	for off := 0; off < n; off += len(b) {
		k := min(len(b), n-off)
		for i := range k {
			b[i] = byte((off + i) * 7)
		}
		sum = crc32.Update(sum, crc32.IEEETable, b[:k])
	}
	return sum
}

// preparePayloads has both servers make their payload of n bytes: a raw
// request closed at once, and a stream cancelled after its first message.
func preparePayloads(ctx context.Context, client benchpb.BenchClient, rawEndpoint string, n int) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", strings.TrimPrefix(rawEndpoint, "unix://"))
	if err != nil {
		return err
	}
	req := []byte{rawPayload}
	req = binary.BigEndian.AppendUint64(req, uint64(n))
	req = binary.BigEndian.AppendUint32(req, payloadChunk)
	_, err = c.Write(req)
	if err == nil {
		_, err = io.ReadFull(c, make([]byte, 1)) // it has made its payload
	}
	c.Close()
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Stream(sctx, &benchpb.StreamRequest{SizeBytes: payloadChunk, TotalBytes: int64(n)})
	if err != nil {
		return err
	}
	_, err = stream.Recv()
	return err
}

// movePayload moves n bytes one way and measures it; the bytes read must
// sum to want.
func movePayload(ctx context.Context, client benchpb.BenchClient, srv Server, way string, n int, want uint32) (payloadMove, error) {
	pid := 0
	if p, ok := srv.(interface{ PID() int }); ok {
		pid = p.PID()
	}
	if way == WayInPlace {
		// The sender makes its bytes where the receiver reads them,
		// before the move.
		if _, err := client.Blob(ctx, &benchpb.BlobRequest{SizeBytes: int64(n), Prepare: true}); err != nil {
			return payloadMove{}, err
		}
	}
	// What the last move left is not this one's.
	debug.FreeOSMemory()
	if f, ok := srv.(interface{ FreeOSMemory() error }); ok {
		if err := f.FreeOSMemory(); err != nil {
			return payloadMove{}, err
		}
	}
	resetPeakRSS(os.Getpid())
	resetPeakRSS(pid)
	cpu0, _ := SelfStats()
	scpu0, _, err := srv.Stats()
	if err != nil {
		return payloadMove{}, err
	}
	start := time.Now()
	var sum uint32
	switch way {
	case WaySocket:
		sum, err = readRaw(ctx, srv.Target().Endpoint, n)
	case WayStream:
		sum, err = readStream(ctx, client, n)
	case WayMemfd, WayInPlace:
		sum, err = readMemfd(ctx, client, n, way == WayInPlace)
	}
	took := time.Since(start)
	if err != nil {
		return payloadMove{}, err
	}
	if sum != want {
		return payloadMove{}, fmt.Errorf("the bytes read sum to %08x, the payload's to %08x", sum, want)
	}
	cpu1, _ := SelfStats()
	scpu1, _, err := srv.Stats()
	if err != nil {
		return payloadMove{}, err
	}
	return payloadMove{took: took, cpu: cpu1 - cpu0 + scpu1 - scpu0, clientRSS: peakRSS(os.Getpid()), serverRSS: peakRSS(pid)}, nil
}

// readRaw reads a payload of n bytes from the raw server at endpoint.
func readRaw(ctx context.Context, endpoint string, n int) (uint32, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", strings.TrimPrefix(endpoint, "unix://"))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	req := []byte{rawPayload}
	req = binary.BigEndian.AppendUint64(req, uint64(n))
	req = binary.BigEndian.AppendUint32(req, payloadChunk)
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	buf := make([]byte, payloadChunk)
	var sum uint32
	for left := n; left > 0; {
		k, err := c.Read(buf[:min(left, len(buf))])
		sum = crc32.Update(sum, crc32.IEEETable, buf[:k])
		left -= k
		if err != nil && left > 0 {
			return 0, err
		}
	}
	return sum, nil
}

// readStream reads a payload of n bytes as a stream of 1 MiB messages.
func readStream(ctx context.Context, client benchpb.BenchClient, n int) (uint32, error) {
	stream, err := client.Stream(ctx, &benchpb.StreamRequest{SizeBytes: payloadChunk, TotalBytes: int64(n)})
	if err != nil {
		return 0, err
	}
	var sum uint32
	got := 0
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, err
		}
		sum = crc32.Update(sum, crc32.IEEETable, m.GetData())
		got += len(m.GetData())
	}
	if got != n {
		return 0, fmt.Errorf("the stream held %d bytes, not %d", got, n)
	}
	return sum, nil
}

// readMemfd gets a payload of n bytes as a sealed memory file with one
// call, maps it and reads it in place.
func readMemfd(ctx context.Context, client benchpb.BenchClient, n int, inPlace bool) (uint32, error) {
	var files []*os.File
	_, err := client.Blob(ctx, &benchpb.BlobRequest{SizeBytes: int64(n), InPlace: inPlace}, grpcipc.ReceiveFiles(&files))
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if err != nil {
		return 0, err
	}
	if len(files) != 1 {
		return 0, fmt.Errorf("%d files came with the response, not 1", len(files))
	}
	m, err := grpcipc.MapFile(files[0])
	if err != nil {
		return 0, err
	}
	defer m.Close()
	if len(m.Bytes()) != n {
		return 0, fmt.Errorf("the file holds %d bytes, not %d", len(m.Bytes()), n)
	}
	return crc32.ChecksumIEEE(m.Bytes()), nil
}

// resetPeakRSS resets process pid's peak resident set (Linux: clear_refs
// 5), if it can.
func resetPeakRSS(pid int) {
	if pid > 0 {
		os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0)
	}
}

// peakRSS returns process pid's peak resident set in bytes since it was
// reset (VmHWM), 0 if unknown.
func peakRSS(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// PayloadTable writes the payload results: per size, each way's MB/s,
// CPU and peak RSS, and the memory file's ratios to the socket.
func PayloadTable(w io.Writer, results []Result) {
	var rs []Result
	for _, r := range results {
		if r.Workload == Payload {
			rs = append(rs, r)
		}
	}
	if len(rs) == 0 {
		return
	}
	fmt.Fprintf(w, "\nOne payload moved between two processes four ways, medians (range): from the request to\n"+
		"the receiver having read every byte; CPU of both processes; each one's peak RSS in the move\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "payload\tway\tMB/s\tCPU ms\tpeak RSS MiB: client\tserver\t\n")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.0f\t%.0f\t\n", SizeString(r.SizeBytes), wayName(r.Way),
			fig(r.MBPerSec, 0), fig(*r.CPUmsPerPayload, 0), r.ClientPeakRSSMiB.Median, r.ServerPeakRSSMiB.Median)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, n := range uniqueSizes(rs) {
		sock, okS := findWay(rs, n, WaySocket)
		if !okS {
			continue
		}
		for _, way := range []string{WayMemfd, WayInPlace} {
			mem, ok := findWay(rs, n, way)
			if !ok {
				continue
			}
			speed := mem.MBPerSec.Median / sock.MBPerSec.Median
			cpu := mem.CPUmsPerPayload.Median / sock.CPUmsPerPayload.Median
			fmt.Fprintf(w, "%s, %s: %.2fx the socket's MB/s (target 2x: %s),\n  %.2fx its CPU (target 0.5x: %s)\n",
				SizeString(n), wayName(way), speed, met(speed >= 2), cpu, met(cpu <= 0.5))
		}
	}
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

func wayName(way string) string {
	switch way {
	case WaySocket:
		return "raw socket, 1 MiB reads"
	case WayStream:
		return "fast path, 1 MiB stream"
	case WayMemfd:
		return "sealed memfd, 1 call"
	case WayInPlace:
		return "memfd made in place, 1 call"
	}
	return way
}

// fig is a figure's median and, over several rounds, its range.
func fig(f Figure, decimals int) string {
	s := strconv.FormatFloat(f.Median, 'f', decimals, 64)
	if f.Min == f.Max {
		return s
	}
	return s + " (" + strconv.FormatFloat(f.Min, 'f', decimals, 64) + "-" + strconv.FormatFloat(f.Max, 'f', decimals, 64) + ")"
}

func uniqueSizes(rs []Result) []int {
	var out []int
	for _, r := range rs {
		if !slices.Contains(out, r.SizeBytes) {
			out = append(out, r.SizeBytes)
		}
	}
	return out
}

func findWay(rs []Result, n int, way string) (Result, bool) {
	for _, r := range rs {
		if r.SizeBytes == n && r.Way == way {
			return r, true
		}
	}
	return Result{}, false
}
