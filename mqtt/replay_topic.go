package mqtt

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstreams/mqstreams/mapping"
)

// Prefixes of stream subscription filters (spec/mqtt.md "Stream subscriptions").
const (
	streamPrefix       = "$stream/"
	legacyStreamPrefix = "$s/"
	// StreamOffsetProperty is the MQTT 5 subscription user property naming the start point.
	StreamOffsetProperty = "stream-offset"
)

// isStreamFilter reports whether a subscription filter is a stream subscription.
func isStreamFilter(f string) bool {
	return strings.HasPrefix(f, streamPrefix) || strings.HasPrefix(f, legacyStreamPrefix)
}

// startKind is how a stream subscription chooses where to begin.
type startKind uint8

const (
	startUnset    startKind = iota // nothing given: latest
	startEarliest                  // the oldest retained record of every shard
	startLatest                    // only records appended after the subscription
	startTime                      // the first record stored at or after tsUS
	startOffsets                   // exact offsets per shard
)

// startPoint is a parsed start point.
type startPoint struct {
	kind    startKind
	tsUS    int64
	offsets map[int32]int64
}

// streamTopic is a parsed $stream/ or $s/ subscription filter.
type streamTopic struct {
	name   string     // stream name; empty for the legacy $s/ form, found by filter
	filter string     // topic filter given in the subscription, empty when none
	start  startPoint // start point given in the topic itself
}

// subError is a failed stream subscription: the SUBACK reason code and the reason string.
type subError struct {
	code packets.Code
	msg  string
}

func (e *subError) Error() string { return e.msg }

func invalidFilter(format string, a ...any) *subError {
	return &subError{code: packets.ErrTopicFilterInvalid, msg: fmt.Sprintf(format, a...)}
}

func implError(format string, a ...any) *subError {
	return &subError{code: packets.ErrImplementationSpecificError, msg: fmt.Sprintf(format, a...)}
}

// parseStreamTopic parses `$stream/<name>[@<start>][/<filter>]` and
// `$s/<timestamp_us>/<filter>`.
func parseStreamTopic(f string) (streamTopic, *subError) {
	var t streamTopic
	if rest, ok := strings.CutPrefix(f, legacyStreamPrefix); ok {
		ts, filter, ok := strings.Cut(rest, "/")
		if !ok || filter == "" {
			return t, invalidFilter("%q: expected $s/<timestamp_us>/<topic_filter>", f)
		}
		us, err := strconv.ParseInt(ts, 10, 64)
		if err != nil || us < 0 {
			return t, invalidFilter("%q: %q is not a timestamp in microseconds", f, ts)
		}
		if err := mapping.ValidFilter(filter); err != nil {
			return t, invalidFilter("%q: topic filter %q: %v", f, filter, err)
		}
		t.filter = filter
		t.start = timeStart(us)
		return t, nil
	}
	rest := strings.TrimPrefix(f, streamPrefix)
	name, filter, hasFilter := strings.Cut(rest, "/")
	if hasFilter {
		if filter == "" {
			return t, invalidFilter("%q: empty topic filter after the stream name", f)
		}
		if err := mapping.ValidFilter(filter); err != nil {
			return t, invalidFilter("%q: topic filter %q: %v", f, filter, err)
		}
		t.filter = filter
	}
	if n, at, ok := strings.Cut(name, "@"); ok {
		sp, err := parseStartValue(at, false)
		if err != nil {
			return t, invalidFilter("%q: start point %q: %v", f, at, err)
		}
		name, t.start = n, sp
	}
	if err := mapping.ValidName(name); err != nil {
		return t, invalidFilter("%q: stream name: %v", f, err)
	}
	t.name = name
	return t, nil
}

func timeStart(us int64) startPoint {
	if us == 0 {
		return startPoint{kind: startEarliest}
	}
	return startPoint{kind: startTime, tsUS: us}
}

// parseStartValue parses a start point: `earliest`, `latest`, a Unix timestamp in
// microseconds (0 = earliest) and, when offsets is true, `<shard>:<offset>[,...]`.
func parseStartValue(v string, offsets bool) (startPoint, error) {
	switch strings.ToLower(v) {
	case "earliest":
		return startPoint{kind: startEarliest}, nil
	case "latest":
		return startPoint{kind: startLatest}, nil
	case "":
		return startPoint{}, errors.New("empty")
	}
	if !strings.Contains(v, ":") {
		us, err := strconv.ParseInt(v, 10, 64)
		if err != nil || us < 0 {
			return startPoint{}, errors.New("want earliest, latest, a timestamp in microseconds or <shard>:<offset>[,...]")
		}
		return timeStart(us), nil
	}
	if !offsets {
		return startPoint{}, errors.New("want earliest, latest or a timestamp in microseconds")
	}
	sp := startPoint{kind: startOffsets, offsets: map[int32]int64{}}
	for _, part := range strings.Split(v, ",") {
		s, o, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok {
			return startPoint{}, fmt.Errorf("%q: want <shard>:<offset>", part)
		}
		shard, err := strconv.ParseInt(s, 10, 32)
		if err != nil || shard < 0 {
			return startPoint{}, fmt.Errorf("%q: shard %q is not a non-negative integer", part, s)
		}
		off, err := strconv.ParseInt(o, 10, 64)
		if err != nil || off < 0 {
			return startPoint{}, fmt.Errorf("%q: offset %q is not a non-negative integer", part, o)
		}
		if _, dup := sp.offsets[int32(shard)]; dup {
			return startPoint{}, fmt.Errorf("shard %d given twice", shard)
		}
		sp.offsets[int32(shard)] = off
	}
	return sp, nil
}

// subscriptionStart combines the start point of the topic with the SUBSCRIBE packet's
// `stream-offset` user property: one of them may give it, not both.
func subscriptionStart(t streamTopic, user []packets.UserProperty) (startPoint, *subError) {
	var prop *string
	for i := range user {
		if user[i].Key != StreamOffsetProperty {
			continue
		}
		if prop != nil {
			return startPoint{}, implError("user property %s given more than once", StreamOffsetProperty)
		}
		prop = &user[i].Val
	}
	if prop == nil {
		return t.start, nil
	}
	if t.start.kind != startUnset {
		return startPoint{}, implError("start point given both in the topic and in user property %s", StreamOffsetProperty)
	}
	sp, err := parseStartValue(strings.TrimSpace(*prop), true)
	if err != nil {
		return startPoint{}, implError("bad %s %q: %v", StreamOffsetProperty, *prop, err)
	}
	return sp, nil
}

// String renders the start point for logs.
func (sp startPoint) String() string {
	switch sp.kind {
	case startEarliest:
		return "earliest"
	case startTime:
		return strconv.FormatInt(sp.tsUS, 10)
	case startOffsets:
		shards := make([]int, 0, len(sp.offsets))
		for s := range sp.offsets {
			shards = append(shards, int(s))
		}
		sort.Ints(shards)
		parts := make([]string, len(shards))
		for i, s := range shards {
			parts[i] = fmt.Sprintf("%d:%d", s, sp.offsets[int32(s)])
		}
		return strings.Join(parts, ",")
	default:
		return "latest"
	}
}
