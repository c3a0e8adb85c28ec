package mqtt

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstreams/mqstreams/mapping"
)

// Prefixes of stream subscription filters (docs/mapping.md, "`$stream/` subscriptions").
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

// parseStartValue parses a start point: `earliest`, `latest`, a time and, when offsets
// is true, `<shard>:<offset>[,...]`. A time is a number with a unit (`1732540000000ms`,
// `1732540000000000us`, `1732540000s`), an RFC 3339 time, or a bare Unix time in
// microseconds (`0` = earliest). A bare number that is not plausibly microseconds (16
// digits, 2001 to 2286) is refused: 13 digits are the milliseconds Kafka users have at
// hand, and taken as µs they would silently replay everything.
func parseStartValue(v string, offsets bool) (startPoint, error) {
	switch strings.ToLower(v) {
	case "earliest":
		return startPoint{kind: startEarliest}, nil
	case "latest":
		return startPoint{kind: startLatest}, nil
	case "":
		return startPoint{}, errors.New("empty")
	}
	if us, ok, err := parseStartTime(v); ok {
		if err != nil {
			return startPoint{}, err
		}
		return timeStart(us), nil
	}
	if !strings.Contains(v, ":") {
		return startPoint{}, errors.New("want earliest, latest, a time (1732540000000ms, 1732540000000000us, an RFC 3339 time) or <shard>:<offset>[,...]")
	}
	if !offsets {
		return startPoint{}, errors.New("want earliest, latest or a time (1732540000000ms, 1732540000000000us, an RFC 3339 time)")
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

// Bounds of a bare number taken as Unix µs: 2001-09-09 to 2286-11-20.
const (
	minBareUS = 1_000_000_000_000_000
	maxBareUS = 10_000_000_000_000_000 - 1
)

// timeUnits are the suffixes a start time may carry, longest first, in µs.
var timeUnits = []struct {
	suffix string
	us     int64
}{{"ms", 1000}, {"us", 1}, {"µs", 1}, {"s", 1_000_000}}

// parseStartTime parses v as a start time in Unix µs; ok is false when v is not
// written as a time at all (a keyword or shard offsets).
func parseStartTime(v string) (us int64, ok bool, err error) {
	if len(v) >= 20 && v[4] == '-' && (v[10] == 'T' || v[10] == 't') {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return 0, true, fmt.Errorf("not an RFC 3339 time: %v", err)
		}
		if t.Before(time.Unix(0, 0)) {
			return 0, true, errors.New("time before 1970")
		}
		return t.UnixMicro(), true, nil
	}
	digits := strings.TrimLeft(v, "0123456789")
	if digits == v || strings.Contains(v, ":") {
		if strings.HasPrefix(v, "-") {
			return 0, true, errors.New("a time cannot be negative")
		}
		return 0, false, nil
	}
	num := v[:len(v)-len(digits)]
	n, perr := strconv.ParseInt(num, 10, 64)
	if perr != nil {
		return 0, true, fmt.Errorf("%q is out of range", num)
	}
	if digits == "" {
		if n == 0 || (n >= minBareUS && n <= maxBareUS) {
			return n, true, nil
		}
		hint := ""
		switch len(num) {
		case 13:
			hint = fmt.Sprintf(" (%s looks like milliseconds: write %sms)", num, num)
		case 10:
			hint = fmt.Sprintf(" (%s looks like seconds: write %ss)", num, num)
		case 19:
			hint = fmt.Sprintf(" (%s looks like nanoseconds: write %sus)", num, num[:16])
		}
		return 0, true, fmt.Errorf("a bare number is a Unix time in microseconds (16 digits)%s; give the unit (ms, us, s) or an RFC 3339 time", hint)
	}
	for _, u := range timeUnits {
		if digits == u.suffix {
			if n > math.MaxInt64/u.us {
				return 0, true, fmt.Errorf("%s is out of range", v)
			}
			return n * u.us, true, nil
		}
	}
	return 0, true, fmt.Errorf("unknown time unit %q: want ms, us or s", digits)
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
