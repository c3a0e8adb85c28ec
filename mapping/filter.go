// Package mapping turns MQTT publishes into stream records: stream definitions, topic
// filter matching, key expressions, shard choice and the MQTT message ⇄ Kafka record form.
package mapping

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// maxTopicLen is MQTT's limit: topics are UTF-8 strings with a 16-bit length prefix.
const maxTopicLen = 65535

// ValidFilter reports why f is not a valid MQTT topic filter, or nil when it is.
func ValidFilter(f string) error {
	if err := validTopicString(f); err != nil {
		return err
	}
	for i, rest := 0, f; ; i++ {
		level, next, last := cutLevel(rest)
		switch {
		case level == "#":
			if !last {
				return errors.New("'#' must be the last level")
			}
		case level == "+":
		case strings.ContainsRune(level, '#'):
			return errors.New("'#' must occupy a whole level")
		case strings.ContainsRune(level, '+'):
			return errors.New("'+' must occupy a whole level")
		}
		if last {
			return nil
		}
		rest = next
	}
}

// ValidTopic reports why t is not a valid MQTT topic name to publish to, or nil when it is.
func ValidTopic(t string) error {
	if err := validTopicString(t); err != nil {
		return err
	}
	if strings.ContainsAny(t, "+#") {
		return errors.New("wildcards '+' and '#' are not allowed in a topic name")
	}
	return nil
}

func validTopicString(s string) error {
	switch {
	case s == "":
		return errors.New("must not be empty")
	case len(s) > maxTopicLen:
		return fmt.Errorf("longer than %d bytes", maxTopicLen)
	case !utf8.ValidString(s):
		return errors.New("not valid UTF-8")
	case strings.IndexByte(s, 0) >= 0:
		return errors.New("contains U+0000")
	}
	return nil
}

// cutLevel splits off the first level of a topic; last is true when no '/' followed it.
func cutLevel(s string) (level, rest string, last bool) {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i], s[i+1:], false
	}
	return s, "", true
}

// MatchFilter reports whether topic matches filter under MQTT rules: '+' matches one
// level, '#' the rest (including the parent level itself), and a topic starting with '$'
// is not matched by a wildcard in the first level.
func MatchFilter(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		fl, frest, flast := cutLevel(filter)
		if fl == "#" {
			return true
		}
		tl, trest, tlast := cutLevel(topic)
		if fl != "+" && fl != tl {
			return false
		}
		switch {
		case flast && tlast:
			return true
		case tlast:
			// "a/#" matches "a": the only way a longer filter matches is a trailing '#'.
			return frest == "#"
		case flast:
			return false
		}
		filter, topic = frest, trest
	}
}
