// Package log is the stream log: one ordered, durable log of Kafka v2 record batches per
// (stream, shard), stored in one Pebble database, with a time index, retention and
// consumer-group offsets. It knows nothing of MQTT or Kafka connections.
package log

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"
)

// Errors callers branch on.
var (
	ErrClosed           = errors.New("log closed")
	ErrUnknownStream    = errors.New("unknown stream")
	ErrStreamExists     = errors.New("stream already exists")
	ErrUnknownShard     = errors.New("unknown shard")
	ErrOffsetOutOfRange = errors.New("offset out of range")
	ErrInvalidSpec      = errors.New("invalid stream spec")
	// ErrOffsetMismatch: a replicated append (AppendAt) was not at the shard's next offset.
	ErrOffsetMismatch = errors.New("replicated append not at the shard's next offset")
)

// Observer receives measurements from the data path (Prometheus metrics in the server).
type Observer interface {
	// ObserveAppend is called once per append request when it is durable.
	ObserveAppend(stream string, records, bytes int, latency time.Duration)
	// ObserveSync is called once per synced commit with its duration.
	ObserveSync(latency time.Duration)
}

type nopObserver struct{}

func (nopObserver) ObserveAppend(string, int, int, time.Duration) {}
func (nopObserver) ObserveSync(time.Duration)                     {}

// Options configure Open.
type Options struct {
	// Dir is the Pebble directory; it is created if missing and locked while open.
	Dir string
	// Logger receives the log's own and Pebble's messages.
	Logger zerolog.Logger
	// NoSync skips fsync on commit: only for benchmarks of everything but the disk.
	NoSync bool
	// Durability is when appends are acknowledged (default fsync); a stream's
	// StreamSpec.Durability overrides it.
	Durability Durability
	// QueueBytes bounds the appends queued or written and not yet acknowledged
	// (default DefaultQueueBytes); see queue.go for what a full queue does.
	QueueBytes int64
	// SyncInterval bounds how long written appends stay unsynced under `write`
	// durability (default 10ms).
	SyncInterval time.Duration
	// RetentionInterval is how often retention runs (default 10s).
	RetentionInterval time.Duration
	// Now is the clock (default time.Now); tests move it.
	Now func() time.Time
	// Observer receives metrics; nil means none.
	Observer Observer
	// CacheBytes sizes Pebble's block cache (default DefaultCacheBytes).
	CacheBytes int64
	// IdleFlush is how long after the last commit the memtable is flushed, so an idle
	// log keeps its data in compact tables rather than in the write-ahead log (default
	// DefaultIdleFlush).
	IdleFlush time.Duration
	// testBeforeSync, when set, runs before each group's WAL sync (tests stall it).
	testBeforeSync func()
	// Coalesce tunes the background merging of small batches (coalesce.go).
	Coalesce CoalesceOptions
	// MinFreeBytes: writes are refused with ErrDiskFull while the data directory has
	// less free space than this, so Pebble keeps room to flush and compact (0: 64 MiB;
	// negative: never refuse).
	MinFreeBytes int64
	// DiskCheckInterval is how often free space is measured (default 250ms); writes
	// resume within one interval of space returning.
	DiskCheckInterval time.Duration
	// statfs replaces the free-space measurement in tests.
	statfs func(dir string) (uint64, error)
	// fs replaces the filesystem in tests (failing writes).
	fs vfs.FS
}

// Pebble tuning for disk use (docs/operations.md, "Disk use"). Pebble preallocates
// each write-ahead log file at 1.1 × the memtable size and keeps up to
// MemTableStopWritesThreshold + 1 obsolete ones for reuse; with the 64 MiB memtables
// tuned for throughput that was ~70 MiB per file and ~560 MiB before any data.
const (
	memTableSize                = 8 << 20
	memTableStopWritesThreshold = 2
	// DefaultIdleFlush is the default Options.IdleFlush.
	DefaultIdleFlush = 2 * time.Second
	// DiskOverheadBytes bounds the data dir beyond twice the bytes the streams hold: the
	// live and recycled write-ahead logs (at most 2 × (threshold + 1) files of 1.1 ×
	// memtable size), the memtable's worth of data not yet in tables, the manifest and
	// options files. TestDiskUseBounded checks it.
	DiskOverheadBytes = 64 << 20
)

