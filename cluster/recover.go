package cluster

import (
	"time"
)

// A replica that could not apply an entry (a full disk, most often) stops applying its
// group rather than skip the entry; one whose Raft write failed stops taking part at
// all, because raft has handed that state out already. Both come back the way a
// restart would bring them: once the log is writable again, the groups are reopened
// from what Pebble holds (Raft log, hard state, applied index) and raft replays the
// entries after the applied index. recoverEvery paces the attempts.
const recoverEvery = 2 * time.Second

// recover reopens failed groups, or every group after a failed Raft write (on the
// Raft loop).
func (n *Node) recover() {
	if time.Since(n.lastRecover) < recoverEvery {
		return
	}
	var failed []*group
	n.mu.RLock()
	for _, g := range n.groups {
		if n.storageFailed.Load() || g.failed.Load() != nil {
			failed = append(failed, g)
		}
	}
	n.mu.RUnlock()
	if len(failed) == 0 {
		return
	}
	n.lastRecover = time.Now()
	if h := n.l.Health(); !h.Writable {
		n.lg.Warn().Str("reason", h.Reason).Int("groups", len(failed)).Msg("replicas wait for the log to be writable again")
		return
	}
	// Every Raft write handed out before is done (or dropped after the failure):
	// the reopened replicas read the final state, and no older write follows.
	n.persist.drain()
	for _, g := range failed {
		if err := n.reopen(g); err != nil {
			n.lg.Error().Err(err).Uint64("group", g.id).Msg("reopen replica")
			return
		}
	}
	n.storageFailed.Store(false)
	n.lg.Info().Int("groups", len(failed)).Msg("replicas reopened from their stored Raft state")
}

// reopen replaces a group's replica with one loaded from Pebble.
func (n *Node) reopen(g *group) error {
	n.mu.Lock()
	delete(n.groups, g.id)
	n.mu.Unlock()
	pending := g.pending
	g.close()
	if g.id == catalogGroup {
		cs, err := loadCatalog(n.l)
		if err != nil {
			return err
		}
		ng, err := n.openGroup(catalogGroup, "", 0, n.catalogVoters(), cs.Applied)
		if err != nil {
			return err
		}
		n.mu.Lock()
		n.cat, n.groups[catalogGroup] = cs, ng
		n.mu.Unlock()
		ng.setApplied(cs.Applied, 0)
		return nil
	}
	sp, err := n.placement(g.stream, g.shard)
	if err != nil {
		return nil // the stream is gone: nothing to reopen
	}
	ng, err := n.startShard(g.stream, g.shard, sp)
	if err != nil {
		return err
	}
	ng.pending = pending
	return nil
}
