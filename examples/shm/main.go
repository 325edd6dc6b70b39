// Command shm hands a large payload to another process as sealed shared
// memory, with one call: the client puts the bytes in a memory file sealed
// against writes, growth and shrinking (grpcipc.SealedFile) and sends it
// with the call (grpcipc.WithFiles); the server, a child process started
// over an inherited connection (grpcipc.StartChild), maps it read-only
// after checking the seals (grpcipc.MapFile), reads it in place and
// answers with its CRC-32C. No byte of the payload goes through the
// socket, and neither side can change it under the other. Linux only.
//
//	go run ./examples/shm              # 256 MiB
//	go run ./examples/shm -size 1GiB
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"log"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/blobpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// blobs is the server's service.
type blobs struct {
	blobpb.UnimplementedBlobsServer
}

// Checksum maps the file sent with the call and sums it in place.
func (blobs) Checksum(ctx context.Context, req *blobpb.ChecksumRequest) (*blobpb.ChecksumReply, error) {
	files := grpcipc.TakeFiles(ctx) // ours now: closed below
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if len(files) != 1 {
		return nil, status.Errorf(codes.InvalidArgument, "send one file with the call, not %d", len(files))
	}
	// MapFile refuses a file its sender could still change or truncate.
	m, err := grpcipc.MapFile(files[0])
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	defer m.Close()
	b := m.Bytes()
	return &blobpb.ChecksumReply{Size: uint64(len(b)), Crc32C: crc32.Checksum(b, castagnoli)}, nil
}

func main() {
	size := flag.String("size", "256MiB", "the payload's size (bytes, or with KiB, MiB, GiB)")
	flag.Parse()
	if os.Getenv("SHM_EXAMPLE_SERVER") == "1" {
		if err := serve(); err != nil {
			log.Fatal(err)
		}
		return
	}
	n, err := parseSize(*size)
	if err != nil {
		log.Fatal(err)
	}
	if err := run(context.Background(), n, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// serve is the child: it serves Blobs on the connection it inherited.
func serve() error {
	lis, err := grpcipc.ChildListener()
	if err != nil {
		return err
	}
	srv, err := grpcipc.NewServer(grpcipc.WithMaxFilesPerCall(1)) // files are refused by default
	if err != nil {
		return err
	}
	blobpb.RegisterBlobsServer(srv, blobs{})
	if err := srv.Serve(lis); err != nil && !errors.Is(err, grpcipc.ErrPeerGone) {
		return err
	}
	return nil
}

// run starts the server as a child process, and hands it n bytes.
func run(ctx context.Context, n int, out io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "SHM_EXAMPLE_SERVER=1")
	cmd.Stderr = os.Stderr
	child, err := grpcipc.StartChild(ctx, cmd)
	if err != nil {
		return err
	}
	defer child.Close()

	payload := bytes.Repeat([]byte("grpcipc "), n/8+1)[:n]
	start := time.Now()
	f, err := grpcipc.SealedFile("payload", payload) // one copy, into the memory file
	if err != nil {
		return err
	}
	defer f.Close()
	made := time.Since(start)
	start = time.Now()
	reply, err := blobpb.NewBlobsClient(child.Conn()).Checksum(ctx,
		&blobpb.ChecksumRequest{Name: "payload"}, grpcipc.WithFiles(f))
	if err != nil {
		return err
	}
	took := time.Since(start)
	if want := crc32.Checksum(payload, castagnoli); reply.GetSize() != uint64(n) || reply.GetCrc32C() != want {
		return fmt.Errorf("the server read %d bytes summing to %08x, want %d summing to %08x", reply.GetSize(), reply.GetCrc32C(), n, want)
	}
	fmt.Fprintf(out, "handed %d bytes to pid %d as sealed memory: sealed in %v, mapped and summed there in %v (CRC-32C %08x, as sent)\n",
		n, cmd.Process.Pid, made.Round(time.Millisecond), took.Round(time.Millisecond), reply.GetCrc32C())
	return nil
}

// maxSize: the payload is held twice by the client (its bytes, and the
// memory file), so the example stops at 4 GiB (2 GiB on 32-bit machines).
const maxSize = min(4<<30, math.MaxInt/2)

// parseSize reads "256MiB", "1GiB", "4096".
func parseSize(arg string) (int, error) {
	s, mult := arg, 1
	for suffix, m := range map[string]int{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if strings.HasSuffix(s, suffix) {
			s, mult = strings.TrimSuffix(s, suffix), m
			break
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("-size %q: want a positive whole number of bytes, KiB, MiB or GiB", arg)
	}
	if n > maxSize/mult {
		return 0, fmt.Errorf("-size %q: at most 4GiB (the client holds the payload twice)", arg)
	}
	return n * mult, nil
}
