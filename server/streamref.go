package server

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"

	"github.com/kvstream/kvstream/engine"
)

// streamARN returns the ARN of the named stream.
func (s *Server) streamARN(name string) string {
	return "arn:aws:kinesis:" + s.cfg.Region + ":" + s.cfg.Account + ":stream/" + name
}

// parseStreamARN splits arn:aws…:kinesis:<region>:<account>:stream/<name>.
// ok is false if arn is not a stream ARN (a consumer ARN, say).
func parseStreamARN(arn string) (region, account, name string, ok bool) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || !strings.HasPrefix(parts[1], "aws") || parts[2] != "kinesis" {
		return "", "", "", false
	}
	name, ok = strings.CutPrefix(parts[5], "stream/")
	if !ok || name == "" || strings.Contains(name, "/") {
		return "", "", "", false
	}
	return parts[3], parts[4], name, true
}

// checkedStream ends a request's model validation with the StreamARN check
// (AWS lists that member last), reports every violation found so far, and
// then resolves the stream the request names.
func (s *Server) checkedStream(c *check, name, arn *string) (string, *apiError) {
	c.streamARN(arn)
	if err := c.err(); err != nil {
		return "", err
	}
	return s.resolveStream(name, arn)
}

// resolveStream returns the stream a request names by StreamName and/or
// StreamARN (the ARN wins when both are given, and they must agree). An
// ARN of another region or account names a stream that does not exist
// here. Call it after the model constraints were checked.
func (s *Server) resolveStream(name, arn *string) (string, *apiError) {
	if arn != nil {
		region, account, n, ok := parseStreamARN(*arn)
		if !ok {
			return "", newAPIError(errInvalidArgument, "StreamARN "+*arn+" is not a valid Kinesis stream ARN.")
		}
		if account != s.cfg.Account || region != s.cfg.Region {
			return "", newAPIError(errResourceNotFound, "Stream "+n+" under account "+account+" not found.")
		}
		if name != nil && *name != n {
			return "", newAPIError(errInvalidArgument, "StreamARN "+*arn+" and StreamName "+*name+" do not name the same stream.")
		}
		return n, nil
	}
	if name == nil {
		var c check
		c.required("streamName", false)
		return "", c.err()
	}
	return *name, nil
}

// resolveResource returns the stream a ResourceARN names (tagging ops).
func (s *Server) resolveResource(arn string) (string, *apiError) {
	region, account, n, ok := parseStreamARN(arn)
	if !ok {
		return "", newAPIError(errResourceNotFound, "Resource "+arn+" not found.")
	}
	if account != s.cfg.Account || region != s.cfg.Region {
		return "", newAPIError(errResourceNotFound, "Stream "+n+" under account "+account+" not found.")
	}
	return n, nil
}

// parseShard parses a shard id leniently, as AWS does (parseShardID),
// answering its ResourceNotFoundException for ids that do not parse.
func (s *Server) parseShard(id, stream string) (engine.ShardID, *apiError) {
	sid, ok := parseShardID(id) // as AWS reads them (startseq.go)
	if !ok {
		return 0, newAPIError(errResourceNotFound, "Could not find shard "+id+" in stream "+stream+" under account "+s.cfg.Account+".")
	}
	return sid, nil
}

// encryptionCache remembers each stream's EncryptionType, which PutRecord
// and PutRecords report, so the hot path does not describe the stream.
// Entries are dropped whenever the server changes or deletes a stream.
type encryptionCache struct{ m sync.Map } // name → string

func (c *encryptionCache) get(s *Server, name string) string {
	if v, ok := c.m.Load(name); ok {
		return v.(string)
	}
	ks, err := s.settingsOf(name)
	if err != nil {
		return "NONE"
	}
	t := ks.EncryptionType
	c.m.Store(name, t)
	return t
}

func (c *encryptionCache) forget(name string) { c.m.Delete(name) }

// pageToken is the content of a ListStreams or ListShards NextToken: where
// the next page starts and when the token was issued. It is base64 JSON,
// opaque to clients.
type pageToken struct {
	Stream   string `json:"s,omitempty"`
	After    string `json:"a,omitempty"`
	IssuedMs int64  `json:"t"`
	Filter   string `json:"f,omitempty"`
	FilterTS int64  `json:"fts,omitempty"`
	FilterID string `json:"fid,omitempty"`
}

// nextTokenTTL is how long a NextToken stays valid, as Kinesis (300 s).
const nextTokenTTLMs = 300_000

func encodePageToken(t pageToken) string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodePageToken decodes a NextToken issued at or before nowMs.
func decodePageToken(s string, nowMs int64) (pageToken, *apiError) {
	var t pageToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(b, &t) != nil || t.IssuedMs == 0 {
		return t, newAPIError(errInvalidArgument, "Invalid NextToken.")
	}
	if nowMs-t.IssuedMs > nextTokenTTLMs {
		return t, newAPIError(errExpiredNextToken, "The NextToken has expired: it was issued more than 300 seconds ago.")
	}
	return t, nil
}
