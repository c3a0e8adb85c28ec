package loadgen

import (
	"bufio"
	"bytes"
	"testing"
)

func TestParseConnack(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version byte
		body    []byte
		want    connackResult
		wantErr bool
	}{
		{"3.1.1 accepted", V311, []byte{0, 0}, connackResult{}, false},
		{"3.1.1 refused", V311, []byte{0, 5}, connackResult{code: 5}, false},
		// Receive Maximum 7 after a string property (reason string "ok") and a
		// user property, which the walker has to step over.
		{"5 receive maximum", V5, []byte{0, 0, 15, 0x1F, 0, 2, 'o', 'k', 0x26, 0, 1, 'k', 0, 1, 'v', 0x21, 0, 7}, connackResult{receiveMax: 7}, false},
		{"5 truncated properties", V5, []byte{0, 0, 5, 0x21, 0}, connackResult{}, true},
		{"5 unknown property", V5, []byte{0, 0, 2, 0x7F, 0}, connackResult{}, true},
		{"too short", V311, []byte{0}, connackResult{}, true},
	} {
		got, err := parseConnack(tc.version, tc.body)
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: err %v, want error %v", tc.name, err, tc.wantErr)
			continue
		}
		if err == nil && got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestPublishRoundTrip(t *testing.T) {
	for _, v := range []byte{V311, V5} {
		for _, qos := range []byte{0, 1, 2} {
			var buf bytes.Buffer
			w := bufio.NewWriter(&buf)
			payload := bytes.Repeat([]byte("p"), 300) // a two-byte remaining length
			writePublish(w, v, qos, []byte("a/b"), 513, payload)
			_ = w.Flush()
			h, body, _, err := readPacket(bufio.NewReader(&buf), nil)
			if err != nil {
				t.Fatal(err)
			}
			topic, id, got, err := publishPayload(v, h, body)
			if err != nil || string(topic) != "a/b" || !bytes.Equal(got, payload) || h>>4 != pktPublish || (h>>1)&3 != qos {
				t.Fatalf("v%d qos %d: topic %q payload %d B header %x err %v", v, qos, topic, len(got), h, err)
			}
			if qos > 0 && id != 513 {
				t.Fatalf("v%d qos %d: id %d, want 513", v, qos, id)
			}
		}
	}
}