// Values of at least separatedValueBytes (the coalescer's merged batches, up to ~1 MiB,
// coalesce.go) are written to blob files when the memtable is flushed; compactions then
// carry a small reference forward instead of the value. Without it every compaction
// into the last level decompressed, copied and recompressed each merged batch its key
// range overlapped: the shards' batches and time keys interleave in key order, so one
// flush overlaps most of the level, and compactions took a quarter of the broker's CPU
// at 256 publishers (each stored byte was rewritten 3–5 times). Committed batches are
// smaller and are mostly merged and deleted before a flush, so they stay in the tables.
const separatedValueBytes = 64 << 10

// valueSeparation is Pebble's value separation policy (valuesep_test.go checks
// that compactions no longer rewrite merged batches). A blob file holds the merged
// batches of one flush; retention deleting a prefix of every shard frees whole files.
// Files only partly referenced (streams with different retention flushed together) are
// rewritten once a fifth of their bytes are garbage and they are 5 minutes old.
func valueSeparation() pebble.ValueSeparationPolicy {
	return pebble.ValueSeparationPolicy{
		Enabled:               true,
		MinimumSize:           separatedValueBytes,
		MaxBlobReferenceDepth: 10,
		RewriteMinimumAge:     5 * time.Minute,
		TargetGarbageRatio:    0.2,
	}
}

// formatMajorVersion pins Pebble's on-disk format: a newer Pebble must not change the
// format of existing data dirs by itself. Raising it is a one-way upgrade of every data
// dir the new binary opens (older binaries then refuse it); see docs/operations.md,
// "Upgrading".
const formatMajorVersion = pebble.FormatValueSeparation

// Log is an open stream log.
type Log struct {
	db   *pebble.DB
	opts Options
	lg   zerolog.Logger

	mu      sync.RWMutex
	streams map[string]*Stream
	nextID  uint32

	// commitMu is held by the committer for each commit and by definition changes,
	// so a stream is never written to after its deletion.
	commitMu sync.Mutex
	// commitRecs, commitVal and commitEnc are the committer's scratch (append.go commit).
	commitRecs []Record
	commitVal  []byte
	commitEnc  valueEncoder

	adm     admission
	queueMu sync.Mutex
	queue   []*pending
	closed  bool
	wake    chan struct{}

	// Commits applied to Pebble (written, not yet synced), handed from the committer
	// to the syncer in commit order (sync.go).
	wfs          *walFS
	appliedMu    sync.Mutex
	appliedQ     []*applied
	appliedCount int  // appends and entry changes in appliedQ
	committerEnd bool // the committer has stopped: the syncer drains and stops
	applied      chan struct{}
	unsynced     atomic.Bool              // `write` appends acknowledged since the last fsync
	afterAcks    atomic.Pointer[[]func()] // AfterAcks callbacks (sync.go)

	stop chan struct{}
	wg   sync.WaitGroup

	// lastCommit (UnixNano) and dirty drive the idle flush.
	lastCommit atomic.Int64
	dirty      atomic.Bool

	// maintMu serialises the rewriters of stored batches below the high watermark:
	// retention, last-value compaction and coalescing.
	maintMu      sync.Mutex
	coalesceBufs coalesceBufs // coalesceShard's, guarded by maintMu
	coalesceMu   sync.Mutex   // one Coalesce call at a time
	coalesceWake chan struct{}

	store storage

	// replicatedMaint: retention is decided by a cluster's shard leaders (replicated.go).
	replicatedMaint atomic.Bool
}

