// Package command implements the kvstream subcommands. Each subcommand
// lives in its own file as an options struct with AddFlags and a run
// method, and NewRootCommand assembles them, as bbolt's cmd/bbolt does.
package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// DefaultDataDir is the default of the global --data flag.
const DefaultDataDir = "./kvstream-data"

// rootOptions are the flags every subcommand sees.
type rootOptions struct {
	dataDir string
}

// AddFlags registers the global flags.
func (o *rootOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.dataDir, "data", DefaultDataDir, "data directory (created on first write)")
}

// NewRootCommand builds the kvstream command tree. Its output goes to
// os.Stdout and os.Stderr unless the caller sets others (SetOut, SetErr,
// SetIn), as the tests do.
func NewRootCommand() *cobra.Command {
	root := &rootOptions{}
	cmd := &cobra.Command{
		Use:   "kvstream",
		Short: "An embedded stream engine with Amazon Kinesis Data Streams semantics",
		Long: `kvstream is an embedded, persistent stream engine with the semantics of Amazon
Kinesis Data Streams, on one local data directory (--data). It can also serve
the Kinesis API (kvstream serve), and put, get and streams talk to any Kinesis
endpoint with --endpoint.

Start with: kvstream demo

Ctrl-C (or SIGTERM) stops any command cleanly: it stops taking input and
starting work, keeps every write already acknowledged, closes the data
directory, prints its summary, and exits 0. A second Ctrl-C ends the process
at once.`,
		Version:       versionString(),
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	cmd.SetVersionTemplate("{{.Version}}\n")
	root.AddFlags(cmd.PersistentFlags())
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	cmd.AddCommand(
		newDemoCommand(root),
		newServeCommand(root),
		newPutCommand(root),
		newGetCommand(root),
		newStreamsCommand(root),
		newBenchCommand(root),
		newForwardCommand(root),
		newCheckCommand(root),
		newVersionCommand(),
	)
	markRuns(cmd)
	return cmd
}

// Execute runs cmd with args and returns the process exit code: 0 on
// success, 2 on a usage error (bad flags or arguments), 1 on any other
// failure. Errors are printed as one line on cmd's error stream.
//
// ctx ending is Ctrl-C (main cancels it on SIGINT and SIGTERM), and the
// rule for every command is the same: it stops cleanly and exits 0. An
// error that is only the cancellation is therefore success; any other
// error (closing the data directory failed, say) still exits 1.
func Execute(ctx context.Context, cmd *cobra.Command, args []string) int {
	st := &execState{}
	ctx = context.WithValue(ctx, execStateKey{}, st)
	if args == nil {
		args = []string{}
	}
	cmd.SetArgs(args)
	c, err := cmd.ExecuteContextC(ctx)
	if err == nil || (st.ran && ctx.Err() != nil && errors.Is(err, context.Canceled)) {
		return ExitOK
	}
	if c == nil {
		c = cmd
	}
	var ue usageError
	usage := !st.ran || errors.As(err, &ue)
	msg := oneLine(err)
	if usage {
		msg += fmt.Sprintf(" (see '%s --help')", c.CommandPath())
	}
	fmt.Fprintln(c.ErrOrStderr(), "kvstream: "+msg)
	if usage {
		return ExitUsage
	}
	return ExitFailure
}

// execState records whether a command's RunE started: an error before
// that is cobra rejecting the command line, so a usage error.
type execState struct{ ran bool }

type execStateKey struct{}

// markRuns wraps every RunE in the tree so Execute can tell usage errors
// (before RunE) from failures (in RunE).
func markRuns(c *cobra.Command) {
	if run := c.RunE; run != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if st, ok := cmd.Context().Value(execStateKey{}).(*execState); ok {
				st.ran = true
			}
			return run(cmd, args)
		}
	}
	for _, sub := range c.Commands() {
		markRuns(sub)
	}
}

// usageError marks an error as a command-line mistake (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// cliError carries a message written for the command line while keeping
// the underlying error for errors.Is.
type cliError struct {
	msg string
	err error
}

func (e *cliError) Error() string { return e.msg }
func (e *cliError) Unwrap() error { return e.err }

// oneLine formats err as one line without a doubled "kvstream: " prefix.
func oneLine(err error) string {
	s := err.Error()
	// cobra: `unknown command "x" for "kvstream"\n\nDid you mean this?\n\tdemo\n`
	if head, sugg, ok := strings.Cut(s, "\n\nDid you mean this?\n"); ok {
		s = head + "; did you mean " + strings.Join(strings.Fields(sugg), " or ") + "?"
	}
	for strings.HasPrefix(s, "kvstream: ") {
		s = strings.TrimPrefix(s, "kvstream: ")
	}
	return strings.Join(strings.Fields(s), " ")
}

// exactArgs is cobra.ExactArgs with the arguments' names in the message.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < len(names):
			return fmt.Errorf("missing argument %s", strings.Join(names[len(args):], " "))
		case len(args) > len(names):
			return fmt.Errorf("unexpected argument %q", args[len(names)])
		}
		return nil
	}
}

// printf writes to w, ignoring errors (a closed pipe ends the command
// through the context or the next write).
func printf(w io.Writer, format string, args ...any) {
	_, _ = fmt.Fprintf(w, format, args...)
}
