package server

import (
	"context"
	"encoding/json"
	"math/big"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/require"
)

// Which error wins, and its text, where AWS's checks overlap (recorded
// from AWS).

// hexNumber returns the decimal form of a hexadecimal number.
func hexNumber(h string) string {
	n, ok := new(big.Int).SetString(h, 16)
	if !ok {
		panic(h)
	}
	return n.String()
}

func TestWhichErrorWins(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	kc := env.client()
	ctx := context.Background()
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("s"), ShardCount: aws.Int32(3)})
	require.NoError(t, err)
	const acct = " under account 000000000000"

	expect := func(t *testing.T, err error, code, msg string, status int) {
		t.Helper()
		c, m, st := sdkErr(t, err)
		require.Equal(t, code, c)
		require.Equal(t, msg, m)
		require.Equal(t, status, st)
	}
	gsi := func(stream, shard string, typ types.ShardIteratorType, seq *string) error {
		_, err := kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String(stream), ShardId: aws.String(shard),
			ShardIteratorType: typ, StartingSequenceNumber: seq})
		return err
	}

	t.Run("shard ids of an unknown stream", func(t *testing.T) {
		for _, id := range []string{"2147483647", "x_1.5-2147483647", "a-00002147483647", "-00002147483647", "shardId-2147483647-x"} {
			expect(t, gsi("nope", id, types.ShardIteratorTypeLatest, nil), errResourceNotFound,
				"Shard shardId-002147483647 in stream nope"+acct+" does not exist", 400)
		}
		for _, id := range []string{"2147483648", "shardId-002147483648", "ABKLFD8", "2.14E4", "5-"} {
			expect(t, gsi("nope", id, types.ShardIteratorTypeLatest, nil), errResourceNotFound,
				"Could not find shard "+id+" in stream nope"+acct+".", 400)
		}
		// SplitShard and MergeShards name the stream first.
		_, err := kc.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String("nope"), ShardToSplit: aws.String("2147483647"), NewStartingHashKey: aws.String("0")})
		expect(t, err, errResourceNotFound, "Stream nope"+acct+" not found.", 400)
		_, err = kc.MergeShards(ctx, &kinesis.MergeShardsInput{StreamName: aws.String("nope"), ShardToMerge: aws.String("x-0"), AdjacentShardToMerge: aws.String("2147483648")})
		expect(t, err, errResourceNotFound, "Could not find shard 2147483648 in stream nope"+acct+".", 400)
	})

	t.Run("shards of a known stream", func(t *testing.T) {
		expect(t, gsi("s", "shardId-5", types.ShardIteratorTypeAtSequenceNumber, aws.String("5")), errResourceNotFound,
			"Shard shardId-000000000005 in stream s"+acct+" does not exist", 400)
		_, err := kc.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String("s"), ShardToSplit: aws.String("shardId-5"), NewStartingHashKey: aws.String("0")})
		expect(t, err, errResourceNotFound, "Could not find shard shardId-000000000005 in stream s"+acct+".", 400)
		_, err = kc.MergeShards(ctx, &kinesis.MergeShardsInput{StreamName: aws.String("s"), ShardToMerge: aws.String("x-0"), AdjacentShardToMerge: aws.String("shardId-5")})
		expect(t, err, errResourceNotFound, "Could not find shard shardId-000000000005 in stream s"+acct+".", 400)
	})

	t.Run("starting sequence numbers", func(t *testing.T) {
		at := types.ShardIteratorTypeAtSequenceNumber
		expect(t, gsi("s", "shardId-0", at, aws.String("5")), errInvalidArgument,
			"Invalid StartingSequenceNumber. It encodes shardId-000000000005, while it was used in a call to a shard with shardId-000000000000", 400)
		big := hexNumber("13bb2cc3d80000000000000000000000")
		expect(t, gsi("s", "shardId-0", at, aws.String(big)), errInvalidArgument,
			"StartingSequenceNumber 26227199374822427428162556223570313216 used in GetShardIterator on shard shardId-000000000000 in stream s"+acct+" is invalid.", 400)
		idx8 := hexNumber("20000000000800000000000000000000000000000000002")
		expect(t, gsi("s", "shardId-0", at, aws.String(idx8)), errInvalidArgument,
			"StartingSequenceNumber "+idx8+" used in GetShardIterator on shard shardId-000000000000 in stream s"+acct+" is invalid.", 400)
		expect(t, gsi("s", "shardId-0", at, aws.String(hexNumber("20000000000000000000000000000000000000800000002"))), errInvalidArgument,
			"Invalid StartingSequenceNumber. It encodes shardId--02147483648, while it was used in a call to a shard with shardId-000000000000", 400)
		other := hexNumber("20000000000000000000000000000000000000000000002")
		expect(t, gsi("s", "shardId-0", types.ShardIteratorTypeAfterSequenceNumber, aws.String(other)), errInvalidArgument,
			"StartingSequenceNumber "+other+" used in GetShardIterator on shard shardId-000000000000 in stream s"+acct+
				" is invalid because it did not come from this stream.", 400)
		// 0: AWS fails with an InternalFailure that has no message.
		code, _, body := env.postJSON("GetShardIterator", `{"StreamName":"s","ShardId":"shardId-0","ShardIteratorType":"AT_SEQUENCE_NUMBER","StartingSequenceNumber":"0"}`)
		require.Equal(t, http.StatusInternalServerError, code)
		require.JSONEq(t, `{"__type":"InternalFailure"}`, string(body))
		// A real number of the shard works.
		pr, err := kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("s"), PartitionKey: aws.String("a"), Data: []byte("x"), ExplicitHashKey: aws.String("0")})
		require.NoError(t, err)
		require.NoError(t, gsi("s", "shardId-000000000000", at, pr.SequenceNumber))
	})

	t.Run("split at 2^128", func(t *testing.T) {
		_, err := kc.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String("s"), ShardToSplit: aws.String("shard-2"),
			NewStartingHashKey: aws.String("340282366920938463463374607431768211456")})
		expect(t, err, errInvalidArgument, "NewStartingHashKey 340282366920938463463374607431768211456 used in SplitShard() on shard shardId-000000000002 in stream s"+acct+
			" is not both greater than one plus the shard's StartingHashKey 226854911280625642308916404954512140970 and less than the shard's EndingHashKey 340282366920938463463374607431768211455.", 400)
		_, err = kc.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String("s"), ShardToSplit: aws.String("shard-0"), NewStartingHashKey: aws.String("1")})
		expect(t, err, errInvalidArgument, "NewStartingHashKey 1 used in SplitShard() on shard shardId-000000000000 in stream s"+acct+
			" is not both greater than one plus the shard's StartingHashKey 0 and less than the shard's EndingHashKey 113427455640312821154458202477256070484.", 400)
	})
}

