// Package procstat reads the process' own resource use (CPU time and peak
// resident set) for the benchmarks and the tests that report CPU per
// record. Safe for concurrent use.
package procstat

// CPU returns the process' user plus system CPU time in nanoseconds,
// background goroutines and GC included (0 where the platform does not
// say; see Usage).
func CPU() int64 {
	cpu, _ := Usage()
	return cpu
}
