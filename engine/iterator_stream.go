package engine

// ShardIteratorStream returns the name of the stream a shard iterator
// token (from GetShardIterator or GetRecords) was issued for, so a caller
// can check it against a stream the request also names. It fails as
// GetRecords would on the token: ErrExpiredIterator, ErrInvalidArgument
// for a forged or corrupted one, ErrStreamNotFound once the stream is
// gone. It is safe for concurrent use.
func (db *DB) ShardIteratorStream(token string) (string, error) {
	if err := db.check(); err != nil {
		return "", err
	}
	tok, err := db.tokens.Decode(token, db.opts.nowMs())
	if err != nil {
		return "", err
	}
	db.mu.RLock()
	s := db.mu.byID[tok.Stream]
	db.mu.RUnlock()
	if s == nil {
		return "", streamGone(tok)
	}
	return s.meta.Name, nil
}
