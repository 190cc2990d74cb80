package engine

// SaveHighWater writes the shards' high-water marks to the sequence file
// now, as the background recorder does about once a second in fsync'd
// mode, so tests need not wait for it.
func (db *DB) SaveHighWater() error { return db.saveHighWater() }
