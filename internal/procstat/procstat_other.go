//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly || windows)

package procstat

// Usage reports nothing on platforms without getrusage or the
// Windows calls: CPU per record and peak RSS print as zero there.
func Usage() (cpuNanos, maxRSS int64) { return 0, 0 }
