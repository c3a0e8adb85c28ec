package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mqstreams/mqstreams/conf"
)

// Values with their own syntax, decoded the same way from the config file (YAML), the
// REST API (JSON) and, through the Parse functions, Kafka topic configs.

// ByteSize is a number of bytes, written as a plain number or with a unit ("512MB",
// "10GiB"; ParseBytes). Zero and negative sizes are refused where they are read.
type ByteSize int64

// UnmarshalYAML reads a size.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	s, err := conf.Scalar(n, "a size such as 1024 or 16MiB")
	if err != nil {
		return err
	}
	v, err := ParseBytes(s)
	if err != nil {
		return conf.Invalid(n, err)
	}
	*b = ByteSize(v)
	return nil
}

// UnmarshalJSON reads a size: a number or a string with a unit.
func (b *ByteSize) UnmarshalJSON(data []byte) error {
	v, err := jsonNumberOrString(data, "a size such as 1024 or \"16MiB\"", ParseBytes)
	if err != nil {
		return err
	}
	*b = ByteSize(v)
	return nil
}

// Duration is a length of time such as "10ms", "72h" or "7d" (ParseDuration).
type Duration time.Duration

// UnmarshalYAML reads a duration.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	s, err := conf.Scalar(n, "a duration such as 10ms or 7d")
	if err != nil {
		return err
	}
	v, err := ParseDuration(s)
	if err != nil {
		return conf.Invalid(n, fmt.Errorf("%w (want e.g. 10ms, 72h, 7d)", err))
	}
	*d = Duration(v)
	return nil
}

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("expected a duration such as \"10ms\" or \"7d\", got %s", jsonShort(data))
	}
	v, err := ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%w (want e.g. \"10ms\", \"72h\", \"7d\")", err)
	}
	*d = Duration(v)
	return nil
}

// MaxAge is a stream's retention age: a duration, or "infinity" (also 0) for no bound,
// which it holds as NoMaxAge.
type MaxAge time.Duration

// ParseMaxAge reads a retention age as the config file and the REST API write it.
func ParseMaxAge(s string) (MaxAge, error) {
	if isInfinity(s) || strings.TrimSpace(s) == "0" {
		return MaxAge(NoMaxAge), nil
	}
	v, err := ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%w (want e.g. \"72h\", \"7d\", \"infinity\")", err)
	}
	if v == 0 {
		return MaxAge(NoMaxAge), nil // an explicit zero, like the byte and count caps, means no bound
	}
	return MaxAge(v), nil
}

// UnmarshalYAML reads a retention age.
func (a *MaxAge) UnmarshalYAML(n *yaml.Node) error {
	s, err := conf.Scalar(n, "a duration such as 72h or 7d, or infinity")
	if err != nil {
		return err
	}
	if n.Tag == "!!int" && s != "0" {
		return conf.Invalid(n, fmt.Errorf("expected a duration such as \"72h\" or \"7d\", got %s (a number without a unit)", s))
	}
	v, err := ParseMaxAge(s)
	if err != nil {
		return conf.Invalid(n, err)
	}
	*a = v
	return nil
}

// UnmarshalJSON reads a retention age: a string, or the number 0 (no bound).
func (a *MaxAge) UnmarshalJSON(data []byte) error {
	if string(bytes.TrimSpace(data)) == "0" {
		*a = MaxAge(NoMaxAge)
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("expected a duration such as \"72h\" or \"7d\", got %s", jsonShort(data))
	}
	v, err := ParseMaxAge(s)
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// ByteLimit is a per-shard byte cap: a size, or "infinity" (also 0) for none.
type ByteLimit int64

// CountLimit is a per-shard record cap: a whole number, or "infinity" (also 0) for none.
type CountLimit int64

func parseByteLimit(s string) (int64, error) {
	if isInfinity(s) {
		return 0, nil
	}
	if strings.HasPrefix(strings.TrimSpace(s), "-") {
		return 0, errors.New("must not be negative")
	}
	return ParseBytes(s)
}

func parseCountLimit(s string) (int64, error) {
	if isInfinity(s) {
		return 0, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("expected a number of messages or \"infinity\", got %q", s)
	}
	if n < 0 {
		return 0, errors.New("must not be negative")
	}
	return n, nil
}

// UnmarshalYAML reads a byte cap.
func (l *ByteLimit) UnmarshalYAML(n *yaml.Node) error {
	v, err := yamlLimit(n, "a size such as 10GiB, or infinity", parseByteLimit)
	*l = ByteLimit(v)
	return err
}

// UnmarshalJSON reads a byte cap.
func (l *ByteLimit) UnmarshalJSON(data []byte) error {
	v, err := jsonNumberOrString(data, "a size such as 10GiB, or \"infinity\"", parseByteLimit)
	*l = ByteLimit(v)
	return err
}

// UnmarshalYAML reads a record cap.
func (l *CountLimit) UnmarshalYAML(n *yaml.Node) error {
	v, err := yamlLimit(n, "a number of messages, or infinity", parseCountLimit)
	*l = CountLimit(v)
	return err
}

// UnmarshalJSON reads a record cap.
func (l *CountLimit) UnmarshalJSON(data []byte) error {
	v, err := jsonNumberOrString(data, "a number of messages, or \"infinity\"", parseCountLimit)
	*l = CountLimit(v)
	return err
}

func yamlLimit(n *yaml.Node, want string, parse func(string) (int64, error)) (int64, error) {
	s, err := conf.Scalar(n, want)
	if err != nil {
		return 0, err
	}
	v, err := parse(s)
	if err != nil {
		return 0, conf.Invalid(n, err)
	}
	return v, nil
}

// jsonNumberOrString reads a whole JSON number (negative ones refused) or a string
// parse reads.
func jsonNumberOrString(data []byte, want string, parse func(string) (int64, error)) (int64, error) {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return 0, err
		}
		return parse(s)
	}
	var num json.Number
	if err := json.Unmarshal(data, &num); err != nil {
		return 0, fmt.Errorf("expected %s, got %s", want, jsonShort(data))
	}
	v, err := num.Int64()
	if err != nil {
		f, ferr := num.Float64()
		if ferr != nil || f != math.Trunc(f) || math.Abs(f) >= 1<<62 {
			return 0, fmt.Errorf("expected %s, got %s", want, jsonShort(data))
		}
		v = int64(f)
	}
	if v < 0 {
		return 0, errors.New("must not be negative")
	}
	return v, nil
}

