package log

import (
	"context"
	"errors"
	"testing"
)

func TestLogAppendImplementsWriter(t *testing.T) {
	l := openTest(t, t.TempDir(), nil)
	if _, err := l.CreateStream(StreamSpec{Name: "w", Shards: 2}); err != nil {
		t.Fatal(err)
	}
	var w Writer = l
	type out struct {
		res AppendResult
		err error
	}
	appendOne := func(stream string, shard int32, v string) out {
		ch := make(chan out, 1)
		w.Append(context.Background(), AppendBlock, stream, shard, []Record{{Value: []byte(v)}}, nil, func(r AppendResult, err error) { ch <- out{r, err} })
		return <-ch
	}
	for i, v := range []string{"a", "b"} {
		o := appendOne("w", 1, v)
		if o.err != nil || o.res.BaseOffset != int64(i) {
			t.Fatalf("append %d: %+v", i, o)
		}
	}
	if _, hwm, _ := l.Stream("w").Offsets(1); hwm != 2 {
		t.Fatalf("hwm %d, want 2", hwm)
	}
	tests := []struct {
		stream string
		shard  int32
		want   error
	}{
		{"missing", 0, ErrUnknownStream},
		{"w", 7, ErrUnknownShard},
	}
	for _, tc := range tests {
		if o := appendOne(tc.stream, tc.shard, "x"); !errors.Is(o.err, tc.want) {
			t.Errorf("append %s/%d: %v, want %v", tc.stream, tc.shard, o.err, tc.want)
		}
	}
}
