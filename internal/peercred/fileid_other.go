//go:build !unix

package peercred

import (
	"io/fs"
	"os"
)

// fileID is a file as os.SameFile tells it (on Windows: volume serial
// number and file index).
type fileID struct{ fi fs.FileInfo }

func (f fileID) valid() bool { return f.fi != nil }

func fileIDOf(fi fs.FileInfo) fileID { return fileID{fi: fi} }

func (f fileID) same(g fileID) bool { return f.fi != nil && g.fi != nil && os.SameFile(f.fi, g.fi) }
