package bench

import (
	"fmt"
	"strconv"
	"strings"
)

// busyMargin is how far above the CPU count the 1-minute load average may
// go before the report calls the machine busy. The bench's own client and
// server keep about two threads running or runnable: on this project's
// 2-CPU machine a full run that started at a load of 0.70 took it to 2.84
// at most (2026-12-03), so the load of a machine that runs nothing else
// stays under CPUs+2; above it, other programs were competing for the CPUs
// and the figures include their waits.
const busyMargin = 2.0

// Load is the machine's 1-minute load average around a run (the number of
// threads running or waiting for a CPU, averaged over the last minute).
type Load struct {
	Known  bool    // false where the OS does not tell it (only Linux does here)
	CPUs   int     // the CPUs the load is shared by
	Before float64 // before the run started
	Max    float64 // the highest reading: before, at each target's turn, after
}

// Busy says whether the load went above CPUs+busyMargin during the run.
func (l Load) Busy() bool {
	return l.Known && l.Max > float64(l.CPUs)+busyMargin
}

// String is the load as the report prints it, or "" when it is unknown.
func (l Load) String() string {
	if !l.Known {
		return ""
	}
	return fmt.Sprintf("load average (1 min) %.2f before the run, at most %.2f during it, on %d CPUs", l.Before, l.Max, l.CPUs)
}

// LoadWatch reads the load average whenever asked and keeps the highest.
type LoadWatch struct {
	load Load
}

// WatchLoad reads the load average before a run on a machine of cpus CPUs.
func WatchLoad(cpus int) *LoadWatch {
	w := &LoadWatch{load: Load{CPUs: cpus}}
	if v, ok := readLoad(); ok {
		w.load.Known, w.load.Before, w.load.Max = true, v, v
	}
	return w
}

// Sample reads the load average again.
func (w *LoadWatch) Sample() {
	if v, ok := readLoad(); ok && w.load.Known {
		w.load.Max = max(w.load.Max, v)
	}
}

// Load is what the watch saw.
func (w *LoadWatch) Load() Load { return w.load }

// parseLoadavg reads the 1-minute figure of /proc/loadavg's text
// ("0.52 0.58 0.59 1/467 12345").
func parseLoadavg(s string) (float64, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, fmt.Errorf("loadavg %q: empty", s)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("loadavg %q: not a load average", s)
	}
	return v, nil
}
