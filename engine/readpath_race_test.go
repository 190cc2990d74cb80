//go:build race

package engine_test

// raceEnabled: allocation counts are not checked under the race detector,
// which allocates on its own.
const raceEnabled = true
