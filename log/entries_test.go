package log

import (
	"errors"
	"testing"
)

func TestEntriesPersistAndDelete(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, nil)
	if err := l.PutEntries("users", []Entry{{Name: "bob", Value: []byte("b")}, {Name: "alice", Value: []byte("a")}}); err != nil {
		t.Fatal(err)
	}
	if err := l.PutEntry("other", "alice", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := l.DeleteEntry("users", "bob"); err != nil {
		t.Fatal(err)
	}
	if err := l.DeleteEntry("users", "nobody"); err != nil {
		t.Fatalf("deleting a missing entry: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openTest(t, dir, nil)
	defer l.Close()
	tests := []struct {
		kind string
		want []Entry
	}{
		{"users", []Entry{{Name: "alice", Value: []byte("a")}}},
		{"other", []Entry{{Name: "alice", Value: []byte("x")}}},
		{"none", nil},
	}
	for _, tt := range tests {
		got, err := l.Entries(tt.kind)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(tt.want) {
			t.Fatalf("%s: got %d entries %v, want %v", tt.kind, len(got), got, tt.want)
		}
		for i := range got {
			if got[i].Name != tt.want[i].Name || string(got[i].Value) != string(tt.want[i].Value) {
				t.Fatalf("%s[%d]: got %q=%q, want %q=%q", tt.kind, i, got[i].Name, got[i].Value, tt.want[i].Name, tt.want[i].Value)
			}
		}
	}
	if _, err := l.Entries(""); !errors.Is(err, ErrInvalidEntry) {
		t.Fatalf("empty kind: got %v, want ErrInvalidEntry", err)
	}
}

func TestPutEntriesAsyncWithAppends(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, nil)
	s, err := l.CreateStream(StreamSpec{Name: "s", Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	s.AppendAsyncWith(0, []Record{{Value: []byte("v")}}, []EntryOp{{Kind: "ret", Name: "a/b", Value: []byte("1")}},
		func(_ AppendResult, err error) { errs <- err })
	l.PutEntriesAsync([]EntryOp{{Kind: "ret", Name: "c", Value: []byte("2")}, {Kind: "sub", Name: "x", Value: []byte("3")}}, func(err error) { errs <- err })
	l.PutEntriesAsync([]EntryOp{{Kind: "ret", Name: "c"}}, func(err error) { errs <- err })
	l.PutEntriesAsync(nil, func(err error) { errs <- err }) // barrier
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	l.PutEntriesAsync([]EntryOp{{Kind: "", Name: "x"}}, func(err error) { errs <- err })
	if err := <-errs; !errors.Is(err, ErrInvalidEntry) {
		t.Fatalf("empty kind: got %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.PutEntriesAsync([]EntryOp{{Kind: "ret", Name: "late", Value: []byte("x")}}, func(err error) { errs <- err })
	if err := <-errs; !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: got %v", err)
	}
	l = openTest(t, dir, nil)
	defer l.Close()
	ret, _ := l.Entries("ret")
	sub, _ := l.Entries("sub")
	if len(ret) != 1 || ret[0].Name != "a/b" || len(sub) != 1 || sub[0].Name != "x" {
		t.Fatalf("got ret %v sub %v", ret, sub)
	}
	if _, hw, err := l.Stream("s").Offsets(0); err != nil || hw != 1 {
		t.Fatalf("high watermark %d (%v), want 1", hw, err)
	}
}
