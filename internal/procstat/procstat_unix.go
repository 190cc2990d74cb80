//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package procstat

import (
	"runtime"
	"syscall"
)

// Usage returns the process' user plus system CPU time in
// nanoseconds and its peak resident set so far in bytes (getrusage), or
// zeros if the call fails.
func Usage() (cpuNanos, maxRSS int64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	maxRSS = int64(ru.Maxrss) // int32 on 32-bit platforms
	if runtime.GOOS != "darwin" {
		maxRSS <<= 10 // Linux and the BSDs report KiB; macOS reports bytes
	}
	return ru.Utime.Nano() + ru.Stime.Nano(), maxRSS
}
