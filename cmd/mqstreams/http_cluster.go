package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/mqstreams/mqstreams/log"
)

// clusterStatus is what the cluster status API asks of the cluster (cluster.Node's
// Status, JSON-encodable); nil when the server is not part of a cluster.
type clusterStatus interface {
	Status() any
}

// clusterAPI serves the cluster's state (/api/v1/cluster/status, behind `mqstreams
// cluster status`) and the records of this node's replica of a shard
// (/api/v1/cluster/replica/...), which the fault tests compare node by node. Both are
// for administrators.
type clusterAPI struct {
	log     *log.Log
	cluster clusterStatus
}

// maxReplicaRecords bounds one replica page; clients page on with next_offset.
const maxReplicaRecords = 10000

func (a clusterAPI) register(h *httpServer, guard *apiAuth) {
	h.Handle("GET /api/v1/cluster/status", guard.require(adminOnly, http.HandlerFunc(a.status)))
	h.Handle("GET /api/v1/cluster/replica/{stream}/{shard}", guard.require(adminOnly, http.HandlerFunc(a.replica)))
	a.registerMembers(h, guard)
}

func (a clusterAPI) status(w http.ResponseWriter, _ *http.Request) {
	if a.cluster == nil {
		apiError(w, http.StatusNotFound, "NOT_FOUND", "this server is not part of a cluster (no cluster section in its config)")
		return
	}
	writeJSON(w, http.StatusOK, a.cluster.Status())
}

// replicaRecord is one stored record as the replica API shows it; keys, values and
// header values are base64 (encoding/json's []byte).
type replicaRecord struct {
	Offset      int64          `json:"offset"`
	TimestampUS int64          `json:"timestamp_us"`
	Key         []byte         `json:"key"`
	Value       []byte         `json:"value"`
	Headers     []replicaHeadr `json:"headers,omitempty"`
}

type replicaHeadr struct {
	Key   string `json:"key"`
	Value []byte `json:"value"`
}

// replicaPage is a run of a shard's records in this node's log, with a digest of them:
// two replicas hold the same records exactly when their digests over the same range
// agree. The digest covers offsets, timestamps, keys, values and headers, not the
// stored batches: each replica merges small batches on its own (log/coalesce.go), so
// batch boundaries may differ while the records do not.
type replicaPage struct {
	Stream      string          `json:"stream"`
	Shard       int32           `json:"shard"`
	LogStart    int64           `json:"log_start"`
	HighMark    int64           `json:"high_watermark"`
	From        int64           `json:"from"`
	NextOffset  int64           `json:"next_offset"`
	SHA256      string          `json:"sha256"`
	Records     []replicaRecord `json:"records"`
	RecordCount int             `json:"record_count"`
}

func (a clusterAPI) replica(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("stream")
	st := a.log.Stream(name)
	if st == nil || st.Deleted() {
		apiError(w, http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("stream %q not found", name))
		return
	}
	shard, err := strconv.ParseInt(r.PathValue("shard"), 10, 32)
	if err != nil || shard < 0 || int32(shard) >= st.Shards() {
		apiError(w, http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("stream %q has no shard %q", name, r.PathValue("shard")))
		return
	}
	from := int64(0)
	if v := r.URL.Query().Get("from"); v != "" {
		if from, err = strconv.ParseInt(v, 10, 64); err != nil || from < 0 {
			apiError(w, http.StatusBadRequest, "BAD_REQUEST", fmt.Sprintf("from %q: want an offset ≥ 0", v))
			return
		}
	}
	page, err := readReplica(st, int32(shard), from, maxReplicaRecords)
	if err != nil {
		apiError(w, http.StatusInternalServerError, "INTERNAL_ERROR", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, page)
}

// readReplica reads up to limit records of a shard from offset from (or the log start,
// if later).
func readReplica(st *log.Stream, shard int32, from int64, limit int) (replicaPage, error) {
	start, hwm, err := st.Offsets(shard)
	if err != nil {
		return replicaPage{}, fmt.Errorf("offsets %s/%d: %w", st.Name(), shard, err)
	}
	page := replicaPage{Stream: st.Name(), Shard: shard, LogStart: start, HighMark: hwm, From: max(from, start), Records: []replicaRecord{}}
	h := sha256.New()
	var scratch []byte
	off := page.From
	for off < hwm && len(page.Records) < limit {
		bs, err := st.Read(shard, off, 1<<20)
		if err != nil {
			return replicaPage{}, fmt.Errorf("read %s/%d at %d: %w", st.Name(), shard, off, err)
		}
		if len(bs) == 0 {
			return replicaPage{}, errors.New("read below the high watermark returned nothing")
		}
		for _, b := range bs {
			recs, err := b.Records(off)
			if err != nil {
				return replicaPage{}, fmt.Errorf("decode %s/%d at %d: %w", st.Name(), shard, off, err)
			}
			for _, rec := range recs {
				if len(page.Records) == limit {
					break
				}
				rr := replicaRecord{Offset: rec.Offset, TimestampUS: rec.TimestampUS, Key: rec.Key, Value: rec.Value}
				for _, hd := range rec.Headers {
					rr.Headers = append(rr.Headers, replicaHeadr{Key: hd.Key, Value: hd.Value})
				}
				page.Records = append(page.Records, rr)
				scratch = appendRecordDigest(scratch[:0], &rr)
				h.Write(scratch)
				off = rec.Offset + 1
			}
			if len(page.Records) == limit {
				break
			}
		}
	}
	page.NextOffset = off
	page.RecordCount = len(page.Records)
	page.SHA256 = hex.EncodeToString(h.Sum(nil))
	return page, nil
}

// appendRecordDigest is a record's canonical form for the digest: every field with a
// length prefix, so no two different records encode alike.
func appendRecordDigest(b []byte, r *replicaRecord) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(r.Offset))
	b = binary.BigEndian.AppendUint64(b, uint64(r.TimestampUS))
	field := func(v []byte) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	field(r.Key)
	field(r.Value)
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Headers)))
	for _, hd := range r.Headers {
		field([]byte(hd.Key))
		field(hd.Value)
	}
	return b
}
