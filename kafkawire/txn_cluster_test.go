package kafkawire

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/mqstreams/mqstreams/log"
)

// mapState is a TxnStateView over a map, as the cluster's catalog holds it.
type mapState map[string][]byte

func (m mapState) Get(k string) []byte { return m[k] }
func (m mapState) Put(k string, v []byte) {
	if v == nil {
		delete(m, k)
		return
	}
	m[k] = v
}
func (m mapState) Keys(p string) []string {
	var out []string
	for k := range m {
		if strings.HasPrefix(k, p) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func applyCmd(st mapState, c txnStateCmd) ([]log.GroupOffsets, error) {
	b, _ := json.Marshal(c)
	return ApplyTxnState(b, st)
}

func txnValue(t *txn) json.RawMessage { return t.value() }

// The replicated coordinator state: a claim fences older coordinators, changes apply
// in Seq order, staged offsets are checked against the transaction and become group
// offsets only when it completes with a commit.
func TestApplyTxnState(t *testing.T) {
	st := mapState{}
	if _, err := applyCmd(st, txnStateCmd{Claim: true, Term: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := applyCmd(st, txnStateCmd{Claim: true, Term: 4}); !errors.Is(err, errStaleCoordinator) {
		t.Fatalf("older claim: %v", err)
	}
	if _, err := applyCmd(st, txnStateCmd{Claim: true, Term: 5}); err != nil {
		t.Fatalf("the same term's leader claiming again: %v", err)
	}
	tx := &txn{ID: "a", PID: 7, Epoch: 1, Seq: 1, Ongoing: true, Groups: map[string]map[string]log.CommittedOffset{"g": {}}}
	if _, err := applyCmd(st, txnStateCmd{Term: 4, ID: "a", Value: txnValue(tx)}); !errors.Is(err, errStaleCoordinator) {
		t.Fatalf("change from a deposed coordinator: %v", err)
	}
	if _, err := applyCmd(st, txnStateCmd{Term: 5, ID: "a", Value: txnValue(tx)}); err != nil {
		t.Fatal(err)
	}
	if string(st.Get(txnPIDPrefix+"7")) != "a" {
		t.Fatalf("producer id index: %q", st.Get(txnPIDPrefix+"7"))
	}
	stage := func(epoch int16, group string, off int64) error {
		_, err := applyCmd(st, txnStateCmd{ID: "a", Stage: &txnStage{PID: 7, Epoch: epoch, Group: group,
			Offsets: []log.CommittedOffset{{Stream: "s", Shard: 0, Offset: off}}}})
		return err
	}
	if err := stage(0, "g", 3); !errors.Is(err, errTxnFenced) {
		t.Fatalf("stage with an old epoch: %v", err)
	}
	if err := stage(1, "other", 3); !errors.Is(err, errTxnState) {
		t.Fatalf("stage for a group not added: %v", err)
	}
	if err := stage(1, "g", 3); err != nil {
		t.Fatal(err)
	}
	if err := stage(1, "g", 9); err != nil {
		t.Fatal(err)
	}
	// An older change applied late is superseded, not applied.
	old := *tx
	old.Seq, old.Ongoing = 0, false
	if _, err := applyCmd(st, txnStateCmd{Term: 5, ID: "a", Value: txnValue(&old)}); err != nil {
		t.Fatal(err)
	}
	if got := decodeTxn(st.Get(txnStatePrefix + "a")); !got.Ongoing {
		t.Fatal("an older change overwrote a newer one")
	}
	// Prepared: no more offsets.
	prep := *tx
	prep.Seq, prep.Prepared = 2, txnPrepCommit
	if _, err := applyCmd(st, txnStateCmd{Term: 5, ID: "a", Value: txnValue(&prep)}); err != nil {
		t.Fatal(err)
	}
	if err := stage(1, "g", 11); !errors.Is(err, errTxnState) {
		t.Fatalf("stage while prepared: %v", err)
	}
	done := prep
	done.Seq, done.Prepared, done.Ongoing, done.Ended, done.LastCommit = 3, "", false, true, true
	gs, err := applyCmd(st, txnStateCmd{Term: 5, ID: "a", Value: txnValue(&done), Complete: txnPrepCommit})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(gs) != "[{g [{s 0 9 0 }]}]" {
		t.Fatalf("committed offsets %v", gs)
	}
	if len(st.Keys(txnOffPrefix)) != 0 {
		t.Fatalf("staged offsets left: %v", st.Keys(txnOffPrefix))
	}
}
