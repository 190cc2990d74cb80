package command

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The holder's pid and command line in the "in use" message are tested by
// TestLockedByAnotherProcess (demo_test.go).

func TestServeAddr(t *testing.T) {
	require.Equal(t, "127.0.0.1:4567", serveAddr("kvstream serve"))
	require.Equal(t, "127.0.0.1:9000", serveAddr("kvstream --data d serve --addr 127.0.0.1:9000"))
	require.Equal(t, "[::1]:80", serveAddr("kvstream serve --addr=[::1]:80 --no-sync"))
}
