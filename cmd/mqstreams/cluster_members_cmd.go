package main

import (
	"fmt"
	"net/http"
	"strconv"
)

// clusterMoveReplicaCmd is "mqstreams cluster move-replica STREAM SHARD --from N --to M".
type clusterMoveReplicaCmd struct {
	apiTarget
	Stream string `arg:"" help:"Stream name."`
	Shard  int32  `arg:"" help:"Shard number."`
	From   uint64 `required:"" help:"Node id whose replica moves."`
	To     uint64 `required:"" help:"Node id that gets the replica (a cluster node without one)."`
}

// Run moves the replica and waits until it is done.
func (c clusterMoveReplicaCmd) Run(e env) error {
	req := moveReplicaRequest{Stream: c.Stream, Shard: c.Shard, From: c.From, To: c.To}
	if err := c.call(http.MethodPost, "/api/v1/cluster/move-replica", req, nil); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s/%d: replica moved from node %d to node %d\n", c.Stream, c.Shard, c.From, c.To)
	return nil
}

// clusterAddNodeCmd is "mqstreams cluster add-node ID --raft-addr HOST:PORT".
type clusterAddNodeCmd struct {
	apiTarget
	ID       uint64 `arg:"" help:"Id of the new node (1..65535), running with join: true in its cluster config."`
	RaftAddr string `required:"" name:"raft-addr" help:"Where the other nodes reach the new node (its raft_addr)."`
}

// Run adds the node and waits until it votes in the catalog group.
func (c clusterAddNodeCmd) Run(e env) error {
	if err := c.call(http.MethodPost, "/api/v1/cluster/nodes", addNodeRequest{ID: c.ID, RaftAddr: c.RaftAddr}, nil); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "node %d added; move replicas onto it with mqstreams cluster move-replica\n", c.ID)
	return nil
}

// clusterRemoveNodeCmd is "mqstreams cluster remove-node ID".
type clusterRemoveNodeCmd struct {
	apiTarget
	ID uint64 `arg:"" help:"Id of the node to remove (ask another node)."`
}

// Run moves the node's replicas off, removes it, and waits until done.
func (c clusterRemoveNodeCmd) Run(e env) error {
	if err := c.call(http.MethodDelete, "/api/v1/cluster/nodes/"+strconv.FormatUint(c.ID, 10), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "node %d removed; it can be stopped\n", c.ID)
	return nil
}
