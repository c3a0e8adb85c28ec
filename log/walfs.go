package log

// This file is the adapter to Pebble's WAL file handling (cockroachdb/pebble/v2 v2.1.7).
// It relies on three behaviours of that version, checked in wal/standalone_manager.go,
// vfs/syncing_file.go and record/log_writer.go:
//   - every WAL file is opened through Options.FS Create or ReuseForWrite with the
//     disk-write category "pebble-wal", and is only ever synced through the File it
//     returned (Sync, SyncData or SyncTo, possibly via vfs.syncingFile);
//   - a batch applied with DB.ApplyNoSyncWait and pebble.Sync (append.go commitAsync;
//     marked experimental in Pebble) wakes the WAL's flush loop at once, and its
//     Batch.SyncWait returns only after that loop has written every earlier record to
//     the file (write(2)) and then called Sync;
//   - a WAL file is closed (after a final Sync) when Pebble switches to a new one.
// With those, the log decides itself when the WAL reaches the disk: Pebble's own WAL
// syncs only mark the file dirty, and walFS.fsync (called by the syncer for a `fsync`
// group, by the sync_interval ticker, and on close) does the real fsync. Data written
// before an fsync call starts is covered by it, which is all the syncer needs.

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// walCategory is the disk-write category Pebble opens its WAL files with.
const walCategory vfs.DiskWriteCategory = "pebble-wal"

// walFS wraps Pebble's file system so WAL syncs are deferred to the log.
type walFS struct {
	vfs.FS
	observe func(time.Duration)
	// fatal records a WAL failure Pebble would panic on with its locks half released
	// (failStop, pebble_fatal.go).
	fatal func(err error, parked bool)

	mu    sync.Mutex
	files map[*walFile]struct{}
}

func newWALFS(fs vfs.FS, observe func(time.Duration)) *walFS {
	return &walFS{FS: fs, observe: observe, files: map[*walFile]struct{}{}}
}

func (w *walFS) wrap(f vfs.File, err error, category vfs.DiskWriteCategory) (vfs.File, error) {
	if err != nil && category == walCategory {
		w.failStop(err)
	}
	if err != nil || category != walCategory {
		return f, err
	}
	wf := &walFile{File: f, fs: w}
	w.mu.Lock()
	w.files[wf] = struct{}{}
	w.mu.Unlock()
	return wf, nil
}

// Create implements vfs.FS.
func (w *walFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := w.FS.Create(name, category)
	return w.wrap(f, err, category)
}

// ReuseForWrite implements vfs.FS (recycled WAL files).
func (w *walFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := w.FS.ReuseForWrite(oldname, newname, category)
	return w.wrap(f, err, category)
}

// fsync makes everything written to any WAL file so far durable. It reports whether
// there was anything to sync.
func (w *walFS) fsync() (bool, error) {
	w.mu.Lock()
	files := make([]*walFile, 0, len(w.files))
	for f := range w.files {
		files = append(files, f)
	}
	w.mu.Unlock()
	synced := false
	for _, f := range files {
		did, err := f.fsync()
		if err != nil {
			return synced, err
		}
		synced = synced || did
	}
	return synced, nil
}

// walFile is one WAL file whose syncs the log controls.
type walFile struct {
	vfs.File
	fs     *walFS
	dirty  atomic.Bool // written since the last real fsync
	syncMu sync.Mutex  // one real fsync at a time per file
	failed atomic.Bool // a write failed: Pebble's close of this WAL will fail
}

// Write implements vfs.File.
func (f *walFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	f.dirty.Store(true)
	if err != nil {
		f.failed.Store(true)
	}
	return n, err
}

// WriteAt implements vfs.File.
func (f *walFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	f.dirty.Store(true)
	if err != nil {
		f.failed.Store(true)
	}
	return n, err
}

// Sync defers Pebble's WAL sync: the data is in the operating system; the log fsyncs.
func (f *walFile) Sync() error { return nil }

// SyncData implements vfs.File like Sync.
func (f *walFile) SyncData() error { return nil }

// SyncTo implements vfs.File like Sync; fullSync false tells Pebble nothing was synced.
func (f *walFile) SyncTo(int64) (bool, error) { return false, nil }

// Close fsyncs what is left unsynced: Pebble closes a WAL when it switches to the next.
func (f *walFile) Close() error {
	_, err := f.fsync()
	f.fs.mu.Lock()
	delete(f.fs.files, f)
	f.fs.mu.Unlock()
	if cerr := f.File.Close(); err == nil {
		err = cerr
	}
	if err == nil && f.failed.Load() {
		err = errWALWriteFailed
	}
	if err != nil {
		f.fs.failStop(err)
	}
	return err
}

func (f *walFile) fsync() (bool, error) {
	f.syncMu.Lock()
	defer f.syncMu.Unlock()
	if !f.dirty.Swap(false) {
		return false, nil
	}
	start := time.Now()
	if err := f.File.Sync(); err != nil {
		f.dirty.Store(true)
		return false, err
	}
	if f.fs.observe != nil {
		f.fs.observe(time.Since(start))
	}
	return true, nil
}
