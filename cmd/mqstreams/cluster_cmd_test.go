package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/log"
)

// TestClusterReplicaAPI: the replica API returns a shard's records from an offset with
// a digest that changes with any record and pages on with next_offset.
func TestClusterReplicaAPI(t *testing.T) {
	s, err := startServer(testConfig(t, ""), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close(t.Context()) }()
	st := s.log.Stream("mqtt")
	for i := range 5 {
		if _, err := st.Append(0, []log.Record{{Key: []byte("k"), Value: []byte{byte('a' + i)}}}); err != nil {
			t.Fatal(err)
		}
	}
	addr := s.http.Addr().String()
	get := func(path string) replicaPage {
		t.Helper()
		code, body := httpGet(t, addr, path)
		if code != 200 {
			t.Fatalf("%s: %d %s", path, code, body)
		}
		var p replicaPage
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	all := get("/api/v1/cluster/replica/mqtt/0")
	if all.RecordCount != 5 || all.HighMark != 5 || all.NextOffset != 5 || string(all.Records[4].Value) != "e" {
		t.Fatalf("page %+v", all)
	}
	tail := get("/api/v1/cluster/replica/mqtt/0?from=3")
	if tail.RecordCount != 2 || tail.Records[0].Offset != 3 || tail.SHA256 == all.SHA256 {
		t.Fatalf("tail %+v", tail)
	}
	if again := get("/api/v1/cluster/replica/mqtt/0"); again.SHA256 != all.SHA256 {
		t.Fatal("digest of the same records differs")
	}
	for path, want := range map[string]int{
		"/api/v1/cluster/replica/nope/0":        404,
		"/api/v1/cluster/replica/mqtt/99":       404,
		"/api/v1/cluster/replica/mqtt/0?from=x": 400,
		"/api/v1/cluster/status":                404, // not a cluster
	} {
		if code, body := httpGet(t, addr, path); code != want {
			t.Errorf("%s: %d %s, want %d", path, code, body, want)
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"cluster", "status", "--server", "http://" + addr}, &out, &errOut); code == 0 || !strings.Contains(errOut.String(), "not part of a cluster") {
		t.Fatalf("cluster status alone: exit %d, %q %q", code, out.String(), errOut.String())
	}
}

// TestClusterStatusCommand renders a node's status (the JSON cluster.Node.Status gives)
// as tables.
func TestClusterStatusCommand(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/cluster/status", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"node_id":2,"nodes":[{"id":1,"raft_addr":"127.0.0.1:7001","kafka_addr":"127.0.0.1:9092","reachable":true},
			{"id":2,"raft_addr":"127.0.0.1:7002","reachable":false}],
			"groups":[{"group":"mqtt/0","leader":1,"term":3,"commit":40,"applied":40,
			"replicas":[{"node":1,"match":40,"lag":0,"state":"replicate"},{"node":2,"match":31,"lag":9,"state":"probe"}]},
			{"group":"catalog","leader":0,"error":"apply: disk full"}]}`))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	var out, errOut bytes.Buffer
	if code := run([]string{"cluster", "status", "--server", srv.URL}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"answered by node 2", "127.0.0.1:9092", "mqtt/0   1", "1:0 replicate, 2:9 probe", "catalog  none", "ERROR: apply: disk full"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
