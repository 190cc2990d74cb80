//go:build linux

package engine

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// mountTmpfs mounts a tmpfs of the given size (e.g. "64m") for the test
// and unmounts it afterwards; it skips the test where mounting is not
// permitted (not root, or no CAP_SYS_ADMIN in a container).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	mnt := filepath.Join(t.TempDir(), "mnt")
	require.NoError(t, os.Mkdir(mnt, 0o755))
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("skipping the real disk-full test: cannot mount a %s tmpfs at %s (needs root on Linux): %v", size, mnt, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	return mnt
}

// availNow reads free space now (not the cached reading).
func availNow(db *DB) int64 {
	db.disk.nextCheck.Store(0)
	_ = db.Health()
	return db.StorageStats().AvailableBytes
}

// TestDiskFullTmpfs is invariant 9 on a real 64 MiB filesystem: the engine
// fills it until puts fail fast with ErrDiskFull (never a hang) while
// reads keep working; another writer then takes the rest of the disk,
// puts still fail fast, and a trim and DeleteStream still commit; once
// other files are removed puts resume without a reopen, and every
// acknowledged record survives a reopen.
func TestDiskFullTmpfs(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a 64 MiB tmpfs")
	}
	mnt := mountTmpfs(t, "64m")
	clk := useFakeNow(t) // free space is read when the test says (availNow) or after 2 MiB of puts
	dir := filepath.Join(mnt, "data")
	const minFree, ballast = 16 << 20, 8 << 20
	opts := &Options{MinFreeBytes: minFree, BallastBytes: ballast, TrimInterval: time.Hour}
	db, err := Open(dir, opts)
	require.NoError(t, err)
	defer func() { _ = db.Close() }()
	settle(db)
	require.EqualValues(t, ballast, db.StorageStats().BallastBytes)
	fi, err := os.Stat(filepath.Join(dir, BallastDir, BallastName))
	require.NoError(t, err)
	require.EqualValues(t, ballast, fi.Size())

	ctx := context.Background()
	require.NoError(t, db.CreateStream("fill", StreamConfig{ShardCount: 2}))
	require.NoError(t, db.CreateStream("keep", StreamConfig{ShardCount: 1}))
	var kept []string
	for i := range 50 {
		data := fmt.Sprint("kept-", i)
		_, err := putOne(db, "keep", data)
		require.NoError(t, err)
		kept = append(kept, data)
	}
	// Another program's file, removed at the end to make room (one of the
	// remedies the refusal names: "free other files on the disk").
	other := filepath.Join(mnt, "other-program.log")
	require.NoError(t, os.WriteFile(other, make([]byte, 16<<20), 0o644))

	// The kept records get an sstable of their own, so the one stream
	// filling the disk has sstables that hold nothing else: deleting it
	// frees them without rewriting anything.
	require.NoError(t, db.pdb.Flush())

	// Fill the disk through the engine: 512 KiB of incompressible data per
	// call. Every call returns promptly; the last ones fail with
	// ErrDiskFull.
	batch := make([]Entry, 16)
	filled := 0
	for i := 0; ; i++ {
		require.Less(t, i, 200, "puts were never refused")
		for j := range batch {
			d := make([]byte, 32<<10)
			_, _ = rand.Read(d)
			batch[j] = Entry{PartitionKey: fmt.Sprint(i, "-", j), Data: d}
		}
		cctx, cancel := context.WithTimeout(ctx, time.Minute) // a guard against hangs only
		_, err := db.PutRecords(cctx, "fill", batch)
		cancel()
		if err != nil {
			require.ErrorIs(t, err, ErrDiskFull)
			require.NotErrorIs(t, err, context.DeadlineExceeded)
			require.Contains(t, err.Error(), dir)
			require.Contains(t, err.Error(), "available")
			break
		}
		filled += len(batch)
	}
	t.Logf("the engine wrote %d records of 32 KiB before puts were refused; %d bytes available", filled, availNow(db))
	require.Greater(t, filled, 16*10, "the disk was usable up to the floor")
	require.Equal(t, kept, readAll(t, db, "keep"), "reads keep working")

	// Something else takes the rest of the disk and stops at ENOSPC. The
	// engine releases its ballast when it sees so little space (how much
	// is left then depends on what Pebble's background work freed or took
	// meanwhile; the ballast's states are tested on an in-memory FS).
	filler, err := os.Create(filepath.Join(mnt, "filler"))
	require.NoError(t, err)
	buf := make([]byte, 64<<10)
	for {
		if _, err := filler.Write(buf); err != nil {
			require.ErrorIs(t, err, syscall.ENOSPC)
			break
		}
	}
	require.NoError(t, filler.Close())
	t.Logf("another file filled the disk: %d bytes available, ballast %d bytes", availNow(db), db.StorageStats().BallastBytes)
	_, err = putOne(db, "keep", "refused")
	require.ErrorIs(t, err, ErrDiskFull)
	require.ErrorIs(t, db.Health(), ErrDiskFull)
	if db.StorageStats().BallastBytes == 0 {
		_, err = os.Stat(filepath.Join(dir, BallastDir, BallastName))
		require.ErrorIs(t, err, os.ErrNotExist)
	}

	// A trim commits while the disk is full (on the kept stream, which
	// holds nothing to trim: the commit is the point).
	require.NoError(t, db.DecreaseRetention("keep", time.Hour))
	require.NoError(t, db.Trim(ctx, "keep"))

	// DeleteStream commits at once, disk full or not.
	deleted := make(chan error, 1)
	go func() { deleted <- db.DeleteStream(ctx, "fill") }()
	select {
	case err := <-deleted:
		require.NoError(t, err)
	case <-time.After(time.Minute): // a guard against hangs only
		t.Fatal("DeleteStream hangs on a full disk")
	}
	// How soon the deleted records' space comes back is Pebble's: at once
	// for sstables holding only them (delete-only compactions, which need
	// the deletion flushed: spaceFreed does that), later for sstables a
	// compaction must rewrite, which needs room (and Pebble waits 30 s
	// before retrying a compaction that failed for lack of it).
	t.Logf("after deleting the stream: %d bytes available", availNow(db))

	// The other writers' files go away: puts resume without a reopen.
	require.NoError(t, os.Remove(filepath.Join(mnt, "filler")))
	require.NoError(t, os.Remove(other))
	clk.Add(flushErrorTTL) // past any ENOSPC Pebble met while the disk was full
	availNow(db)
	for i := range 20 {
		data := fmt.Sprint("after-", i)
		_, err := putOne(db, "keep", data)
		require.NoError(t, err)
		kept = append(kept, data)
	}
	t.Logf("puts resumed with %d bytes available", availNow(db))
	require.NoError(t, db.Health())
	require.NoError(t, db.Close())

	db, err = Open(dir, opts)
	require.NoError(t, err)
	require.Equal(t, kept, readAll(t, db, "keep"), "every acknowledged record survives a reopen")
	_, err = db.DescribeStream("fill")
	require.ErrorIs(t, err, ErrStreamNotFound)
	require.NoError(t, db.Close())
}
