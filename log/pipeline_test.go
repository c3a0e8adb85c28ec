package log

import "testing"

// TestGatherTargetRemembersLargestGroup: once a pipelined writer's window was synced in
// two parts, the syncer waits for the whole window again. Following only the previous
// group (17 then 3 of a window of 20) waited for 3 and kept the window split for good.
func TestGatherTargetRemembersLargestGroup(t *testing.T) {
	var g gatherTarget
	for _, step := range []struct{ add, want int }{
		{20, 20}, {17, 20}, {3, 20}, {20, 20}, {3, 20}, {3, 20}, {3, 20}, {3, 3}, {1, 3},
	} {
		g.add(step.add)
		if got := g.target(); got != step.want {
			t.Fatalf("after a group of %d: gather target %d, want %d (recent groups %v)", step.add, got, step.want, g.sizes)
		}
	}
}
