//go:build !linux

package bench

// readLoad: only Linux's load average is read (/proc/loadavg); elsewhere
// the report says nothing about the load.
func readLoad() (float64, bool) { return 0, false }
