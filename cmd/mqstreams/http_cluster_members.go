package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/cluster"
)

// clusterMembers is what the membership API asks of the cluster (cluster.Node).
type clusterMembers interface {
	MoveReplica(ctx context.Context, stream string, shard int32, from, to uint64) error
	AddNode(ctx context.Context, id uint64, raftAddr string) error
	RemoveNode(ctx context.Context, id uint64) error
}

func (s nodeStatus) MoveReplica(ctx context.Context, stream string, shard int32, from, to uint64) error {
	return s.n.MoveReplica(ctx, stream, shard, from, to)
}

func (s nodeStatus) AddNode(ctx context.Context, id uint64, raftAddr string) error {
	return s.n.AddNode(ctx, id, raftAddr)
}

func (s nodeStatus) RemoveNode(ctx context.Context, id uint64) error {
	return s.n.RemoveNode(ctx, id)
}

// addNodeRequest is the body of POST /api/v1/cluster/nodes.
type addNodeRequest struct {
	ID       uint64 `json:"id"`
	RaftAddr string `json:"raft_addr"`
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
	h.Handle("POST /api/v1/cluster/nodes", guard.require(adminOnly, http.HandlerFunc(a.addNode)))
	h.Handle("DELETE /api/v1/cluster/nodes/{id}", guard.require(adminOnly, http.HandlerFunc(a.removeNode)))
}

func (a clusterAPI) members(w http.ResponseWriter) clusterMembers {
	m, ok := a.cluster.(clusterMembers)
	if !ok {
		apiError(w, http.StatusNotFound, "NOT_FOUND", "this server is not part of a cluster (no cluster section in its config)")
	}
	return m
}

// addNode adds a running node (started with join: true) to the cluster; answers once
// it votes in the catalog group.
func (a clusterAPI) addNode(w http.ResponseWriter, r *http.Request) {
	m := a.members(w)
	if m == nil {
		return
	}
	var req addNodeRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
		return
	}
	if req.ID == 0 || req.RaftAddr == "" {
		apiError(w, http.StatusBadRequest, "BAD_REQUEST", "id and raft_addr are required")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), moveReplicaTimeout)
	defer cancel()
	if err := m.AddNode(ctx, req.ID, req.RaftAddr); err != nil {
		apiError(w, http.StatusConflict, "ADD_FAILED", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, req)
}

// removeNode moves every replica off a node, then removes it from the cluster.
func (a clusterAPI) removeNode(w http.ResponseWriter, r *http.Request) {
	m := a.members(w)
	if m == nil {
		return
	}
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		apiError(w, http.StatusBadRequest, "BAD_REQUEST", "node id must be a positive integer")
		return
	}
	// A node's whole share of the data may move: no client-side deadline applies.
	ctx, cancel := context.WithTimeout(context.Background(), 6*moveReplicaTimeout)
	defer cancel()
	if err := m.RemoveNode(ctx, id); err != nil {
		apiError(w, http.StatusConflict, "REMOVE_FAILED", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]uint64{"id": id})
}

// moveReplica moves one shard replica and answers once the catalog has the new
// placement (the new replica caught up and voting, the old one removed).
func (a clusterAPI) moveReplica(w http.ResponseWriter, r *http.Request) {
	m := a.members(w)
	if m == nil {
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
