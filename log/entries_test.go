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
