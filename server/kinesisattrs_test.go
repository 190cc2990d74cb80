package server

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// TestConsumerRegistryConcurrent: registrations racing for the last
// places of a stream never overshoot maxStreamConsumers.
func TestConsumerRegistryConcurrent(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	require.NoError(t, env.db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	var ok, limited atomic.Int32
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, aerr := env.srv.registerConsumer("s", fmt.Sprintf("c%02d", i))
			switch {
			case aerr == nil:
				ok.Add(1)
			case aerr.Type == errLimitExceeded:
				limited.Add(1)
			default:
				t.Errorf("register c%02d: %v", i, aerr)
			}
		}()
	}
	wg.Wait()
	require.Equal(t, int32(maxStreamConsumers), ok.Load())
	require.Equal(t, int32(40-maxStreamConsumers), limited.Load())
	cs, err := env.srv.listConsumers("s")
	require.NoError(t, err)
	require.Len(t, cs, maxStreamConsumers)
}

// TestConsumerRegistryStates: with a CreateDelay a consumer is CREATING,
// then ACTIVE; at most maxCreatingConsumers are CREATING at once; a
// deregistered one is DELETING, then gone and its name free; consumers
// are deleted with their stream.
func TestConsumerRegistryStates(t *testing.T) {
	env := newEnv(t, Config{CreateDelay: time.Minute}, nil)
	require.NoError(t, env.db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	for i := range maxCreatingConsumers {
		c, aerr := env.srv.registerConsumer("s", fmt.Sprintf("c%d", i))
		require.Nil(t, aerr)
		require.Equal(t, consumerCreating, c.Status)
	}
	_, aerr := env.srv.registerConsumer("s", "more")
	require.NotNil(t, aerr)
	require.Equal(t, errLimitExceeded, aerr.Type)
	require.Contains(t, aerr.Msg, "CREATING")

	env.advance(time.Minute)
	c, found, err := env.srv.describeConsumer("s", "c0")
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, consumerActive, c.Status)
	require.Nil(t, env.srv.deregisterConsumer("s", "c0"))
	c, found, err = env.srv.describeConsumer("s", "c0")
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, consumerDeleting, c.Status)
	require.Nil(t, env.srv.deregisterConsumer("s", "c0"), "deregistering a DELETING consumer does nothing")
	_, aerr = env.srv.registerConsumer("s", "c0")
	require.NotNil(t, aerr)
	require.Equal(t, errResourceInUse, aerr.Type)

	env.advance(time.Minute)
	_, found, err = env.srv.describeConsumer("s", "c0")
	require.NoError(t, err)
	require.False(t, found)
	aerr = env.srv.deregisterConsumer("s", "c0")
	require.NotNil(t, aerr)
	require.Equal(t, errResourceNotFound, aerr.Type)
	_, aerr = env.srv.registerConsumer("s", "c0")
	require.Nil(t, aerr, "the name is free once the consumer is gone")

	require.NoError(t, env.db.DeleteStream(context.Background(), "s"))
	require.NoError(t, env.db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	cs, err := env.srv.listConsumers("s")
	require.NoError(t, err)
	require.Empty(t, cs, "a stream's consumers are deleted with it")
}

// TestReadStreamSettings: the settings read without a Server are those
// the server set; a stored value that does not decode reads as the
// default; an unknown stream is ErrStreamNotFound.
func TestReadStreamSettings(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	require.NoError(t, env.db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	st, err := ReadStreamSettings(env.db, "s")
	require.NoError(t, err)
	require.Equal(t, StreamSettings{Mode: "PROVISIONED", EncryptionType: "NONE"}, st)

	require.NoError(t, env.srv.setMode("s", modeOnDemand))
	require.NoError(t, env.srv.setEncryptionSetting("s", "KMS", "alias/k"))
	_, _, err = env.srv.updateMetrics("s", func([]string) []string { return []string{"IncomingBytes", "ALL"} })
	require.NoError(t, err)
	st, err = ReadStreamSettings(env.db, "s")
	require.NoError(t, err)
	require.Equal(t, StreamSettings{Mode: "ON_DEMAND", EncryptionType: "KMS", KeyID: "alias/k", Metrics: []string{"ALL", "IncomingBytes"}}, st)

	require.NoError(t, env.db.SetAttr("s", encryptionAttr, []byte("{")))
	require.NoError(t, env.db.SetAttr("s", metricsAttr, []byte("7")))
	st, err = ReadStreamSettings(env.db, "s")
	require.NoError(t, err)
	require.Equal(t, StreamSettings{Mode: "ON_DEMAND", EncryptionType: "NONE"}, st)

	_, err = ReadStreamSettings(env.db, "nope")
	require.ErrorIs(t, err, engine.ErrStreamNotFound)
}
