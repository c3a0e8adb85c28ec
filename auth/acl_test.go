package auth

import (
	"fmt"
	"testing"
)

func TestFilterCovers(t *testing.T) {
	tests := []struct {
		granted []string
		req     string
		want    bool
	}{
		{[]string{"plant/#"}, "plant/a/b", true},
		{[]string{"plant/#"}, "plant", true},
		{[]string{"plant/#"}, "plant/+/x", true},
		{[]string{"plant/#"}, "plant/#", true},
		{[]string{"plant/#"}, "other/a", false},
		{[]string{"plant/+"}, "plant/a", true},
		{[]string{"plant/+"}, "plant/a/b", false},
		{[]string{"plant/+"}, "plant/#", false},
		{[]string{"plant/+"}, "plant/+", true},
		{[]string{"plant/a"}, "plant/+", false},
		{[]string{"#"}, "anything/at/all", true},
		{[]string{"#"}, "$SYS/broker", false},
		{[]string{"#"}, "$stream/telemetry", false},
		{[]string{"+/x"}, "$SYS/x", false},
		{[]string{"$SYS/#"}, "$SYS/broker/load", true},
		{[]string{"a/+/c", "a/b/#"}, "a/b/c/d", true},
		{[]string{"a/+/c"}, "a/b/d", false},
		{[]string{"a/+/b"}, "a//b", true},
		{[]string{"a/+"}, "a/", true},
		{[]string{"a/+"}, "a", false},
		{[]string{"a"}, "a/", false},
		{[]string{"a"}, "a/b", false},
		{[]string{"a/b"}, "a", false},
		{[]string{"+"}, "a", true},
		{[]string{"+/#"}, "$x/y", false},
		{[]string{"$SYS/+"}, "$SYS/x", true},
		{[]string{"a/#"}, "a/", true},
		{nil, "a", false},
	}
	for _, tt := range tests {
		n := &filterNode{}
		for _, g := range tt.granted {
			n.insert(g)
		}
		if got := n.covers(tt.req); got != tt.want {
			t.Errorf("%v covers %q = %v, want %v", tt.granted, tt.req, got, tt.want)
		}
	}
}

func TestRuleValidate(t *testing.T) {
	tests := []struct {
		r  Rule
		ok bool
	}{
		{Rule{Resource: ResTopic, Name: "a/#", Ops: OpPublish | OpSubscribe}, true},
		{Rule{Resource: ResTopic, Name: "a/#/b", Ops: OpPublish}, false},
		{Rule{Resource: ResTopic, Name: "a/x+", Ops: OpPublish}, false},
		{Rule{Resource: ResTopic, Name: "a", Ops: OpRead}, false},
		{Rule{Resource: ResStream, Name: "t", Ops: OpRead | OpWrite | OpAdmin}, true},
		{Rule{Resource: ResStream, Name: "t", Ops: OpPublish}, false},
		{Rule{Resource: ResStream, Name: "t", Ops: 0}, false},
		{Rule{Resource: ResGroup, Name: "etl-", Prefix: true, Ops: OpRead}, true},
		{Rule{Resource: ResGroup, Name: "etl-", Prefix: true, Ops: OpWrite}, false},
	}
	for _, tt := range tests {
		if err := tt.r.Validate(); (err == nil) != tt.ok {
			t.Errorf("%+v: err %v, want ok=%v", tt.r, err, tt.ok)
		}
	}
}

func TestParseOp(t *testing.T) {
	for _, s := range []string{"publish", "subscribe", "read", "write", "admin"} {
		op, err := ParseOp(s)
		if err != nil || op.String() != s {
			t.Errorf("ParseOp(%q) = %v, %v", s, op, err)
		}
	}
	if _, err := ParseOp("delete"); err == nil {
		t.Error("unknown op accepted")
	}
}

// BenchmarkPublishCheck1000Rules is the cost of an ACL check on the publish path for a
// user with 1,000 topic rules.
func BenchmarkPublishCheck1000Rules(b *testing.B) {
	var rules []Rule
	for i := range 1000 {
		rules = append(rules, Rule{Resource: ResTopic, Name: fmt.Sprintf("site/%d/+/telemetry/#", i), Ops: OpPublish})
	}
	c, _ := HashPassword("pw", 4)
	s, err := NewStore(Options{Users: []User{{Name: "u", Credentials: c, Rules: rules}}})
	if err != nil {
		b.Fatal(err)
	}
	p, _ := s.Lookup("u")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !p.CanPublish("site/777/dev42/telemetry/temp") {
			b.Fatal("denied")
		}
	}
}

func TestRuleSpecRoundTrip(t *testing.T) {
	tests := []struct {
		flag string
		want Rule
	}{
		{"topic:plant/#:publish,subscribe", Rule{Resource: ResTopic, Name: "plant/#", Ops: OpPublish | OpSubscribe}},
		{"stream:telemetry:read,write", Rule{Resource: ResStream, Name: "telemetry", Ops: OpRead | OpWrite}},
		{"stream:*:admin", Rule{Resource: ResStream, Name: "", Prefix: true, Ops: OpAdmin}},
		{"group:etl-:read", Rule{Resource: ResGroup, Name: "etl-", Prefix: true, Ops: OpRead}},
		{"topic:a:b:publish", Rule{Resource: ResTopic, Name: "a:b", Ops: OpPublish}},
	}
	for _, tt := range tests {
		r, err := ParseRuleFlag(tt.flag)
		if err != nil || r != tt.want {
			t.Errorf("%s: %+v %v, want %+v", tt.flag, r, err, tt.want)
			continue
		}
		back, err := r.Spec().Rule()
		if err != nil || back != r {
			t.Errorf("%s: spec round trip %+v %v", tt.flag, back, err)
		}
	}
	for _, bad := range []string{"topic", "topic:a", "queue:a:read", "topic:a:read", "stream::read", "topic:a/#/b:publish"} {
		if _, err := ParseRuleFlag(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
