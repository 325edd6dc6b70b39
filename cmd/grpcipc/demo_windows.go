package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/grpcipc/grpcipc"
)

// demoEndpoint is a fresh named pipe next to the default one: the user's
// default name with the demo's pid and a random suffix. A pipe leaves
// nothing behind when its server exits.
func demoEndpoint() (ep grpcipc.Endpoint, what string, cleanup func() error, err error) {
	def, err := grpcipc.DefaultEndpoint("grpcipc")
	if err != nil {
		return ep, "", nil, err
	}
	var r [4]byte
	if _, err := rand.Read(r[:]); err != nil {
		return ep, "", nil, err
	}
	ep, err = grpcipc.ParseEndpoint(fmt.Sprintf("%s-demo-%d-%s", def, os.Getpid(), hex.EncodeToString(r[:])))
	return ep, "its pipe is gone", func() error { return nil }, err
}
