package command

import (
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, the source revision and the Go toolchain it was built with",
		Long: `Version prints the module version of this kvstream build, the version control
revision it was built from (with its commit time, and "modified" if the tree
had uncommitted changes), and the Go version and platform. The same line is
printed by 'kvstream --version'.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			printf(cmd.OutOrStdout(), "%s\n", versionString())
			return nil
		},
	}
}

// versionString describes this binary from its embedded build information.
func versionString() string {
	bi, _ := debug.ReadBuildInfo()
	return formatVersion(bi, runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH)
}

// formatVersion renders bi (nil when the binary carries none) as one
// line: "kvstream VERSION (revision REV, TIME, modified) GO OS/ARCH".
// A build from a clone without version control stamping (go run, go
// build -buildvcs=false) shows "(devel)" and no revision.
func formatVersion(bi *debug.BuildInfo, goVersion, platform string) string {
	version := "(devel)"
	var vcs []string
	if bi != nil {
		if v := bi.Main.Version; v != "" {
			version = v
		}
		settings := map[string]string{}
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
		if rev := settings["vcs.revision"]; rev != "" {
			if len(rev) > 12 {
				rev = rev[:12]
			}
			vcs = append(vcs, "revision "+rev)
			if t := settings["vcs.time"]; t != "" {
				vcs = append(vcs, t)
			}
			if settings["vcs.modified"] == "true" {
				vcs = append(vcs, "modified")
			}
		}
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
	}
	line := "kvstream " + version
	if len(vcs) > 0 {
		line += " (" + strings.Join(vcs, ", ") + ")"
	}
	return line + " " + goVersion + " " + platform
}
