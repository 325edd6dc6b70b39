package grpcipc

import (
	"bytes"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSealedFileMapFile(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 100_000)
	f, err := SealedFile("payload", data)
	if err != nil {
		t.Fatal(err)
	}
	m, err := MapFile(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.Bytes(), data) {
		t.Fatal("the mapping differs from the data")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil || m.Bytes() != nil {
		t.Fatalf("after Close: Close %v, Bytes of %d", err, len(m.Bytes()))
	}

	if _, err := SealedFile("bad\x00name", nil); err == nil || !strings.HasPrefix(err.Error(), "grpcipc: ") {
		t.Fatalf("a name with a NUL: %v", err)
	}
	plain, err := os.Create(filepath.Join(t.TempDir(), "plain"))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := MapFile(plain); !errors.Is(err, ErrNotSealed) || !strings.HasPrefix(err.Error(), "grpcipc: MapFile: ") {
		t.Fatalf("MapFile of a regular file: %v", err)
	}
}

func TestMemoryFile(t *testing.T) {
	m, err := NewMemoryFile("frame", 3<<20)
	if err != nil {
		t.Fatal(err)
	}
	b := m.Bytes()
	for i := range b {
		b[i] = byte(i * 3)
	}
	want := bytes.Clone(b)
	f, err := m.Seal()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if m.Bytes() != nil {
		t.Fatal("Bytes after Seal")
	}
	if _, err := m.Seal(); err == nil {
		t.Fatal("a second Seal: no error")
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close after Seal: %v", err)
	}
	if _, err := f.WriteAt([]byte("x"), 0); err == nil {
		t.Fatal("a write to the sealed file went through")
	}
	mp, err := MapFile(f)
	if err != nil {
		t.Fatal(err)
	}
	defer mp.Close()
	if !bytes.Equal(mp.Bytes(), want) {
		t.Fatal("the sealed file differs from what was written in place")
	}

	discard, err := NewMemoryFile("discarded", 4096)
	if err != nil {
		t.Fatal(err)
	}
	if err := discard.Close(); err != nil || discard.Bytes() != nil {
		t.Fatalf("Close of an unsealed MemoryFile: %v", err)
	}
	if _, err := discard.Seal(); err == nil {
		t.Fatal("Seal after Close: no error")
	}
	if _, err := NewMemoryFile("negative", -1); err == nil {
		t.Fatal("a negative size: no error")
	}
}

// BenchmarkSealedFileSteps times, for a 64 MiB payload, each step of
// handing it over as sealed memory (docs/performance.md, "One large
// payload"): copying it into a new sealed file, mapping it (MapFile),
// reading every byte (a CRC-32), and unmapping and closing it, the last
// descriptor, which frees its pages; and, for comparison, copying the
// same bytes through a 1 MiB buffer and reading them.
func BenchmarkSealedFileSteps(b *testing.B) {
	const size = 64 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	buf := make([]byte, 1<<20)
	var seal, mapping, read, free, copyRead time.Duration
	for b.Loop() {
		t0 := time.Now()
		f, err := SealedFile("bench", data)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		m, err := MapFile(f)
		if err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		crc32.ChecksumIEEE(m.Bytes())
		t3 := time.Now()
		m.Close()
		f.Close()
		t4 := time.Now()
		for off := 0; off < size; off += len(buf) {
			copy(buf, data[off:off+len(buf)])
			crc32.ChecksumIEEE(buf)
		}
		t5 := time.Now()
		seal, mapping, read, free, copyRead = seal+t1.Sub(t0), mapping+t2.Sub(t1), read+t3.Sub(t2), free+t4.Sub(t3), copyRead+t5.Sub(t4)
	}
	n := float64(b.N)
	b.ReportMetric(seal.Seconds()*1e3/n, "ms-seal")
	b.ReportMetric(mapping.Seconds()*1e3/n, "ms-map")
	b.ReportMetric(read.Seconds()*1e3/n, "ms-read")
	b.ReportMetric(free.Seconds()*1e3/n, "ms-unmap+free")
	b.ReportMetric(copyRead.Seconds()*1e3/n, "ms-copy+read")
}
