package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"
)

// clusterCmd is "mqstreams cluster ...": the cluster a running node belongs to, through
// its HTTP API.
type clusterCmd struct {
	Status      clusterStatusCmd      `cmd:"" help:"Show the cluster's nodes, the leader of every Raft group and each replica's lag."`
	AddNode     clusterAddNodeCmd     `cmd:"" name:"add-node" help:"Add a running node (started with join: true) to the cluster."`
	RemoveNode  clusterRemoveNodeCmd  `cmd:"" name:"remove-node" help:"Move a node's replicas to the others, then remove it from the cluster."`
	MoveReplica clusterMoveReplicaCmd `cmd:"" name:"move-replica" help:"Move a shard's replica from one node to another (the new one catches up, then the old one leaves)."`
}

type clusterStatusCmd struct{ apiTarget }

// clusterStatusView is the JSON of /api/v1/cluster/status (cluster.Node.Status).
type clusterStatusView struct {
	NodeID uint64 `json:"node_id"`
	State  string `json:"state"`
	Nodes  []struct {
		ID        uint64 `json:"id"`
		RaftAddr  string `json:"raft_addr"`
		KafkaAddr string `json:"kafka_addr"`
		MQTTAddr  string `json:"mqtt_addr"`
		HTTPAddr  string `json:"http_addr"`
		Reachable bool   `json:"reachable"`
	} `json:"nodes"`
	Groups []struct {
		Group    string `json:"group"`
		Leader   uint64 `json:"leader"`
		Term     uint64 `json:"term"`
		Commit   uint64 `json:"commit"`
		Applied  uint64 `json:"applied"`
		Error    string `json:"error"`
		Replicas []struct {
			Node  uint64 `json:"node"`
			Match uint64 `json:"match"`
			Lag   uint64 `json:"lag"`
			State string `json:"state"`
		} `json:"replicas"`
	} `json:"groups"`
}

// Run prints the status.
func (c clusterStatusCmd) Run(e env) error {
	var raw json.RawMessage
	if err := c.call(http.MethodGet, "/api/v1/cluster/status", nil, &raw); err != nil {
		return err
	}
	if c.Output == "json" {
		return printJSON(e, raw)
	}
	var st clusterStatusView
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("cluster status: %w", err)
	}
	fmt.Fprintf(e.stdout, "answered by node %d\n\n", st.NodeID)
	if st.State == "removed" {
		fmt.Fprintf(e.stdout, "node %d was REMOVED from the cluster: it holds no replicas and refuses writes; stop it\n\n", st.NodeID)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tRAFT\tKAFKA\tMQTT\tHTTP\tREACHABLE")
	for _, n := range st.Nodes {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%t\n", n.ID, n.RaftAddr, dash(n.KafkaAddr), dash(n.MQTTAddr), dash(n.HTTPAddr), n.Reachable)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "GROUP\tLEADER\tTERM\tCOMMIT\tAPPLIED\tREPLICAS (node:lag state)")
	for _, g := range st.Groups {
		var reps []string
		for _, r := range g.Replicas {
			reps = append(reps, fmt.Sprintf("%d:%d %s", r.Node, r.Lag, r.State))
		}
		leader := "none"
		if g.Leader != 0 {
			leader = fmt.Sprint(g.Leader)
		}
		r := strings.Join(reps, ", ")
		if g.Error != "" {
			r += "  ERROR: " + g.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\n", g.Group, leader, g.Term, g.Commit, g.Applied, r)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// Raft tracks replicas' progress on the leader only.
	fmt.Fprintln(e.stdout, "\nlag is the leader's view (entries a replica lacks); ask a group's leader for it")
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
