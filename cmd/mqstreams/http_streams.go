package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"

	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/auth"
	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
)

// emqxName is EMQX's rule for stream names on its REST API.
var emqxName = regexp.MustCompile(`^[0-9a-zA-Z][-.0-9a-zA-Z_]*$`)

// streamsAPI serves EMQX's message stream API and our per-shard stats, all through the
// stream catalog: GETs show the streams the caller may read or administer, changes need
// admin on the stream.
type streamsAPI struct {
	cat *mapping.Catalog
	lg  zerolog.Logger
}

func (a streamsAPI) register(h *httpServer, guard *apiAuth) {
	const base = "/api/v5/message_streams/streams"
	h.Handle("GET "+base, guard.require(authenticated, http.HandlerFunc(a.list)))
	h.Handle("POST "+base, guard.require(authenticated, http.HandlerFunc(a.create)))
	h.Handle("GET "+base+"/{name}", guard.require(authenticated, http.HandlerFunc(a.get)))
	h.Handle("PUT "+base+"/{name}", guard.require(authenticated, http.HandlerFunc(a.update)))
	h.Handle("DELETE "+base+"/{name}", guard.require(authenticated, http.HandlerFunc(a.delete)))
	h.Handle("GET /api/v1/streams/{name}/stats", guard.require(authenticated, http.HandlerFunc(a.stats)))
}

// mayDescribe: reading or administering a stream lets one see its definition.
func mayDescribe(p auth.Principal, stream string) bool {
	return p.CanStream(stream, auth.OpRead) || p.CanStream(stream, auth.OpAdmin)
}

