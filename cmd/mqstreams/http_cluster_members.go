package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/cluster"
)

// clusterMembers is what the membership API asks of the cluster (cluster.Node).
type clusterMembers interface {
	MoveReplica(ctx context.Context, stream string, shard int32, from, to uint64) error
}

func (s nodeStatus) MoveReplica(ctx context.Context, stream string, shard int32, from, to uint64) error {
	return s.n.MoveReplica(ctx, stream, shard, from, to)
}

// moveReplicaRequest is the body of POST /api/v1/cluster/move-replica.
type moveReplicaRequest struct {
	Stream string `json:"stream"`
	Shard  int32  `json:"shard"`
	From   uint64 `json:"from"`
	To     uint64 `json:"to"`
}

// moveReplicaTimeout bounds one move: the new replica copies the shard first.
const moveReplicaTimeout = 10 * time.Minute

func (a clusterAPI) registerMembers(h *httpServer, guard *apiAuth) {
	h.Handle("POST /api/v1/cluster/move-replica", guard.require(adminOnly, http.HandlerFunc(a.moveReplica)))
}

// moveReplica moves one shard replica and answers once the catalog has the new
// placement (the new replica caught up and voting, the old one removed).
func (a clusterAPI) moveReplica(w http.ResponseWriter, r *http.Request) {
	m, ok := a.cluster.(clusterMembers)
	if !ok {
		apiError(w, http.StatusNotFound, "NOT_FOUND", "this server is not part of a cluster (no cluster section in its config)")
		return
	}
	var req moveReplicaRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
		return
	}
	if req.Stream == "" || req.From == 0 || req.To == 0 {
		apiError(w, http.StatusBadRequest, "BAD_REQUEST", "stream, from and to are required")
		return
	}
	// Not r.Context(): a client that stops waiting does not stop a move half way.
	ctx, cancel := context.WithTimeout(context.Background(), moveReplicaTimeout)
	defer cancel()
	if err := m.MoveReplica(ctx, req.Stream, req.Shard, req.From, req.To); err != nil {
		status, code := http.StatusConflict, "MOVE_FAILED"
		if errors.Is(err, cluster.ErrUnknownShard) {
			status, code = http.StatusNotFound, "NOT_FOUND"
		}
		apiError(w, status, code, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, req)
}

// clusterID is the Kafka cluster id this node reports, known before kafkawire starts:
// the catalog's once this node holds it (a restart, whatever the config's peers are
// now); else derived from the founding nodes' ids, which every founding node knows; a
// node joining a running cluster waits until it is added and has the catalog.
func clusterID(n *cluster.Node, cfg cluster.Config, lg zerolog.Logger) (string, error) {
	if id := n.KnownClusterID(); id != "" {
		return id, nil
	}
	if !cfg.Join {
		return cfg.ClusterID(), nil
	}
	lg.Info().Uint64("node_id", cfg.NodeID).Msg("waiting to be added to the cluster (mqstreams cluster add-node on one of its nodes)")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-n.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	return n.ClusterID(ctx)
}