// idleFlushLoop flushes the memtable once commits have stopped for IdleFlush.
func (l *Log) idleFlushLoop() {
	defer l.wg.Done()
	t := time.NewTicker(l.opts.IdleFlush / 2)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			if !l.dirty.Load() || time.Since(time.Unix(0, l.lastCommit.Load())) < l.opts.IdleFlush {
				continue
			}
			if l.store.writeErr() != nil {
				continue // a flush writes: wait until the disk has room
			}
			l.dirty.Store(false)
			if err := l.flush(); err != nil {
				l.lg.Warn().Err(err).Msg("idle flush")
			}
		}
	}
}

// unflushed reports whether commits since the last idle flush wait for one.
func (l *Log) unflushed() bool { return l.dirty.Load() }

type pending struct {
	stream *Stream
	shard  int32
	recs   []Record
	ops    []EntryOp // entry changes committed with recs (or alone when stream is nil)
	done   func(AppendResult, error)
	// txn tags a transactional append; marker makes the pending a transaction marker
	// (one control record in recs); endTxn is an EndTxnAsync before the committer
	// expands it into markers; firstTxn is a marker's transaction's first offset.
	txn      *Txn
	marker   *Marker
	endTxn   *endTxn
	firstTxn int64
	// entriesDone answers an entries-only pending (stream nil).
	entriesDone func(error)
	enqueued    time.Time
	bytes       int
	base        int64
	tsUS        int64
	// fixedTS, when set, is the append time a replicated append must get, and
	// wantBase the offset it must start at (AppendAt).
	fixedTS, wantBase int64
	// refused: a replicated append not at its offset, answered and left out.
	refused bool
}

// AppendResult tells where an append landed.
type AppendResult struct {
	BaseOffset  int64
	TimestampUS int64
}

// Open opens (creating if needed) the log in opts.Dir and recovers every shard's
// log start and high watermark from what is durably stored.
func Open(opts Options) (*Log, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	if opts.RetentionInterval <= 0 {
		opts.RetentionInterval = 10 * time.Second
	}
	opts.Coalesce.defaults()
	if opts.CacheBytes <= 0 {
		opts.CacheBytes = DefaultCacheBytes
	}
	if opts.Durability == DurabilityDefault {
		opts.Durability = DurabilityFsync
	}
	if _, err := ParseDurability(string(opts.Durability)); err != nil {
		return nil, fmt.Errorf("open log %s: %w", opts.Dir, err)
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = DefaultQueueBytes
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = 10 * time.Millisecond
	}
	if opts.MinFreeBytes == 0 {
		opts.MinFreeBytes = 64 << 20
	}
	if opts.DiskCheckInterval <= 0 {
		opts.DiskCheckInterval = 250 * time.Millisecond
	}
	if opts.statfs == nil {
		opts.statfs = statfsFree
	}
	if opts.IdleFlush <= 0 {
		opts.IdleFlush = DefaultIdleFlush
	}
	l := &Log{
		applied: make(chan struct{}, 1),
		opts:    opts,
		lg:      opts.Logger,
		streams: map[string]*Stream{},
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),

		coalesceWake: make(chan struct{}, 1),
	}
	l.adm.setLimit(opts.QueueBytes)
	base := opts.fs
	if base == nil {
		base = vfs.Default
	}
	l.wfs = newWALFS(base, opts.Observer.ObserveSync)
	l.wfs.fatal = l.fatal
	minFree := uint64(0)
	if opts.MinFreeBytes > 0 {
		minFree = uint64(opts.MinFreeBytes)
	}
	l.store = storage{dir: opts.Dir, minFree: minFree, statfs: opts.statfs, dead: make(chan struct{})}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("open log %s: %w", opts.Dir, err)
	}
	db, err := l.openPebble()
	if err != nil {
		return nil, err
	}
	l.db = db
	if err := l.load(); err != nil {
		_ = db.Close()
		return nil, err
	}
	l.store.mu.Lock()
	l.store.onLow = func(low bool) {
		if low {
			l.lg.Error().Int64("free_bytes", l.store.free.Load()).Uint64("min_free_bytes", l.store.minFree).Str("dir", opts.Dir).
				Msg("disk full: refusing writes until space returns; reads keep serving")
		} else {
			l.lg.Info().Int64("free_bytes", l.store.free.Load()).Str("dir", opts.Dir).Msg("disk space back: writes resume")
		}
	}
	l.store.mu.Unlock()
	l.wg.Add(6)
	go l.commitLoop()
	go l.syncLoop()
	go l.intervalSyncLoop()
	go l.retentionLoop()
	go l.diskLoop(opts.DiskCheckInterval)
	go l.idleFlushLoop()
	if !opts.Coalesce.Disabled {
		l.wg.Add(1)
		go l.coalesceLoop()
	}
	return l, nil
}

