package log

// DefaultCacheBytes is the default size of Pebble's block cache (config
// storage.cache_bytes). It holds decompressed blocks, so what it saves is the
// decompression of a block read again soon: consumers reading the same recent data
// (a fan-out), and the index blocks of the tables a read positions in. Replays read
// sequentially and mostly once, from the operating system's page cache (as Kafka
// does, without a cache of its own); a larger cache mostly held blocks the batch
// coalescer and start-up had read once (docs/operations.md, "Memory").
const DefaultCacheBytes = 32 << 20

// Memory is what the storage engine holds in memory outside the Go heap (Pebble
// allocates its block cache and memtables with C malloc), so an operator can tell it
// apart from the Go heap that go_memstats_* shows.
type Memory struct {
	// BlockCacheBytes is the block cache's content (bounded by Options.CacheBytes).
	BlockCacheBytes int64
	// BlockCacheLimitBytes is its bound, Options.CacheBytes.
	BlockCacheLimitBytes int64
	// MemTableBytes is the memtables' allocated size, including those waiting to be
	// flushed or recycled.
	MemTableBytes int64
}

// Memory reports the storage engine's memory (for /metrics).
func (l *Log) Memory() Memory {
	m := l.db.Metrics()
	return Memory{
		BlockCacheBytes:      m.BlockCache.Size,
		BlockCacheLimitBytes: l.opts.CacheBytes,
		MemTableBytes:        int64(m.MemTable.Size + m.MemTable.ZombieSize),
	}
}