// jsonShort shows a JSON value in a message, cut short.
func jsonShort(data []byte) string {
	s := string(bytes.TrimSpace(data))
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return s
}

// UnmarshalYAML compiles a key expression.
func (k *KeyExpr) UnmarshalYAML(n *yaml.Node) error {
	s, err := conf.Scalar(n, "a key expression such as clientid or topic-level:2")
	if err != nil {
		return err
	}
	v, err := compileKey(s)
	if err != nil {
		return conf.Invalid(n, err)
	}
	*k = v
	return nil
}

// UnmarshalJSON compiles a key expression.
func (k *KeyExpr) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("expected a key expression string, got %s", jsonShort(data))
	}
	v, err := compileKey(s)
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// MarshalJSON writes the expression's text.
func (k KeyExpr) MarshalJSON() ([]byte, error) { return json.Marshal(k.src) }

// Filters is one MQTT topic filter or a list of them, each checked as it is read.
type Filters []string

// UnmarshalYAML reads a filter or a list of filters.
func (f *Filters) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	items := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode {
		items = n.Content
	}
	out := Filters{}
	for _, item := range items {
		s, err := conf.Scalar(item, "a topic filter or a list of them")
		if err != nil {
			return err
		}
		if err := checkFilter(s); err != nil {
			return conf.Invalid(item, err)
		}
		out = append(out, s)
	}
	*f = out
	return nil
}

// UnmarshalJSON reads a filter or a list of filters.
func (f *Filters) UnmarshalJSON(data []byte) error {
	var one string
	if err := json.Unmarshal(data, &one); err == nil {
		if err := checkFilter(one); err != nil {
			return err
		}
		*f = Filters{one}
		return nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(data, &list); err != nil {
		return fmt.Errorf("expected a topic filter or a list of them, got %s", jsonShort(data))
	}
	out := Filters{}
	for i, raw := range list {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return conf.Fieldf(fmt.Sprintf("[%d]", i), "expected a topic filter, got %s", jsonShort(raw))
		}
		if err := checkFilter(s); err != nil {
			return conf.Field(fmt.Sprintf("[%d]", i), err)
		}
		out = append(out, s)
	}
	*f = out
	return nil
}

// checkFilter is the rule for a filter feeding a stream: a valid MQTT filter that is
// not a shared subscription.
func checkFilter(f string) error {
	if err := ValidFilter(f); err != nil {
		return fmt.Errorf("%q: %w", f, err)
	}
	if strings.HasPrefix(f, "$share/") || strings.HasPrefix(f, "$queue/") {
		return fmt.Errorf("%q: a shared subscription filter cannot feed a stream", f)
	}
	return nil
}

func isInfinity(s string) bool {
	s = strings.TrimSpace(s)
	return strings.EqualFold(s, "infinity") || strings.EqualFold(s, "unlimited")
}

// topicTemplate is a publish_topic template's text, checked as it is read.
type topicTemplate string

// UnmarshalYAML reads a publish_topic template.
func (t *topicTemplate) UnmarshalYAML(n *yaml.Node) error {
	s, err := conf.Scalar(n, "a topic template such as out/{stream}/{key}")
	if err != nil {
		return err
	}
	if _, err := ParseTopicTemplate(s); err != nil {
		return conf.Invalid(n, err)
	}
	*t = topicTemplate(s)
	return nil
}

// UnmarshalJSON reads a publish_topic template.
func (t *topicTemplate) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("expected a topic template string, got %s", jsonShort(data))
	}
	if _, err := ParseTopicTemplate(s); err != nil {
		return err
	}
	*t = topicTemplate(s)
	return nil
}
