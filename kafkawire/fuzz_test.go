package kafkawire

import (
	"bytes"
	"encoding/binary"
	"sort"
	"testing"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/log"
)

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{0, 0, 0, 4, 1, 2, 3, 4})
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Add([]byte{0, 0, 4, 1, 0})
	f.Add([]byte{0, 0, 0, 9, 1, 2})
	f.Add([]byte{0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		const maxBytes = 1 << 10
		body, err := readFrame(bytes.NewReader(data), maxBytes, nil)
		if err != nil {
			return
		}
		n := int(int32(binary.BigEndian.Uint32(data[:4])))
		if n < 0 || n > maxBytes || len(body) != n || !bytes.Equal(body, data[4:4+n]) {
			t.Fatalf("frame of %d bytes read as %d bytes", n, len(body))
		}
	})
}

// FuzzDispatch feeds arbitrary request frames to dispatch on a server over a real log:
// it must answer or refuse, never panic or hang, and never change stored data. The
// server is closed first so that long polls and group waits end at once.
func FuzzDispatch(f *testing.F) {
	l, err := log.Open(log.Options{Dir: f.TempDir(), Logger: zerolog.Nop(), NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	defer l.Close()
	st, err := l.CreateStream(log.StreamSpec{Name: "fz", Shards: 2})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := st.Append(1, []log.Record{{Key: []byte("k"), Value: []byte("v")}, {Value: []byte("w")}}); err != nil {
		f.Fatal(err)
	}
	s, err := New(Options{Log: l, Logger: zerolog.Nop()})
	if err != nil {
		f.Fatal(err)
	}
	_ = s.Close()
	s.advHost, s.advPort = "localhost", 9092

	for _, body := range dispatchSeeds() {
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		c := &conn{s: s, remote: "fuzz:1", lg: zerolog.Nop()}
		out, err := c.dispatch(body)
		// Only Produce with acks=0 is left unanswered (a nil frame).
		noAnswer := out == nil && len(body) >= 2 && binary.BigEndian.Uint16(body) == 0
		if err == nil && !noAnswer && (len(out) < 8 || int(binary.BigEndian.Uint32(out[:4])) != len(out)-4) {
			t.Fatalf("response frame of %d bytes is malformed", len(out))
		}
		if start, hwm, _ := st.Offsets(1); start != 0 || hwm != 2 {
			t.Fatalf("stored data changed: log %d..%d", start, hwm)
		}
	})
}

// dispatchSeeds are request frame bodies (no size prefix) for every served API at its
// lowest and highest version, plus broken ones.
func dispatchSeeds() [][]byte {
	var keys []int16
	for k := range apis {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	var out [][]byte
	frame := func(req kmsg.Request) []byte {
		return kmsg.NewRequestFormatter(kmsg.FormatterClientID("fuzz")).AppendRequest(nil, req, 1)[4:]
	}
	for _, k := range keys {
		a := apis[k]
		for _, v := range []int16{a.min, a.max} {
			req := kmsg.RequestForKey(k)
			req.SetVersion(v)
			switch r := req.(type) {
			case *kmsg.FetchRequest:
				*r = *fetchReq(v, "fz", 1, 0, 100, 1)
			case *kmsg.ListOffsetsRequest:
				*r = *listOffsetsReq(v, "fz", -2)
			case *kmsg.MetadataRequest:
				rt := kmsg.NewMetadataRequestTopic()
				rt.Topic = kmsg.StringPtr("fz")
				r.Topics = append(r.Topics, rt)
			case *kmsg.DescribeConfigsRequest:
				rr := kmsg.NewDescribeConfigsRequestResource()
				rr.ResourceType, rr.ResourceName = kmsg.ConfigResourceTypeTopic, "fz"
				r.Resources = append(r.Resources, rr)
			}
			out = append(out, frame(req))
		}
	}
	// Broken: a header only, an unknown key, a version out of range, a body cut short.
	out = append(out, []byte{0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff})
	out = append(out, []byte{0x7f, 0xff, 0, 0, 0, 0, 0, 1, 0xff, 0xff})
	bad := frame(listOffsetsReq(0, "fz", -1))
	binary.BigEndian.PutUint16(bad[2:4], 100)
	out = append(out, bad)
	md := frame(kmsg.NewPtrMetadataRequest())
	out = append(out, md[:len(md)-2])
	return out
}
