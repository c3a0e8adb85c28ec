package mapping

import (
	"bytes"
	"testing"
)

// TestKeyOfMatchesEval: a key taken from the record's headers is the key Eval computes,
// for every expression kind and for topics with empty, missing and last levels.
func TestKeyOfMatchesEval(t *testing.T) {
	exprs := []string{"clientid", "topic", "username", "topic-level:1", "topic-level:2", "topic-level:3",
		"user-property:k", "json:a", "concat(topic-level:1,'-',clientid)", "none"}
	msgs := []Message{
		{Topic: "plant/7/temp", ClientID: "dev-7", Username: "u"},
		{Topic: "plant//temp", ClientID: "c"},
		{Topic: "plant/", ClientID: "c"},
		{Topic: "/x", ClientID: "", Username: ""},
		{Topic: "a", ClientID: "c", Payload: []byte(`{"a":"b"}`), UserProperties: []UserProperty{{"k", "v"}, {"mqtt.client_id", "spoof"}}},
	}
	for _, src := range exprs {
		expr, err := ParseKey(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			rec := ToRecord(&m, nil)
			want, wantOK := expr.Eval(&m)
			got, ok := keyOf(expr, &m, rec.Headers)
			if ok != wantOK || !bytes.Equal(got, want) {
				t.Errorf("%s of %+v: keyOf %q %v, Eval %q %v", src, m, got, ok, want, wantOK)
			}
			if aliased := expr.kind != keyConcat && expr.kind != keyJSON && expr.kind != keyUserProperty; aliased && len(got) != cap(got) {
				t.Errorf("%s of %+v: key %q has room to grow into the next header (cap %d)", src, m, got, cap(got))
			}
		}
	}
}

// TestRouteAllocations: routing an MQTT 3.1.1 publish to a stream keyed by client id
// allocates the record's header values and header slice only; the key is a slice of the
// client id header (keyOf), not a third allocation.
func TestRouteAllocations(t *testing.T) {
	r := NewRouter()
	mustSet(t, r, Definition{Name: "plant", Filters: []string{"plant/#"}, Shards: 4})
	m := Message{Topic: "plant/line-3/sensor-042", Payload: []byte(`{"t":21.5}`), QoS: 1, ClientID: "gw-042"}
	dst := make([]Target, 0, 4)
	allocs := testing.AllocsPerRun(1000, func() {
		dst = r.Route(&m, dst[:0])
	})
	if len(dst) != 1 || string(dst[0].Record.Key) != "gw-042" {
		t.Fatalf("routed %+v", dst)
	}
	if allocs > 2 {
		t.Fatalf("%.1f allocations per routed publish, want 2 (header values, header slice)", allocs)
	}
}
