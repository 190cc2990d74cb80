//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package command

// lockHolder cannot tell which process holds a data directory here.
func lockHolder(string) (pid int, cmdline string) { return 0, "" }
