package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kvstream/kvstream/engine"
)

// Kinesis-only stream settings and the enhanced fan-out consumer registry.
// The engine gives them no meaning, so the server keeps them as stream
// attributes (engine.DB.SetAttr, UpdateAttrs): persisted with the stream's
// catalog entry and deleted with the stream. Keys and encodings:
//
//	kinesis/stream-mode          "ON_DEMAND" (absent: PROVISIONED)
//	kinesis/encryption           {"type":"KMS","key_id":"…"} (absent: NONE)
//	kinesis/shard-level-metrics  ["IncomingBytes",…] sorted (absent: none)
//	kinesis/consumer/<name>      consumerRecord as JSON
//
// engine/migrate.go writes the same keys and encodings when it opens a
// data directory of an older build, which kept these in the engine; the
// two must agree (TestUpgradeLegacyDataDir checks it through the API).
const (
	modeAttr           = "kinesis/stream-mode"
	encryptionAttr     = "kinesis/encryption"
	metricsAttr        = "kinesis/shard-level-metrics"
	consumerAttrPrefix = "kinesis/consumer/"
)

// Stream capacity modes.
const (
	modeProvisioned = "PROVISIONED"
	modeOnDemand    = "ON_DEMAND"
)

// StreamSettings are a stream's Kinesis-only settings as the server keeps
// them (DescribeStream and DescribeStreamSummary report them). A
// StreamSettings is a plain value; nothing in it is shared.
type StreamSettings struct {
	Mode           string   // capacity mode: "PROVISIONED" (the default) or "ON_DEMAND"
	EncryptionType string   // "NONE" (the default) or "KMS"
	KeyID          string   // the KMS key ID with EncryptionType "KMS", else ""
	Metrics        []string // enabled shard-level metrics, sorted; nil: none
}

// encryptionSetting is the encoding of encryptionAttr.
type encryptionSetting struct {
	Type  string `json:"type"`
	KeyID string `json:"key_id,omitempty"`
}

// ReadStreamSettings returns the Kinesis-only settings of stream name in
// db, for a program that holds a data directory without running a Server
// over it (the kvstream command's streams describe, say). A setting whose
// stored value does not decode reads as its default. It reads no disk
// (engine.DB.Attrs); it fails as Attrs does (engine.ErrStreamNotFound for
// an unknown stream). Safe for concurrent use.
func ReadStreamSettings(db *engine.DB, name string) (StreamSettings, error) {
	st, _, err := readStreamSettings(db, name)
	return st, err
}

// readStreamSettings is ReadStreamSettings, also returning the keys of
// the attributes that did not decode.
func readStreamSettings(db *engine.DB, name string) (st StreamSettings, bad []string, err error) {
	st = StreamSettings{Mode: modeProvisioned, EncryptionType: "NONE"}
	attrs, err := db.Attrs(name, "kinesis/")
	if err != nil {
		return st, nil, err
	}
	if v, ok := attrs[modeAttr]; ok {
		st.Mode = string(v)
	}
	if v, ok := attrs[encryptionAttr]; ok {
		var e encryptionSetting
		if json.Unmarshal(v, &e) == nil && e.Type != "" {
			st.EncryptionType, st.KeyID = e.Type, e.KeyID
		} else {
			bad = append(bad, encryptionAttr)
		}
	}
	if v, ok := attrs[metricsAttr]; ok {
		if json.Unmarshal(v, &st.Metrics) != nil {
			bad = append(bad, metricsAttr)
			st.Metrics = nil
		}
	}
	return st, bad, nil
}

// settingsOf returns stream name's Kinesis settings. A value that does
// not decode reads as the default (and is logged): these are reported
// settings, nothing depends on them.
func (s *Server) settingsOf(name string) (StreamSettings, error) {
	st, bad, err := readStreamSettings(s.db, name)
	for _, k := range bad {
		s.cfg.Logger.Error("kvstream server: ignoring an undecodable stream setting", "stream", name, "attribute", k)
	}
	return st, err
}

// modeOfStream returns stream name's capacity mode.
func (s *Server) modeOfStream(name string) (string, error) {
	v, ok, err := s.db.Attr(name, modeAttr)
	if err != nil || !ok {
		return modeProvisioned, err
	}
	return string(v), nil
}

// setMode sets stream name's capacity mode.
func (s *Server) setMode(name, mode string) error {
	var v []byte
	if mode != modeProvisioned {
		v = []byte(mode)
	}
	return s.db.SetAttr(name, modeAttr, v)
}

