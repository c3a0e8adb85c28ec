package main

import (
	"fmt"
	"net/http"
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
