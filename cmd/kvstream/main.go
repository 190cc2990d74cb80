// Command kvstream is the command-line front end of kvstream: a demo, the
// Kinesis-compatible server, puts and reads, stream administration and
// benchmarks, on a local data directory or any Kinesis endpoint.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/kvstream/kvstream/cmd/kvstream/internal/command"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop) // a second Ctrl-C kills at once
	os.Exit(command.Execute(ctx, command.NewRootCommand(), os.Args[1:]))
}
