package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mqstreams/mqstreams/cluster"
	"github.com/mqstreams/mqstreams/kafkawire"
	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mqtt"
)

// kafkaClusterIDFile is where kafkawire keeps the cluster id it reports
// (kafkawire/server.go): in a cluster every node must report the catalog's.
const kafkaClusterIDFile = "kafka-cluster-id"

// startCluster joins the cluster of the config's `cluster:` section (nothing without
// one): the node replicates the stream catalog into s.streams and the shards into
// s.log, and the catalog's changes go through it from now on. It does not wait for the
// other nodes: the listeners start, /readyz stays 503 until a quorum applied the
// config's streams (applyConfigStreams), and Kafka clients see partitions without a
// leader until then.
func (s *server) startCluster(cfg Config) error {
	s.started = make(chan struct{})
	if cfg.Cluster == nil {
		return nil
	}
	lg := s.lg.With().Str("component", "cluster").Logger()
	n, err := cluster.Open(*cfg.Cluster, cluster.Options{
		Log:        s.log,
		Logger:     lg,
		Streams:    s.streams,
		Durability: cfg.Durability,
	})
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	s.node = n
	n.SetStateMachine(kafkaTxnState{})
	s.streams.SetReplicator(n)
	s.http.SetHealth(clusterHealth(s.log, n))
	cid, err := clusterID(n, *cfg.Cluster, lg)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	path := filepath.Join(s.log.Dir(), kafkaClusterIDFile)
	if err := os.WriteFile(path, []byte(cid+"\n"), 0o644); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	lg.Info().Uint64("node_id", cfg.Cluster.NodeID).Str("raft_addr", cfg.Cluster.RaftAddr).Str("cluster_id", cid).
		Msg("joining the cluster; ready once a quorum of nodes applied the configured streams")
	return nil
}

