package mqtt

import (
	"strings"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// dollarSharedHook keeps shared subscriptions whose topic filter starts with a wildcard
// from matching topic names that start with '$' ($SYS, $stream, ...), as MQTT requires of
// every subscription [MQTT-4.7.2-1]. mochi v2.7.9 applies the rule to ordinary
// subscriptions only (its TopicsIndex.gatherSubscriptions), so a `$share/g/#` member
// was handed every $SYS topic. mochi calls OnSelectSubscribers only when shared
// subscriptions matched, which is exactly when there is something to remove.
type dollarSharedHook struct{ mochi.HookBase }

// ID names the hook in mochi's logs.
func (h *dollarSharedHook) ID() string { return "mqstreams-dollar-shared" }

// Provides lists the mochi events the hook handles.
func (h *dollarSharedHook) Provides(b byte) bool { return b == mochi.OnSelectSubscribers }

// OnSelectSubscribers drops the wildcard-first shared groups for a '$' topic.
func (h *dollarSharedHook) OnSelectSubscribers(subs *mochi.Subscribers, pk packets.Packet) *mochi.Subscribers {
	if !strings.HasPrefix(pk.TopicName, "$") {
		return subs
	}
	for filter := range subs.Shared {
		if wildcardFirst(filter) {
			delete(subs.Shared, filter)
		}
	}
	return subs
}

// wildcardFirst reports whether a shared filter ($share/group/filter) starts its topic
// filter with '+' or '#'.
func wildcardFirst(shared string) bool {
	rest := shared
	for range 2 { // past "$share/" and "group/"
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			return false
		}
		rest = rest[i+1:]
	}
	return strings.HasPrefix(rest, "+") || strings.HasPrefix(rest, "#")
}
