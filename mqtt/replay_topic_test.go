package mqtt

import (
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

func TestParseStreamTopic(t *testing.T) {
	tests := []struct {
		in     string
		name   string
		filter string
		start  string // startPoint.String(); "" means unset
		code   byte   // expected error code; 0 means success
	}{
		{in: "$stream/plant", name: "plant"},
		{in: "$stream/plant.v1/site/+/temp", name: "plant.v1", filter: "site/+/temp"},
		{in: "$stream/plant/#", name: "plant", filter: "#"},
		{in: "$stream/plant@earliest", name: "plant", start: "earliest"},
		{in: "$stream/plant@LATEST", name: "plant", start: "latest"},
		{in: "$stream/plant@1700000000000000", name: "plant", start: "1700000000000000"},
		{in: "$stream/plant@0", name: "plant", start: "earliest"},
		{in: "$stream/plant@1700000000000ms", name: "plant", start: "1700000000000000"},
		{in: "$stream/plant@2023-11-14T22:13:20Z/a", name: "plant", filter: "a", start: "1700000000000000"},
		{in: "$stream/plant@1700000000000", code: 0x8F},
		{in: "$stream/plant@earliest/a/b", name: "plant", filter: "a/b", start: "earliest"},
		{in: "$s/1700000000000000/a/#", filter: "a/#", start: "1700000000000000"},
		{in: "$s/0/a", filter: "a", start: "earliest"},
		{in: "$stream/", code: 0x8F},
		{in: "$stream/bad name", code: 0x8F},
		{in: "$stream/..", code: 0x8F},
		{in: "$stream/plant/", code: 0x8F},
		{in: "$stream/plant/a/#/b", code: 0x8F},
		{in: "$stream/plant/a+", code: 0x8F},
		{in: "$stream/plant@yesterday", code: 0x8F},
		{in: "$stream/plant@-5", code: 0x8F},
		{in: "$stream/plant@0:5", code: 0x8F},
		{in: "$s/abc/a", code: 0x8F},
		{in: "$s/123", code: 0x8F},
		{in: "$s/123/", code: 0x8F},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseStreamTopic(tc.in)
			if tc.code != 0 {
				if err == nil || err.code.Code != tc.code || err.msg == "" {
					t.Fatalf("got %+v, %v; want error code %#x with a reason", got, err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			start := ""
			if got.start.kind != startUnset {
				start = got.start.String()
			}
			if got.name != tc.name || got.filter != tc.filter || start != tc.start {
				t.Fatalf("got name %q filter %q start %q; want %q %q %q", got.name, got.filter, start, tc.name, tc.filter, tc.start)
			}
		})
	}
}

func TestSubscriptionStart(t *testing.T) {
	prop := func(v ...string) []packets.UserProperty {
		var out []packets.UserProperty
		for _, s := range v {
			out = append(out, packets.UserProperty{Key: StreamOffsetProperty, Val: s})
		}
		return out
	}
	tests := []struct {
		name  string
		topic string
		user  []packets.UserProperty
		want  string // startPoint.String()
		code  byte
	}{
		{name: "default latest", topic: "$stream/s", want: "latest"},
		{name: "earliest", topic: "$stream/s", user: prop("earliest"), want: "earliest"},
		{name: "latest", topic: "$stream/s", user: prop("latest"), want: "latest"},
		{name: "zero is earliest", topic: "$stream/s", user: prop("0"), want: "earliest"},
		{name: "timestamp", topic: "$stream/s", user: prop("1700000000123456"), want: "1700000000123456"},
		{name: "ms", topic: "$stream/s", user: prop("1732540000000ms"), want: "1732540000000000"},
		{name: "us", topic: "$stream/s", user: prop("1732540000000001us"), want: "1732540000000001"},
		{name: "µs", topic: "$stream/s", user: prop("1732540000000001µs"), want: "1732540000000001"},
		{name: "s", topic: "$stream/s", user: prop("1732540000s"), want: "1732540000000000"},
		{name: "rfc3339", topic: "$stream/s", user: prop("2024-11-25T13:06:40.5Z"), want: "1732540000500000"},
		{name: "rfc3339 offset", topic: "$stream/s", user: prop("2024-11-25T14:06:40+01:00"), want: "1732540000000000"},
		{name: "bare ms refused", topic: "$stream/s", user: prop("1732540000000"), code: 0x83},
		{name: "bare s refused", topic: "$stream/s", user: prop("1732540000"), code: 0x83},
		{name: "bare ns refused", topic: "$stream/s", user: prop("1732540000000000000"), code: 0x83},
		{name: "unknown unit", topic: "$stream/s", user: prop("17h"), code: 0x83},
		{name: "bad rfc3339", topic: "$stream/s", user: prop("2024-13-25T14:06:40Z"), code: 0x83},
		{name: "overflow", topic: "$stream/s", user: prop("99999999999999999999ms"), code: 0x83},
		{name: "ms overflow", topic: "$stream/s", user: prop("9223372036854775807ms"), code: 0x83},
		{name: "offsets", topic: "$stream/s", user: prop("2:7, 0:3"), want: "0:3,2:7"},
		{name: "other properties ignored", topic: "$stream/s", user: []packets.UserProperty{{Key: "x", Val: "y"}}, want: "latest"},
		{name: "topic start", topic: "$stream/s@earliest", want: "earliest"},
		{name: "both", topic: "$stream/s@earliest", user: prop("latest"), code: 0x83},
		{name: "twice", topic: "$stream/s", user: prop("earliest", "latest"), code: 0x83},
		{name: "garbage", topic: "$stream/s", user: prop("soon"), code: 0x83},
		{name: "negative", topic: "$stream/s", user: prop("-1"), code: 0x83},
		{name: "empty", topic: "$stream/s", user: prop(""), code: 0x83},
		{name: "bad pair", topic: "$stream/s", user: prop("0:1,2"), code: 0x83},
		{name: "bad shard", topic: "$stream/s", user: prop("x:1"), code: 0x83},
		{name: "negative offset", topic: "$stream/s", user: prop("0:-1"), code: 0x83},
		{name: "duplicate shard", topic: "$stream/s", user: prop("0:1,0:2"), code: 0x83},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, perr := parseStreamTopic(tc.topic)
			if perr != nil {
				t.Fatal(perr)
			}
			sp, err := subscriptionStart(st, tc.user)
			if tc.code != 0 {
				if err == nil || err.code.Code != tc.code || err.msg == "" {
					t.Fatalf("got %v, %v; want error code %#x", sp, err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sp.String() != tc.want {
				t.Fatalf("got %s, want %s", sp, tc.want)
			}
		})
	}
}
