package cluster

// A node a shard's replica moved away from (MoveReplica, RemoveNode) deletes the
// shard's records once the catalog change that drops it from the placement is applied:
// that change comes after the Raft configuration change removing it was committed
// (members.go), so a learner whose move stopped half-way keeps its data until the move
// is run again and completes. The records go in one write (the shard then starts empty
// at offset 0, as a replica that never held it) and the key ranges are compacted in
// the background so the disk space returns. A node that was down while the move
// completed, or got the catalog as a snapshot, does the same when it applies that
// catalog (sweepDropped).

// dropReplica stops this node's replica of a shard and deletes its records, then its
// Raft state and applied index (on the loop). Until that last write the applied index
// says the node held a replica: a crash in between is finished by sweepDropped.
func (n *Node) dropReplica(stream string, shard int32, gid uint64) {
	n.mu.Lock()
	g := n.groups[gid]
	delete(n.groups, gid)
	n.mu.Unlock()
	if g != nil {
		g.close()
	}
	n.dropShardData(stream, shard)
	n.stopShard(gid)
}

func (n *Node) dropShardData(stream string, shard int32) {
	st := n.l.Stream(stream)
	if st == nil {
		return
	}
	start, hwm, err := st.Offsets(shard)
	if err != nil || (start == 0 && hwm == 0) {
		return // nothing was ever stored here
	}
	if err := st.ResetShard(shard, 0, nil); err != nil {
		n.lg.Warn().Err(err).Str("stream", stream).Int32("shard", shard).Msg("delete the records of a replica moved away")
		return
	}
	n.lg.Info().Str("stream", stream).Int32("shard", shard).Int64("records", hwm-start).
		Msg("replica moved away from this node: its records are deleted")
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := st.CompactShardRange(shard); err != nil {
			n.lg.Debug().Err(err).Str("stream", stream).Int32("shard", shard).Msg("compact deleted replica")
		}
	}()
}

// sweepDropped drops every replica this node still has the applied index of but the
// catalog cs no longer places here (at start, and after a catalog snapshot). A shard
// this node never replicated is left alone.
func (n *Node) sweepDropped(cs *catalogState) {
	for _, name := range cs.streamNames() {
		for i, sh := range cs.Streams[name].Shards {
			if contains(sh.Replicas, n.Self()) {
				continue
			}
			if v, err := n.appliedEntry(sh.Group); err != nil || v == nil {
				continue
			}
			n.dropReplica(name, int32(i), sh.Group)
		}
	}
}

// stopDropped, after a catalog snapshot, stops the replicas this node runs that the
// snapshot's placement no longer gives it, and deletes the records of every shard it
// holds no replica of (on the loop).
func (n *Node) stopDropped(cs *catalogState) {
	n.mu.RLock()
	var gone []*group
	for _, g := range n.groups {
		if g.id == catalogGroup {
			continue
		}
		sp := cs.Streams[g.stream]
		if sp == nil || int(g.shard) >= len(sp.Shards) || !contains(sp.Shards[g.shard].Replicas, n.Self()) {
			gone = append(gone, g)
		}
	}
	n.mu.RUnlock()
	for _, g := range gone {
		if sp := cs.Streams[g.stream]; sp != nil {
			n.dropReplica(g.stream, g.shard, g.id)
		} else {
			n.stopShard(g.id)
		}
	}
	n.sweepDropped(cs)
}