func TestIteratorOfDeletedStream(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	kc := env.client()
	ctx := context.Background()
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("gone"), ShardCount: aws.Int32(2)})
	require.NoError(t, err)
	its := make([]*string, 2)
	for i := range its {
		out, err := kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("gone"),
			ShardId: aws.String("shardId-" + string(rune('0'+i))), ShardIteratorType: types.ShardIteratorTypeLatest})
		require.NoError(t, err)
		its[i] = out.ShardIterator
	}
	_, err = kc.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String("gone")})
	require.NoError(t, err)
	check := func() {
		for i, it := range its {
			_, err := kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it})
			code, msg, status := sdkErr(t, err)
			require.Equal(t, errResourceNotFound, code)
			require.Equal(t, "Shard shardId-00000000000"+string(rune('0'+i))+" in stream gone under account 000000000000 does not exist", msg)
			require.Equal(t, http.StatusBadRequest, status)
		}
	}
	check()
	// Recreated under the same name, the old iterators still name the
	// stream that is gone.
	_, err = kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("gone"), ShardCount: aws.Int32(1)})
	require.NoError(t, err)
	check()
}

func TestExpiredIteratorText(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	kc := env.client()
	ctx := context.Background()
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("e"), ShardCount: aws.Int32(1)})
	require.NoError(t, err)
	out, err := kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("e"), ShardId: aws.String("shardId-0"),
		ShardIteratorType: types.ShardIteratorTypeLatest})
	require.NoError(t, err)
	env.advance(5*time.Minute + time.Second)
	_, err = kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: out.ShardIterator})
	code, msg, status := sdkErr(t, err)
	require.Equal(t, errExpiredIterator, code)
	require.Equal(t, http.StatusBadRequest, status)
	require.Regexp(t, regexp.MustCompile(`^Iterator expired\. The iterator was created at time \w{3} \w{3} \d{2} \d{2}:\d{2}:\d{2} UTC \d{4} `+
		`while right now it is \w{3} \w{3} \d{2} \d{2}:\d{2}:\d{2} UTC \d{4} which is further in the future than the tolerated delay of 300000 milliseconds\.$`), msg)
}

// TestAtTimestampRounding: arrival times are whole milliseconds; an
// AT_TIMESTAMP time is read exactly (not through a float) and a fraction of
// a millisecond rounds up, as AWS compares them.
func TestAtTimestampRounding(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	code, _, body := env.postJSON("CreateStream", `{"StreamName":"r","ShardCount":1}`)
	require.Equal(t, http.StatusOK, code, "%s", body)
	for _, d := range []string{"QQ==", "Qg=="} {
		code, _, body = env.postJSON("PutRecord", `{"StreamName":"r","PartitionKey":"k","Data":"`+d+`"}`)
		require.Equal(t, http.StatusOK, code, "%s", body)
		env.advance(3 * time.Millisecond)
	}
	read := func(ts string) []string {
		t.Helper()
		code, _, body := env.postJSON("GetShardIterator", `{"StreamName":"r","ShardId":"shardId-0","ShardIteratorType":"AT_TIMESTAMP","Timestamp":`+ts+`}`)
		require.Equal(t, http.StatusOK, code, "%s", body)
		var it struct{ ShardIterator string }
		require.NoError(t, json.Unmarshal(body, &it))
		code, _, body = env.postJSON("GetRecords", `{"ShardIterator":"`+it.ShardIterator+`"}`)
		require.Equal(t, http.StatusOK, code, "%s", body)
		var out struct {
			Records []struct {
				Data                        string
				ApproximateArrivalTimestamp json.Number
			}
		}
		require.NoError(t, json.Unmarshal(body, &out))
		var got []string
		for _, r := range out.Records {
			got = append(got, r.Data+"@"+r.ApproximateArrivalTimestamp.String())
		}
		return got
	}
	all := read("0")
	require.Len(t, all, 2)
	second := strings.Split(all[1], "@")[1] // epoch seconds with three decimals
	require.Equal(t, all[1:], read(second), "at the second record's arrival time")
	first := strings.Split(all[0], "@")[1]
	require.Equal(t, all, read(first))
	require.Equal(t, all[1:], read(first+"0001"), "a fraction of a millisecond after the first record")
	require.Equal(t, all[1:], read(first+"9999"))
}
