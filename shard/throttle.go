package shard

import (
	"context"
	"time"

	"golang.org/x/time/rate"
)

// Limits are one shard's throughput limits, per second; zero means
// unlimited.
type Limits struct {
	WriteRecords int
	WriteBytes   int
	ReadBytes    int
	ReadCalls    int
}

// Throttle holds a shard's token buckets, one per limited dimension; each
// bucket holds one second of its limit. A nil *Throttle admits everything.
// Throttle is safe for concurrent use. Times are passed in, so callers
// with an injected clock control refill.
type Throttle struct {
	writeRecords *rate.Limiter
	writeBytes   *rate.Limiter
	readBytes    *rate.Limiter
	readCalls    *rate.Limiter
}

func bucket(perSec int, now time.Time) *rate.Limiter {
	if perSec <= 0 {
		return nil
	}
	l := rate.NewLimiter(rate.Limit(perSec), perSec)
	// Start full at the caller's clock, not the wall clock.
	l.SetLimitAt(now, rate.Limit(perSec))
	l.AllowN(now, 0)
	return l
}

// NewThrottle returns buckets for l, full at now, or nil when l limits
// nothing.
func NewThrottle(l Limits, now time.Time) *Throttle {
	if l == (Limits{}) {
		return nil
	}
	return &Throttle{
		writeRecords: bucket(l.WriteRecords, now),
		writeBytes:   bucket(l.WriteBytes, now),
		readBytes:    bucket(l.ReadBytes, now),
		readCalls:    bucket(l.ReadCalls, now),
	}
}

// reserve takes n tokens from each bucket at now, all or nothing. It
// returns the reservations and the longest wait they need; ok is false if
// some bucket can never grant n.
func reserve(now time.Time, n []int, bs ...*rate.Limiter) (rs []*rate.Reservation, wait time.Duration, ok bool) {
	for i, b := range bs {
		if b == nil {
			continue
		}
		r := b.ReserveN(now, n[i])
		if !r.OK() {
			cancelAll(rs, now)
			return nil, 0, false
		}
		rs = append(rs, r)
		wait = max(wait, r.DelayFrom(now))
	}
	return rs, wait, true
}

func cancelAll(rs []*rate.Reservation, now time.Time) {
	for _, r := range rs {
		r.CancelAt(now)
	}
}

// AdmitWrite takes one record and bytes from the write buckets at now and
// reports whether both had capacity.
func (t *Throttle) AdmitWrite(now time.Time, bytes int) bool { return t.AdmitWriteN(now, 1, bytes) }

// AdmitWriteN takes records and bytes from the write buckets at now, all
// or nothing, and reports whether they had capacity. It checks before it
// takes, so a rejected call normally takes nothing; under a race with
// another writer it may take the records but not the bytes (erring toward
// rejecting, never toward exceeding the limit). It does not allocate.
func (t *Throttle) AdmitWriteN(now time.Time, records, bytes int) bool {
	if t == nil {
		return true
	}
	if t.writeRecords != nil && t.writeRecords.TokensAt(now) < float64(records) {
		return false
	}
	if t.writeBytes != nil && t.writeBytes.TokensAt(now) < float64(bytes) {
		return false
	}
	if t.writeRecords != nil && !t.writeRecords.AllowN(now, records) {
		return false
	}
	return t.writeBytes == nil || t.writeBytes.AllowN(now, bytes)
}

// WaitWrite is AdmitWrite that waits (in real time) for capacity until
// ctx ends. It fails at once if bytes exceed the byte bucket's size.
func (t *Throttle) WaitWrite(ctx context.Context, now time.Time, bytes int) error {
	if t == nil {
		return nil
	}
	rs, wait, ok := reserve(now, []int{1, bytes}, t.writeRecords, t.writeBytes)
	if !ok {
		return Errorf(ErrThroughputExceeded, "record of %d bytes exceeds the shard's write limit per second", bytes)
	}
	if wait == 0 {
		return nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		cancelAll(rs, now)
		return ctx.Err()
	}
}

// AdmitRead takes one read call at now and reports whether the call may
// proceed: the call bucket must have a token and the byte bucket must not
// be in debt from earlier reads. A rejected call takes nothing.
func (t *Throttle) AdmitRead(now time.Time) bool {
	if t == nil {
		return true
	}
	if t.readBytes != nil && t.readBytes.TokensAt(now) < 0 {
		return false
	}
	if t.readCalls != nil && !t.readCalls.AllowN(now, 1) {
		return false
	}
	return true
}

// ChargeRead takes the bytes a read returned from the read-byte bucket,
// going into debt if needed: a large read throttles the calls after it,
// as Kinesis does.
func (t *Throttle) ChargeRead(now time.Time, bytes int) {
	if t == nil || t.readBytes == nil || bytes == 0 {
		return
	}
	burst := t.readBytes.Burst()
	for bytes > 0 {
		n := min(bytes, burst)
		t.readBytes.ReserveN(now, n)
		bytes -= n
	}
}