// setEncryptionSetting records encryption typ ("NONE" or "KMS") with key.
func (s *Server) setEncryptionSetting(name, typ, key string) error {
	var v []byte
	if typ != "NONE" {
		v, _ = json.Marshal(encryptionSetting{Type: typ, KeyID: key})
	}
	return s.db.SetAttr(name, encryptionAttr, v)
}

// updateMetrics replaces stream name's shard-level metrics with
// change(current), atomically, and returns the sets before and after
// (sorted, never nil).
func (s *Server) updateMetrics(name string, change func(cur []string) []string) (before, after []string, err error) {
	err = s.db.UpdateAttrs(name, func(a map[string][]byte) error {
		before = []string{}
		if v, ok := a[metricsAttr]; ok && json.Unmarshal(v, &before) != nil {
			before = []string{}
		}
		after = change(slices.Clone(before))
		slices.Sort(after)
		after = slices.Compact(after)
		if after == nil {
			after = []string{}
		}
		if len(after) == 0 {
			delete(a, metricsAttr)
			return nil
		}
		v, _ := json.Marshal(after)
		a[metricsAttr] = v
		return nil
	})
	return before, after, err
}

// Registered stream consumers (enhanced fan-out). A consumer is a name
// with a lifecycle, CREATING → ACTIVE → DELETING → gone, timed by the
// engine's clock as the streams' own states are (CreateDelay is both a
// stream's ActivationDelay and a consumer's activation and deletion
// delay). Reading is up to SubscribeToShard (Iterate and Wait). They are
// unrelated to the engine's durable consumers (engine.DB.Consumer).

// maxStreamConsumers is how many consumers one stream may have registered
// (in any state), and maxCreatingConsumers how many of them may be
// CREATING at once, as on Kinesis.
const (
	maxStreamConsumers   = 20
	maxCreatingConsumers = 5
)

// Consumer states, as Kinesis names them.
const (
	consumerCreating = "CREATING"
	consumerActive   = "ACTIVE"
	consumerDeleting = "DELETING"
)

// consumerRecord is a registered consumer's persisted entry;
// DeregisteredMs is 0 while it is registered.
type consumerRecord struct {
	CreatedMs       int64 `json:"created_ms"`
	ActiveMs        int64 `json:"active_ms"`
	DeletionDelayMs int64 `json:"deletion_delay_ms,omitempty"`
	DeregisteredMs  int64 `json:"deregistered_ms,omitempty"`
}

func decodeConsumerRecord(stream, key string, v []byte) (consumerRecord, error) {
	var r consumerRecord
	if err := json.Unmarshal(v, &r); err != nil || r.DeletionDelayMs < 0 {
		return r, fmt.Errorf("%w: registered consumer %q of stream %s does not decode", engine.ErrCorruption, key[len(consumerAttrPrefix):], stream)
	}
	return r, nil
}

// status returns the consumer's state at nowMs; ok is false once a
// deregistered consumer is gone. Only a delay makes a state last: a clock
// stepping back never revives a gone consumer or hides an active one.
func (r consumerRecord) status(nowMs int64) (string, bool) {
	switch {
	case r.DeregisteredMs != 0:
		if r.DeletionDelayMs > 0 && nowMs < r.DeregisteredMs+r.DeletionDelayMs {
			return consumerDeleting, true
		}
		return "", false
	case r.ActiveMs > r.CreatedMs && nowMs < r.ActiveMs:
		return consumerCreating, true
	}
	return consumerActive, true
}

// streamConsumer describes a registered consumer.
type streamConsumer struct {
	Stream string
	Name   string
	Status string // at the time of the call
	// CreatedAt is the registration time (millisecond precision); its
	// Unix seconds are part of the consumer's ARN.
	CreatedAt time.Time
}

// consumerNowMs is the time consumer states are judged by.
func (s *Server) consumerNowMs() int64 { return s.db.Options().Clock().UnixMilli() }

// consumerNotFound is the error for a consumer stream does not have.
func (s *Server) consumerNotFound(stream, name string) *apiError {
	return newAPIError(errResourceNotFound, "Consumer "+name+" under stream "+stream+" under account "+s.cfg.Account+" not found.")
}

