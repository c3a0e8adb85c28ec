//go:build !race

package log

const raceOn = false
