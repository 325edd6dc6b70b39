package bench

import "os"

// readLoad is the 1-minute load average, from /proc/loadavg.
func readLoad() (float64, bool) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, false
	}
	v, err := parseLoadavg(string(b))
	return v, err == nil
}
