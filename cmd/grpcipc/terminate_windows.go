package main

import "os"

// terminate stops a process. Windows has no SIGTERM to send another
// process, so it is killed, and says it was not graceful.
func terminate(p *os.Process) bool {
	p.Kill()
	return false
}
