package grpcipc

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
