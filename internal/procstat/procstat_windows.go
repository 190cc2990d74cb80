//go:build windows

package procstat

import (
	"syscall"
	"unsafe"
)

// processMemoryCounters is Windows' PROCESS_MEMORY_COUNTERS.
type processMemoryCounters struct {
	cb                         uint32
	pageFaultCount             uint32
	peakWorkingSetSize         uintptr
	workingSetSize             uintptr
	quotaPeakPagedPoolUsage    uintptr
	quotaPagedPoolUsage        uintptr
	quotaPeakNonPagedPoolUsage uintptr
	quotaNonPagedPoolUsage     uintptr
	pagefileUsage              uintptr
	peakPagefileUsage          uintptr
}

var procGetProcessMemoryInfo = syscall.NewLazyDLL("kernel32.dll").NewProc("K32GetProcessMemoryInfo")

// Usage returns the process' user plus kernel CPU time in
// nanoseconds (GetProcessTimes) and its peak working set so far in bytes
// (K32GetProcessMemoryInfo), or zeros for what Windows does not report.
func Usage() (cpuNanos, maxRSS int64) {
	h, err := syscall.GetCurrentProcess()
	if err != nil {
		return 0, 0
	}
	var creation, exit, kernel, user syscall.Filetime
	if syscall.GetProcessTimes(h, &creation, &exit, &kernel, &user) == nil {
		// Filetime counts 100 ns intervals; Nanoseconds would subtract the
		// 1601 epoch, which durations must not.
		ticks := func(ft syscall.Filetime) int64 { return int64(ft.HighDateTime)<<32 | int64(ft.LowDateTime) }
		cpuNanos = (ticks(kernel) + ticks(user)) * 100
	}
	if procGetProcessMemoryInfo.Find() == nil {
		var pmc processMemoryCounters
		pmc.cb = uint32(unsafe.Sizeof(pmc))
		if ok, _, _ := procGetProcessMemoryInfo.Call(uintptr(h), uintptr(unsafe.Pointer(&pmc)), uintptr(pmc.cb)); ok != 0 {
			maxRSS = int64(pmc.peakWorkingSetSize)
		}
	}
	return cpuNanos, maxRSS
}
