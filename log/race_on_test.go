//go:build race

package log

// raceOn: the race detector is on; it adds allocations of its own, so allocation
// counts are not checked.
const raceOn = true