// openPebble opens the database. On a disk already below the free-space threshold
// the log comes up refusing writes (one log line, no retry loop); if Pebble cannot
// even write its start-up files, the database is opened read-only and stays so
// until a restart.
func (l *Log) openPebble() (db *pebble.DB, err error) {
	opts := l.opts
	if l.store.check() {
		l.lg.Error().Int64("free_bytes", l.store.free.Load()).Uint64("min_free_bytes", l.store.minFree).Str("dir", opts.Dir).
			Msg("disk full at start-up: serving reads only; writes resume when space returns")
	}
	popts := func(readOnly bool, cache *pebble.Cache) *pebble.Options {
		po := &pebble.Options{
			Cache:                       cache,
			Logger:                      pebbleLogger{lg: opts.Logger.With().Str("lib", "pebble").Logger(), fatal: l.fatal},
			MemTableSize:                memTableSize,
			MemTableStopWritesThreshold: memTableStopWritesThreshold,
			FormatMajorVersion:          formatMajorVersion,
			ReadOnly:                    readOnly,
			FS:                          l.wfs,
			EventListener: &pebble.EventListener{
				// Background flushes and compactions retry by themselves; a failure is
				// logged (rate-limited by Pebble's own retry pacing) and, when it is a
				// lack of space, turns writes away until space returns.
				BackgroundError: func(err error) {
					if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
						l.store.setLow(true)
					}
					l.lg.Warn().Err(err).Msg("storage background error")
				},
			},
		}
		po.Experimental.ValueSeparationPolicy = valueSeparation
		return po
	}
	open := func(readOnly bool) (db *pebble.DB, err error) {
		defer func() {
			if r := recover(); r != nil {
				pf, ok := r.(pebbleFatal)
				if !ok {
					panic(r)
				}
				err = pf
			}
		}()
		cache := pebble.NewCache(opts.CacheBytes)
		defer cache.Unref()
		return pebble.Open(opts.Dir, popts(readOnly, cache))
	}
	db, err = open(false)
	if err != nil && (errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)) {
		rdb, rerr := open(true)
		if rerr == nil {
			l.lg.Error().Err(err).Str("dir", opts.Dir).Msg("disk full at start-up: opened read-only; free space and restart to accept writes")
			e := fmt.Errorf("%w: opened read-only on a full disk: %w", ErrStorageFailed, err)
			l.store.failed.Store(&e)
			return rdb, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open log %s: %w", opts.Dir, err)
	}
	return db, nil
}

// storedStream is the persisted form of a stream definition.
type storedStream struct {
	ID   uint32     `json:"id"`
	Spec StreamSpec `json:"spec"`
}

func (l *Log) load() error {
	if v, closer, err := l.db.Get([]byte{prefixNextID}); err == nil {
		l.nextID = binary.BigEndian.Uint32(v)
		closer.Close()
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("load next stream id: %w", err)
	}
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixMeta}, UpperBound: []byte{prefixMeta + 1}})
	if err != nil {
		return fmt.Errorf("load streams: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		var ss storedStream
		if err := json.Unmarshal(it.Value(), &ss); err != nil {
			return fmt.Errorf("load stream %q: %w", it.Key()[1:], err)
		}
		s := &Stream{log: l, id: ss.ID, name: ss.Spec.Name, spec: ss.Spec}
		for i := int32(0); i < ss.Spec.Shards; i++ {
			sh, err := l.recoverShard(ss.ID, i)
			if err != nil {
				return fmt.Errorf("recover %s/%d: %w", ss.Spec.Name, i, err)
			}
			if ss.Spec.LastValue {
				// Compaction shrank batches below their cumulative positions: sum the
				// sizes the shard holds (small, for a last-value stream).
				n, err := storedBytes(l.db, ss.ID, i, sh.next)
				if err != nil {
					return fmt.Errorf("recover %s/%d: %w", ss.Spec.Name, i, err)
				}
				sh.bytes.Store(n)
			}
			s.shards = append(s.shards, sh)
		}
		l.streams[ss.Spec.Name] = s
	}
	return it.Error()
}

