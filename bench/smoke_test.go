package bench

import (
	"bytes"
	"sync/atomic"
	"testing"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// progressProbe records the calls of a Progress callback.
type progressProbe struct {
	calls, last, total atomic.Int64
}

func (p *progressProbe) fn(done, total int64) {
	p.calls.Add(1)
	p.last.Store(done)
	p.total.Store(total)
}

func (p *progressProbe) check(t *testing.T) {
	t.Helper()
	require.Positive(t, p.calls.Load())
	require.Equal(t, p.total.Load(), p.last.Load(), "the last Progress call reports completion")
}

func checkResult(t *testing.T, r Result, records int64, timed bool) {
	t.Helper()
	t.Log(r)
	for _, m := range []Measurement{r.Engine, r.Ceiling} {
		require.Equal(t, records, m.Records)
		require.Positive(t, m.Bytes)
		require.Positive(t, m.RecordsPerSec)
		require.Positive(t, m.MBPerSec)
		require.Positive(t, m.PeakRSS)
		require.Positive(t, m.DiskBytesPerRecord)
		if timed {
			require.Positive(t, m.Ops)
			require.Positive(t, m.P50)
			require.GreaterOrEqual(t, m.P99, m.P50)
		}
	}
	require.Positive(t, r.Ratio)
	require.Positive(t, r.CPURatio)
	var buf bytes.Buffer
	require.NoError(t, WriteTable(&buf, r))
	require.Contains(t, buf.String(), r.Workload)
}

func TestRunAppendSmoke(t *testing.T) {
	for _, noSync := range []bool{false, true} {
		var p progressProbe
		cfg := DefaultAppendConfig()
		cfg.Profile = engine.ProfileSmall
		cfg.NoSync = noSync
		cfg.Records = 3_100 // a partial last batch
		cfg.Producers = 2
		cfg.Progress = p.fn
		r, err := RunAppend(t.TempDir(), cfg)
		require.NoError(t, err)
		checkResult(t, r, cfg.Records, true)
		require.Equal(t, !noSync, r.Sync)
		require.Equal(t, "small", r.Profile)
		p.check(t)
	}
}

func TestRunPutSmoke(t *testing.T) {
	var p progressProbe
	cfg := DefaultPutConfig()
	cfg.Profile = engine.ProfileSmall
	cfg.Records = 2_000
	cfg.Goroutines = 8
	cfg.Progress = p.fn
	r, err := RunPut(t.TempDir(), cfg)
	require.NoError(t, err)
	checkResult(t, r, cfg.Records, true)
	p.check(t)
}

func TestRunReadSmoke(t *testing.T) {
	dir := t.TempDir()
	for _, via := range []ReadAPI{ViaGetRecords, ViaIterator} {
		var p progressProbe
		cfg := DefaultReadConfig()
		cfg.Profile = engine.ProfileSmall
		cfg.Via = via
		cfg.Records = 5_000
		cfg.Limit = 700
		cfg.Progress = p.fn
		r, err := RunRead(dir, cfg) // the second run reuses the data set
		require.NoError(t, err)
		checkResult(t, r, cfg.Records, via == ViaGetRecords)
		require.Equal(t, via.String(), r.Workload)
		p.check(t)
	}
}

func TestInvalidConfigs(t *testing.T) {
	_, err := RunAppend(t.TempDir(), AppendConfig{})
	require.Error(t, err)
	_, err = RunPut(t.TempDir(), PutConfig{})
	require.Error(t, err)
	_, err = RunRead(t.TempDir(), ReadConfig{})
	require.Error(t, err)
	_, err = RunTail(t.TempDir(), TailConfig{})
	require.Error(t, err)
	_, err = ParseProfile("huge")
	require.Error(t, err)
}

func TestRunTailSmoke(t *testing.T) {
	for _, noSync := range []bool{false, true} {
		var p progressProbe
		cfg := DefaultTailConfig()
		cfg.Profile = engine.ProfileSmall
		cfg.NoSync = noSync
		cfg.Records = 200
		cfg.Rate = 5_000
		cfg.Progress = p.fn
		r, err := RunTail(t.TempDir(), cfg)
		require.NoError(t, err)
		checkResult(t, r, cfg.Records, true)
		p.check(t)
	}
}
