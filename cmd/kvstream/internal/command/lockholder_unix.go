//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package command

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// lockHolder asks the kernel which process holds the data directory's
// LOCK file (Pebble locks it with fcntl), and returns its pid and, on
// Linux, its command line; pid 0 if unknown (no lock, or one held by this
// process, which fcntl does not report).
func lockHolder(dir string) (pid int, cmdline string) {
	f, err := os.Open(filepath.Join(dir, "LOCK"))
	if err != nil {
		return 0, ""
	}
	defer f.Close()
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_GETLK, &lk); err != nil || lk.Type == syscall.F_UNLCK || lk.Pid <= 0 {
		return 0, ""
	}
	pid = int(lk.Pid)
	if runtime.GOOS == "linux" {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); err == nil {
			args := strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
			if len(args) > 0 && args[0] != "" {
				args[0] = filepath.Base(args[0])
				cmdline = strings.Join(args, " ")
			}
		}
	}
	return pid, cmdline
}