func (a streamsAPI) list(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	out := []mapping.Definition{}
	for _, d := range a.cat.Definitions() {
		if mayDescribe(p, d.Name) {
			out = append(out, d)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": out, "meta": map[string]any{"count": len(out), "hasnext": false}})
}

// visible returns the named stream's definition, or answers 404 when it does not exist
// or the caller may not see it (so existence does not leak).
func (a streamsAPI) visible(w http.ResponseWriter, r *http.Request) (mapping.Definition, bool) {
	name := r.PathValue("name")
	d, ok := a.cat.Definition(name)
	if !ok || !mayDescribe(principalOf(r), name) {
		apiError(w, http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("stream %q not found", name))
		return mapping.Definition{}, false
	}
	return d, true
}

func (a streamsAPI) get(w http.ResponseWriter, r *http.Request) {
	if d, ok := a.visible(w, r); ok {
		writeJSON(w, http.StatusOK, d)
	}
}

// mayAdmin answers 403 unless the caller holds admin on the stream.
func mayAdmin(w http.ResponseWriter, r *http.Request, stream string) bool {
	if !principalOf(r).CanStream(stream, auth.OpAdmin) {
		apiError(w, http.StatusForbidden, "FORBIDDEN", fmt.Sprintf("changing stream %q needs admin on it", stream))
		return false
	}
	return true
}

func (a streamsAPI) create(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var d mapping.Definition
	if err := json.Unmarshal(body, &d); err != nil {
		apiError(w, http.StatusBadRequest, "BAD_REQUEST", jsonReason(err))
		return
	}
	if !emqxName.MatchString(d.Name) || len(d.Name) > 249 {
		apiError(w, http.StatusBadRequest, "BAD_REQUEST", fmt.Sprintf("name: %q is not a stream name: 1-249 of A-Z a-z 0-9 - . _, starting with a letter or digit", d.Name))
		return
	}
	if !mayAdmin(w, r, d.Name) {
		return
	}
	d, err := a.cat.Create(d, true)
	if err != nil {
		catalogAPIError(w, err)
		return
	}
	a.lg.Info().Str("stream", d.Name).Str("user", principalOf(r).Name()).Msg("stream created over HTTP")
	writeJSON(w, http.StatusCreated, d)
}

// update changes the fields the body gives; the others keep their values. EMQX's
// scripts send whole definitions, which this treats the same as a replacement.
func (a streamsAPI) update(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	// Admin first: a refusal says nothing of whether the stream exists.
	if !mayAdmin(w, r, name) {
		return
	}
	if _, ok := a.visible(w, r); !ok {
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	if !json.Valid(body) {
		var v any
		apiError(w, http.StatusBadRequest, "BAD_REQUEST", jsonReason(json.Unmarshal(body, &v)))
		return
	}
	d, err := a.cat.Update(name, func(cur mapping.Definition) (mapping.Definition, error) {
		d, err := cur.UpdateJSON(body)
		if err != nil {
			return cur, mapping.Invalid(err)
		}
		if d.Name != name {
			return cur, mapping.Invalidf("name: %q differs from the path's %q (streams cannot be renamed)", d.Name, name)
		}
		// The REST API, as EMQX, wants a topic filter, except on a stream that has
		// none (created through Kafka) and keeps none.
		check := d.Validate
		if len(cur.Filters) == 0 && len(d.Filters) == 0 {
			check = d.ValidateKafkaOnly
		}
		if err := check(); err != nil {
			return cur, mapping.Invalid(err)
		}
		return d, nil
	})
	if err != nil {
		catalogAPIError(w, err)
		return
	}
	a.lg.Info().Str("stream", name).Str("user", principalOf(r).Name()).Msg("stream altered over HTTP")
	writeJSON(w, http.StatusOK, d)
}

func (a streamsAPI) delete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !mayAdmin(w, r, name) {
		return
	}
	if _, ok := a.visible(w, r); !ok {
		return
	}
	if err := a.cat.Delete(name); err != nil {
		catalogAPIError(w, err)
		return
	}
	a.lg.Info().Str("stream", name).Str("user", principalOf(r).Name()).Msg("stream deleted over HTTP")
	w.WriteHeader(http.StatusNoContent)
}

// shardStats is one shard as GET /api/v1/streams/{name}/stats shows it.
type shardStats struct {
	Shard         int32  `json:"shard"`
	LogStart      int64  `json:"log_start"`
	HighWatermark int64  `json:"high_watermark"`
	Bytes         int64  `json:"bytes"`
	Records       int64  `json:"records"`
	OldestUS      *int64 `json:"oldest_timestamp_us"`
	NewestUS      *int64 `json:"newest_timestamp_us"`
}

func (a streamsAPI) stats(w http.ResponseWriter, r *http.Request) {
	d, ok := a.visible(w, r)
	if !ok {
		return
	}
	st := a.cat.Stream(d.Name)
	if st == nil {
		apiError(w, http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("stream %q not found", d.Name))
		return
	}
	out := []shardStats{}
	var total shardStats
	for i := int32(0); i < st.Shards(); i++ {
		s, err := oneShardStats(st, i)
		if err != nil {
			apiError(w, http.StatusNotFound, "NOT_FOUND", err.Error())
			return
		}
		out = append(out, s)
		total.Bytes += s.Bytes
		total.Records += s.Records
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": d.Name, "shards": out, "bytes": total.Bytes, "records": total.Records})
}

// oneShardStats reads one shard's offsets, size and oldest and newest append times.
// Records counts the offsets in the log (a last-value stream may hold fewer).
func oneShardStats(st *log.Stream, shard int32) (shardStats, error) {
	start, hwm, err := st.Offsets(shard)
	if err != nil {
		return shardStats{}, err
	}
	s := shardStats{Shard: shard, LogStart: start, HighWatermark: hwm, Bytes: st.Size(shard), Records: hwm - start}
	if hwm > start {
		if _, ts, err := st.OffsetForTime(shard, 0); err == nil && ts >= 0 {
			s.OldestUS = &ts
		}
		if _, ts, err := st.MaxTimestamp(shard); err == nil && ts >= 0 {
			s.NewestUS = &ts
		}
	}
	return s, nil
}

// readBody reads a bounded JSON body; it answers the error itself.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAPIBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			apiError(w, http.StatusRequestEntityTooLarge, "BAD_REQUEST", "request body over 1 MiB")
			return nil, false
		}
		apiError(w, http.StatusBadRequest, "BAD_REQUEST", "read body: "+err.Error())
		return nil, false
	}
	if t := bytes.TrimSpace(body); len(t) == 0 || t[0] != '{' {
		apiError(w, http.StatusBadRequest, "BAD_REQUEST", "the body must be a JSON object")
		return nil, false
	}
	return body, true
}

// jsonReason words a JSON decoding error for the API's message.
func jsonReason(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at byte %d: %v", se.Offset, err)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("%s: want %s, not %s", te.Field, te.Type, te.Value)
	}
	return err.Error()
}

// catalogAPIError answers a catalog error with EMQX's status and code.
func catalogAPIError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, mapping.ErrStreamExists):
		apiError(w, http.StatusConflict, "ALREADY_EXISTS", err.Error())
	case errors.Is(err, mapping.ErrUnknownStream):
		apiError(w, http.StatusNotFound, "NOT_FOUND", err.Error())
	case errors.Is(err, mapping.ErrInvalid):
		apiError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
	default:
		apiError(w, http.StatusInternalServerError, "INTERNAL_ERROR", err.Error())
	}
}
