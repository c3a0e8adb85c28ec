package log

import "fmt"

// Durability is when an append is acknowledged.
type Durability string

// Durability values.
const (
	// DurabilityDefault (empty) follows the log's Options.Durability.
	DurabilityDefault Durability = ""
	// DurabilityFsync acknowledges an append once it is fsynced to disk.
	DurabilityFsync Durability = "fsync"
	// DurabilityWrite acknowledges an append once it was written to the operating
	// system; the log fsyncs at least every Options.SyncInterval. A process crash loses
	// nothing, a power loss at most SyncInterval of acknowledged appends.
	DurabilityWrite Durability = "write"
)

// ParseDurability checks a configured durability ("" means the default).
func ParseDurability(s string) (Durability, error) {
	switch d := Durability(s); d {
	case DurabilityDefault, DurabilityFsync, DurabilityWrite:
		return d, nil
	}
	return "", fmt.Errorf("durability %q: want fsync or write", s)
}
