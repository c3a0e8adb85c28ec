package mapping

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/mqstreams/mqstreams/log"
)

// DefaultPublishTopic is the MQTT topic of a record produced over Kafka without an
// mqtt.topic header, unless the stream's publish_topic says otherwise.
const DefaultPublishTopic = "{stream}/{key}"

// TopicTemplate is a parsed publish_topic: literal text and placeholders {stream},
// {key}, {partition} and {header.NAME} (the first header NAME's value, empty if none).
type TopicTemplate struct {
	parts []templatePart
}

type templatePart struct {
	lit    string
	kind   byte // 0 literal, 's' stream, 'k' key, 'p' partition, 'h' header
	header string
}

// ParseTopicTemplate parses a publish_topic template; an unknown placeholder or an
// unclosed brace is an error naming it.
func ParseTopicTemplate(s string) (*TopicTemplate, error) {
	if s == "" {
		return nil, errors.New("must not be empty")
	}
	t := &TopicTemplate{}
	for rest := s; rest != ""; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			t.parts = append(t.parts, templatePart{lit: rest})
			break
		}
		if i > 0 {
			t.parts = append(t.parts, templatePart{lit: rest[:i]})
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("%q: unclosed '{'", s)
		}
		name := rest[i+1 : i+j]
		switch {
		case name == "stream":
			t.parts = append(t.parts, templatePart{kind: 's'})
		case name == "key":
			t.parts = append(t.parts, templatePart{kind: 'k'})
		case name == "partition":
			t.parts = append(t.parts, templatePart{kind: 'p'})
		case strings.HasPrefix(name, "header.") && len(name) > len("header."):
			t.parts = append(t.parts, templatePart{kind: 'h', header: name[len("header."):]})
		default:
			return nil, fmt.Errorf("%q: unknown placeholder {%s} (want {stream}, {key}, {partition} or {header.NAME})", s, name)
		}
		rest = rest[i+j+1:]
	}
	for _, p := range t.parts {
		if p.kind == 0 && strings.ContainsAny(p.lit, "+#") {
			return nil, fmt.Errorf("%q: wildcards '+' and '#' are not allowed in a topic name", s)
		}
	}
	return t, nil
}

// Render builds the topic of record r of a stream's partition. The result may still
// be an invalid topic name (a key holding '#', say): callers check it with ValidTopic.
func (t *TopicTemplate) Render(stream string, partition int32, r *log.Record) string {
	var b strings.Builder
	for _, p := range t.parts {
		switch p.kind {
		case 0:
			b.WriteString(p.lit)
		case 's':
			b.WriteString(stream)
		case 'k':
			b.Write(r.Key)
		case 'p':
			b.WriteString(strconv.FormatInt(int64(partition), 10))
		case 'h':
			for _, h := range r.Headers {
				if h.Key == p.header {
					b.Write(h.Value)
					break
				}
			}
		}
	}
	return b.String()
}
