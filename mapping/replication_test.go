package mapping

import (
	"strings"
	"testing"

	"github.com/mqstreams/mqstreams/conf"
)

func TestReplicationFactor(t *testing.T) {
	tests := []struct {
		src     string
		want    int32
		wantErr string
	}{
		{"name: s\nfilter: a/#\n", 0, ""},
		{"name: s\nfilter: a/#\nreplication_factor: 3\n", 3, ""},
		{"name: s\nfilter: a/#\nreplication_factor: 0\n", 0, "replication_factor"},
		{"name: s\nfilter: a/#\nreplication_factor: 8\n", 0, "replication_factor"},
	}
	for _, tc := range tests {
		var d Definition
		err := conf.Decode("s.yaml", []byte(tc.src), &d)
		if err == nil {
			err = d.Validate()
		}
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want one naming %s", tc.src, err, tc.wantErr)
			}
			continue
		}
		if err != nil || d.ReplicationFactor != tc.want {
			t.Errorf("%q: %d, %v; want %d", tc.src, d.ReplicationFactor, err, tc.want)
			continue
		}
		// It survives the log's stored spec.
		back, err := DefinitionFromSpec(d.Spec())
		if err != nil || back.ReplicationFactor != tc.want {
			t.Errorf("%q: from spec %d, %v", tc.src, back.ReplicationFactor, err)
		}
	}
}
