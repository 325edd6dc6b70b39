package bench

import (
	"time"

	"golang.org/x/sys/windows"
)

// cpuTime is the user and kernel CPU a process has used.
func cpuTime(pid int) (time.Duration, bool) {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
	if err != nil {
		return 0, false
	}
	defer windows.CloseHandle(h)
	var c, e, k, u windows.Filetime
	if err := windows.GetProcessTimes(h, &c, &e, &k, &u); err != nil {
		return 0, false
	}
	return ticks(k) + ticks(u), true
}

// ticks reads a FILETIME that holds a duration, in 100 ns units (its
// Nanoseconds method is for dates since 1601).
func ticks(f windows.Filetime) time.Duration {
	return time.Duration(int64(f.HighDateTime)<<32|int64(f.LowDateTime)) * 100
}
