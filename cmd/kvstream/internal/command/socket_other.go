//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package command

import (
	"context"
	"errors"
	"net"
	"runtime"
)

// errNoSocket: there is no socket file.
var errNoSocket = errors.New("no socket")

// errSocketUnsupported: data directory sockets are Unix-only.
var errSocketUnsupported = errors.New("data directory sockets are not supported on " + runtime.GOOS)

// listenSocket: no socket on this platform.
func listenSocket(string) (net.Listener, error) { return nil, errSocketUnsupported }

// probeSocket: no socket on this platform.
func probeSocket(context.Context, string) (string, error) { return "", errSocketUnsupported }