// applyConfigStreams applies the config's streams: at once alone; in a cluster, where
// they go through the catalog group and so need a quorum, in the background (retried
// until they apply or the node closes). A cluster node is ready (its "ready" line,
// /readyz) once they are applied and its own addresses are in the catalog, so that
// clients asking any ready node find every ready node.
func (s *server) applyConfigStreams(cfg Config) error {
	if s.node == nil {
		return applyStreams(s.streams, cfg, s.lg)
	}
	s.clusterReady = make(chan struct{})
	lg := s.lg.With().Str("component", "cluster").Logger()
	wait := func(d time.Duration) bool {
		select {
		case <-s.node.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	go func() {
		for {
			err := applyStreams(s.streams, cfg, s.lg)
			if err == nil {
				break
			}
			if s.node.Removed() {
				return // removed from the cluster: it said so once (cluster/removed.go)
			}
			lg.Warn().Err(err).Msg("configured streams not applied yet (waiting for a quorum of nodes?); retrying")
			if !wait(time.Second) {
				return
			}
		}
		select {
		case <-s.started: // the listeners are bound and advertised
		case <-s.node.Done():
			return
		}
		for !s.node.Registered() {
			if !wait(20 * time.Millisecond) {
				return
			}
		}
		lg.Info().Msg("cluster quorum reached, configured streams applied, addresses registered")
		s.http.SetReady(true)
		close(s.clusterReady)
	}()
	return nil
}

// setReady ends start-up: ready now alone; in a cluster once applyConfigStreams says.
func (s *server) setReady() {
	close(s.started)
	if s.node == nil {
		s.http.SetReady(true)
	}
}

// awaitClusterReady waits until a cluster node is ready (at once alone), or ctx ends.
func (s *server) awaitClusterReady(ctx context.Context) bool {
	if s.clusterReady == nil {
		return true
	}
	select {
	case <-s.clusterReady:
		return true
	case <-ctx.Done():
		return false
	}
}

// advertiseCluster tells the other nodes where this node's listeners are, once bound.
func (s *server) advertiseCluster(cfg Config) {
	if s.node == nil {
		return
	}
	kafka := cfg.Kafka.AdvertisedAddr
	if kafka == "" {
		kafka = reachable(s.kafka.Addr())
	}
	s.node.SetAdvertise(cluster.Addrs{Kafka: kafka, MQTT: reachable(s.mqtt.Addr()), HTTP: reachable(s.http.Addr())})
}

// reachable is a listener's address as another host dials it: an unspecified host
// (":9092") becomes localhost, as kafkawire advertises it alone.
func reachable(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// The protocol servers' views of the node; nil interfaces alone.

func (s *server) writer() log.Writer {
	if s.node == nil {
		return nil
	}
	return s.node
}

// shardReader reads `$stream` replay shards: a node without a replica of a shard reads
// it from a node that has one.
func (s *server) shardReader() log.ShardReader {
	if s.node == nil {
		return nil
	}
	return s.node
}

func (s *server) offsetStore() kafkawire.OffsetStore {
	if s.node == nil {
		return nil
	}
	return s.node
}

func (s *server) kafkaCluster() kafkawire.Cluster {
	if s.node == nil {
		return nil
	}
	return kafkaCluster{s.node}
}

func (s *server) mqttPeers() mqtt.Peers {
	if s.node == nil {
		return nil
	}
	return mqttPeers{s.node}
}

func (s *server) clusterStatus() clusterStatus {
	if s.node == nil {
		return nil
	}
	return nodeStatus{s.node}
}

// handlePeers hands the MQTT face's messages from other nodes to the broker, and the
// commit markers this node writes as a partition leader to Kafka → MQTT delivery.
func (s *server) handlePeers() {
	if s.node != nil {
		s.node.Handle(cluster.KindMQTT, s.mqtt.HandlePeerMessage)
		if s.kafka != nil {
			s.node.SetMarkerHook(s.kafka.DeliverCommittedMarker)
		}
	}
}

// kafkaCluster is kafkawire.Cluster over a cluster node: ids are Kafka broker ids
// (node ids fit int32: cluster.Config checks), 0 (none) becomes -1.
type kafkaCluster struct{ n *cluster.Node }

func (k kafkaCluster) Self() int32 { return int32(k.n.Self()) }

// Brokers lists the live nodes (itself always; cluster.NodeInfo.Live: reached, or
// its link down for only a moment), as Kafka lists only live brokers: a client
// forgets a node it no longer finds in Metadata, and with it what it cached about that
// node. franz-go, for one, keeps a dead transaction coordinator (cached from
// FindCoordinator) until then, redialling it for AddPartitionsToTxn without end
// (compat-tests/cluster_txn_test.go, the coordinator SIGKILLed). A link that flaps
// does not drop the node: a request in flight to a node that vanishes from Metadata
// fails in franz-go with "unknown broker" instead of being retried.
func (k kafkaCluster) Brokers() []kafkawire.Broker {
	var out []kafkawire.Broker
	for _, ni := range k.n.Nodes() {
		if !ni.Live {
			continue
		}
		host, port, err := net.SplitHostPort(ni.Addrs.Kafka)
		if err != nil {
			continue // not registered yet
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			continue
		}
		out = append(out, kafkawire.Broker{ID: int32(ni.ID), Host: host, Port: int32(p)})
	}
	return out
}

func (k kafkaCluster) Controller() int32 { return kafkaID(k.n.Controller()) }

// listed tells whether Brokers lists a node: its Kafka address is known here and it
// is live.
func (k kafkaCluster) listed(id uint64) bool {
	for _, ni := range k.n.Nodes() {
		if ni.ID == id {
			return ni.Live && ni.Addrs.Kafka != ""
		}
	}
	return false
}

func (k kafkaCluster) Partition(stream string, shard int32) kafkawire.PartitionState {
	ps, ok := k.n.Partition(stream, shard)
	if !ok {
		return kafkawire.PartitionState{Leader: -1}
	}
	leader := kafkaID(ps.Leader)
	if leader != -1 && !k.listed(ps.Leader) {
		// A leader whose Kafka address this node does not know yet (its registration
		// is still on its way through the catalog), or one this node no longer reaches
		// (dead, its successor not elected yet): not in Brokers, so
		// LEADER_NOT_AVAILABLE until then.
		leader = -1
	}
	return kafkawire.PartitionState{Leader: leader, Replicas: kafkaIDs(ps.Replicas), ISR: kafkaIDs(ps.ISR)}
}

// Coordinator: groups spread by id; every transactional id coordinated by the catalog
// group's leader, which holds the replicated transaction state (kafkawire/txn_cluster.go).
func (k kafkaCluster) Coordinator(keyType int8, key string) int32 {
	if keyType == 1 {
		return kafkaID(k.n.Controller())
	}
	return kafkaID(k.n.Coordinator(key))
}

func kafkaID(id uint64) int32 {
	if id == 0 {
		return -1
	}
	return int32(id)
}

func kafkaIDs(ids []uint64) []int32 {
	out := make([]int32, len(ids))
	for i, id := range ids {
		out[i] = int32(id)
	}
	return out
}

// mqttPeers is mqtt.Peers over a cluster node's transport.
type mqttPeers struct{ n *cluster.Node }

func (p mqttPeers) Self() uint64 { return p.n.Self() }

func (p mqttPeers) Nodes() []uint64 {
	var out []uint64
	for _, ni := range p.n.Nodes() {
		if ni.ID != p.n.Self() {
			out = append(out, ni.ID)
		}
	}
	return out
}

func (p mqttPeers) Send(node uint64, msg []byte) error { return p.n.Send(node, cluster.KindMQTT, msg) }

// nodeStatus is the cluster status API's view of the node.
type nodeStatus struct{ n *cluster.Node }

func (s nodeStatus) Status() any { return s.n.Status() }

// clusterFlags are serve's cluster flags; given, they replace (or make) the config's
// cluster section's fields.
type clusterFlags struct {
	NodeID   uint64
	RaftAddr string
	Peers    string // id=host:port,id=host:port
}

func (f clusterFlags) apply(c *Config) error {
	if f.NodeID == 0 && f.RaftAddr == "" && f.Peers == "" {
		return nil
	}
	cc := cluster.Config{}
	if c.Cluster != nil {
		cc = *c.Cluster
	}
	if f.NodeID != 0 {
		cc.NodeID = f.NodeID
	}
	if f.RaftAddr != "" {
		cc.RaftAddr = f.RaftAddr
	}
	if f.Peers != "" {
		cc.Peers = nil
		for _, p := range strings.Split(f.Peers, ",") {
			id, addr, ok := strings.Cut(strings.TrimSpace(p), "=")
			n, err := strconv.ParseUint(id, 10, 64)
			if !ok || err != nil {
				return fmt.Errorf("flag --peers: %q is not id=host:port", p)
			}
			cc.Peers = append(cc.Peers, cluster.Peer{ID: n, RaftAddr: addr})
		}
	}
	if err := cc.Validate(); err != nil {
		return fmt.Errorf("flags --node-id/--raft-addr/--peers: %w", err)
	}
	c.Cluster = &cc
	return nil
}

// LeaderTerm and Settle make kafkaCluster a kafkawire.ProducerSync: idempotent
// producers' state is replicated with the records and read again by a new leader.
func (k kafkaCluster) LeaderTerm(stream string, shard int32) uint64 {
	return k.n.LeaderTerm(stream, shard)
}

func (k kafkaCluster) Settle(ctx context.Context, stream string, shard int32) (uint64, error) {
	return k.n.Settle(ctx, stream, shard)
}

var _ kafkawire.ProducerSync = kafkaCluster{}

// clusterHealth is /readyz's check on a cluster node: the log's, and not removed from
// the cluster (a removed node serves nothing: load balancers should stop sending to it).
func clusterHealth(l *log.Log, n *cluster.Node) func() (bool, string) {
	return func() (bool, string) {
		if n.Removed() {
			return false, fmt.Sprintf("removed from the cluster (node %d)", n.Self())
		}
		h := l.Health()
		return h.Writable, h.Reason
	}
}

// kafkaTxnState applies Kafka transaction commands replicated through the catalog.
type kafkaTxnState struct{}

func (kafkaTxnState) Apply(cmd []byte, st *cluster.StateView) ([]log.GroupOffsets, error) {
	return kafkawire.ApplyTxnState(cmd, st)
}

// The rest of kafkawire.TxnReplicator: transactions replicated by the node.

func (k kafkaCluster) CoordinatorTerm() uint64 { return k.n.CoordinatorTerm() }

func (k kafkaCluster) ProposeState(ctx context.Context, cmd []byte) error {
	return k.n.ProposeState(ctx, cmd)
}

func (k kafkaCluster) SyncState(ctx context.Context) error { return k.n.SyncState(ctx) }

func (k kafkaCluster) StateGet(key string) []byte { return k.n.StateGet(key) }

func (k kafkaCluster) StateScan(prefix string, f func(string, []byte)) { k.n.StateScan(prefix, f) }

func (k kafkaCluster) AppendTxn(ctx context.Context, stream string, shard int32, txn log.Txn, recs []log.Record, ops []log.EntryOp, done func(log.AppendResult, error)) {
	k.n.AppendTxn(ctx, stream, shard, txn, recs, ops, done)
}

func (k kafkaCluster) WriteMarker(ctx context.Context, stream string, shard int32, pid int64, epoch int16, commit bool, coordEpoch int32, done func(error)) {
	k.n.WriteMarker(ctx, stream, shard, pid, epoch, commit, coordEpoch, func(_ cluster.MarkerResult, err error) { done(err) })
}

var _ kafkawire.TxnReplicator = kafkaCluster{}