// recoverShard rebuilds a shard's in-memory state from its last stored batch and its
// log start: only committed (synced) batches are visible, so the high watermark
// recovered is exactly the durable one.
func (l *Log) recoverShard(sid uint32, shard int32) (*shardState, error) {
	sh := newShardState()
	if v, closer, err := l.db.Get(startKey(sid, shard)); err == nil {
		sh.start.Store(int64(binary.BigEndian.Uint64(v)))
		closer.Close()
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return nil, err
	}
	sh.next = sh.start.Load()
	p := shardPrefix(prefixBatch, sid, shard)
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	if it.Last() {
		sv, err := parseStored(it.Value())
		if err != nil {
			return nil, fmt.Errorf("last batch: %w", err)
		}
		sh.next = batchLastOffset(sv.batch) + 1
		sh.lastTS = sv.tsUS
		if sv.segs.n() > 0 {
			_, sh.lastTS = sv.segs.at(sv.segs.n() - 1)
		}
		sh.cum = sv.cum + sv.logical
	}
	if it.First() {
		_, cum, _, err := decodeValue(it.Value())
		if err != nil {
			return nil, fmt.Errorf("first batch: %w", err)
		}
		sh.bytes.Store(sh.cum - cum)
	}
	sh.hwm.Store(sh.next)
	if err := l.recoverTxns(sid, shard, sh); err != nil {
		return nil, err
	}
	if err := l.recoverCoalesce(sid, shard, sh); err != nil {
		return nil, err
	}
	return sh, it.Error()
}

// Close stops accepting appends, commits those already queued, and closes Pebble.
func (l *Log) Close() error {
	l.queueMu.Lock()
	if l.closed {
		l.queueMu.Unlock()
		return ErrClosed
	}
	l.closed = true
	l.queueMu.Unlock()
	l.closeAdmission()
	close(l.stop)
	// A Pebble job parked on a fatal error (pebble_fatal.go) may hold what the
	// committer waits for, and Pebble's Close waits for the job: neither wait ends.
	if err := l.waitPebble(func() error { l.wg.Wait(); return nil }); err != nil {
		return fmt.Errorf("close log: %w", err)
	}
	if err := l.waitPebble(l.db.Close); err != nil {
		return fmt.Errorf("close log: %w", err)
	}
	return nil
}

// Streams lists the streams sorted by name.
func (l *Log) Streams() []*Stream {
	l.mu.RLock()
	out := make([]*Stream, 0, len(l.streams))
	for _, s := range l.streams {
		out = append(out, s)
	}
	l.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// Stream returns the named stream, or nil.
func (l *Log) Stream(name string) *Stream {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.streams[name]
}

func (l *Log) streamByID(id uint32) *Stream {
	l.mu.RLock()
	defer l.mu.RUnlock()
	for _, s := range l.streams {
		if s.id == id {
			return s
		}
	}
	return nil
}

// syncOpt is how synced writes commit: written and fsynced by guardWrite, or only
// written with Options.NoSync.
func (l *Log) syncOpt() *pebble.WriteOptions {
	if l.opts.NoSync {
		return pebble.NoSync
	}
	return pebble.Sync
}

func (l *Log) nowUS() int64 { return l.opts.Now().UnixMicro() }

// Dir is the directory the log was opened in; other packages keep per-data-dir
// identity (such as the Kafka cluster id) next to it.
func (l *Log) Dir() string { return l.opts.Dir }