// registerConsumer registers consumer name with stream (CREATING for
// Config.CreateDelay, then ACTIVE). It fails with ResourceInUse if the
// name is registered already (in any state) or the stream is CREATING,
// and with LimitExceeded at maxStreamConsumers consumers or
// maxCreatingConsumers CREATING ones. The checks and the write are one
// UpdateAttrs, so concurrent registrations cannot overshoot the limits.
func (s *Server) registerConsumer(stream, name string) (streamConsumer, *apiError) {
	d, err := s.db.DescribeStream(stream)
	if err != nil {
		return streamConsumer{}, s.engineError(err, stream)
	}
	nowMs := s.consumerNowMs()
	if d.Status == engine.StatusCreating {
		return streamConsumer{}, s.notActive(stream, d.Status)
	}
	delay := s.cfg.CreateDelay.Milliseconds()
	r := consumerRecord{CreatedMs: nowMs, ActiveMs: nowMs + delay, DeletionDelayMs: delay}
	err = s.db.UpdateAttrs(stream, func(a map[string][]byte) error {
		total, creating := 0, 0
		for k, v := range a {
			if !strings.HasPrefix(k, consumerAttrPrefix) {
				continue
			}
			old, err := decodeConsumerRecord(stream, k, v)
			if err != nil {
				return err
			}
			st, live := old.status(nowMs)
			if !live { // gone: drop the leftover entry
				delete(a, k)
				continue
			}
			if k[len(consumerAttrPrefix):] == name {
				return newAPIError(errResourceInUse, "Consumer "+name+" under stream "+stream+" under account "+s.cfg.Account+" already exists.")
			}
			total++
			if st == consumerCreating {
				creating++
			}
		}
		if total >= maxStreamConsumers {
			return newAPIError(errLimitExceeded, fmt.Sprintf("Stream %s under account %s already has %d registered consumers, the most a stream can have.", stream, s.cfg.Account, total))
		}
		if creating >= maxCreatingConsumers {
			return newAPIError(errLimitExceeded, fmt.Sprintf("Stream %s under account %s already has %d consumers in the CREATING state; wait until they are ACTIVE.", stream, s.cfg.Account, creating))
		}
		a[consumerAttrPrefix+name], _ = json.Marshal(r)
		return nil
	})
	if err != nil {
		return streamConsumer{}, s.engineError(err, stream)
	}
	st, _ := r.status(nowMs)
	return streamConsumer{Stream: stream, Name: name, Status: st, CreatedAt: time.UnixMilli(r.CreatedMs)}, nil
}

// errNoChange ends an UpdateAttrs that has nothing to write.
var errNoChange = errors.New("no change")

// deregisterConsumer deregisters consumer name of stream: it is DELETING
// for the deletion delay it was registered with, then gone. Deregistering
// a consumer that is DELETING already does nothing.
func (s *Server) deregisterConsumer(stream, name string) *apiError {
	nowMs := s.consumerNowMs()
	key := consumerAttrPrefix + name
	err := s.db.UpdateAttrs(stream, func(a map[string][]byte) error {
		v, ok := a[key]
		if !ok {
			return s.consumerNotFound(stream, name)
		}
		r, err := decodeConsumerRecord(stream, key, v)
		if err != nil {
			return err
		}
		switch st, live := r.status(nowMs); {
		case !live:
			return s.consumerNotFound(stream, name)
		case st == consumerDeleting:
			return errNoChange
		}
		if r.DeletionDelayMs > 0 {
			r.DeregisteredMs = max(nowMs, 1)
			a[key], _ = json.Marshal(r)
		} else {
			delete(a, key)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errNoChange) {
		return s.engineError(err, stream)
	}
	return nil
}

// describeConsumer returns consumer name of stream; found is false if
// the stream has no such consumer. err is an engine error (an unknown
// stream, say).
func (s *Server) describeConsumer(stream, name string) (c streamConsumer, found bool, err error) {
	key := consumerAttrPrefix + name
	v, ok, err := s.db.Attr(stream, key)
	if err != nil || !ok {
		return c, false, err
	}
	r, err := decodeConsumerRecord(stream, key, v)
	if err != nil {
		return c, false, err
	}
	st, live := r.status(s.consumerNowMs())
	if !live {
		return c, false, nil
	}
	return streamConsumer{Stream: stream, Name: name, Status: st, CreatedAt: time.UnixMilli(r.CreatedMs)}, true, nil
}

// listConsumers returns stream's registered consumers (CREATING, ACTIVE
// and DELETING ones) ordered by name.
func (s *Server) listConsumers(stream string) ([]streamConsumer, error) {
	attrs, err := s.db.Attrs(stream, consumerAttrPrefix)
	if err != nil {
		return nil, err
	}
	nowMs := s.consumerNowMs()
	var out []streamConsumer
	for k, v := range attrs {
		r, err := decodeConsumerRecord(stream, k, v)
		if err != nil {
			return nil, err
		}
		if st, live := r.status(nowMs); live {
			out = append(out, streamConsumer{Stream: stream, Name: k[len(consumerAttrPrefix):], Status: st, CreatedAt: time.UnixMilli(r.CreatedMs)})
		}
	}
	slices.SortFunc(out, func(a, b streamConsumer) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
