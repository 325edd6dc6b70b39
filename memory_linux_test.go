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
