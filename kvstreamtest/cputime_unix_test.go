//go:build unix

package kvstreamtest_test

import (
	"syscall"
	"time"
)

// cpuTime returns the CPU time (user and system) the process has used,
// background goroutines and GC included; benchmarks report it next to
// wall time, which a loaded machine inflates.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
