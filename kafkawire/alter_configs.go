package kafkawire

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/auth"
	"github.com/mqstreams/mqstreams/mapping"
)

// configChange is one config operation of AlterConfigs or IncrementalAlterConfigs.
type configChange struct {
	name  string
	op    kmsg.IncrementalAlterConfigOp
	value *string
}

// alterTopicConfigs applies changes to one topic through the catalog, serialised with
// every other change of the stream; replace resets the retention configs not named
// (AlterConfigs replaces a topic's whole config set). It answers a Kafka error code
// and message, 0 on success.
func (s *Server) alterTopicConfigs(c *conn, topic string, changes []configChange, replace, validateOnly bool) (int16, string) {
	if !s.authorizeStream(c, topic, auth.OpAdmin) {
		return kerr.TopicAuthorizationFailed.Code, "not authorized to alter topic " + topic
	}
	change := func(d mapping.Definition) (mapping.Definition, error) {
		if replace {
			// The mapping (mqtt.*) is the stream's identity and stays unless named.
			for _, name := range []string{mapping.KafkaRetentionMS, mapping.KafkaRetentionBytes, mapping.KafkaCleanupPolicy, mapping.KafkaCompression} {
				_ = d.SetKafkaConfig(name, nil)
			}
		}
		for _, ch := range changes {
			if err := applyConfigChange(&d, ch); err != nil {
				return d, err
			}
		}
		if validateOnly {
			if err := d.ValidateKafkaOnly(); err != nil {
				return d, mapping.Invalid(err)
			}
			return d, errValidated
		}
		return d, nil
	}
	d, err := s.cat.Update(topic, change)
	switch {
	case errors.Is(err, errValidated):
		return 0, ""
	case err != nil:
		return catalogError(err)
	}
	s.lg.Info().Str("stream", topic).Strs("filters", d.Filters).Str("key", d.Key).Msg("stream altered by AlterConfigs")
	return 0, ""
}

func applyConfigChange(d *mapping.Definition, ch configChange) error {
	switch ch.op {
	case kmsg.IncrementalAlterConfigOpSet:
		if ch.value == nil {
			return fmt.Errorf("%w: %s: SET needs a value", errBadConfig, ch.name)
		}
		return d.SetKafkaConfig(ch.name, ch.value)
	case kmsg.IncrementalAlterConfigOpDelete:
		return d.SetKafkaConfig(ch.name, nil)
	case kmsg.IncrementalAlterConfigOpAppend, kmsg.IncrementalAlterConfigOpSubtract:
		if ch.name != mapping.KafkaTopicFilter {
			return fmt.Errorf("%w: %s: APPEND and SUBTRACT apply to the list config %s only", errBadConfig, ch.name, mapping.KafkaTopicFilter)
		}
		if ch.value == nil {
			return fmt.Errorf("%w: %s: needs a value", errBadConfig, ch.name)
		}
		fs := slices.Clone(d.Filters)
		for _, f := range strings.Split(*ch.value, ",") {
			f = strings.TrimSpace(f)
			if ch.op == kmsg.IncrementalAlterConfigOpAppend {
				if !slices.Contains(fs, f) {
					fs = append(fs, f)
				}
			} else {
				fs = slices.DeleteFunc(fs, func(x string) bool { return x == f })
			}
		}
		v := strings.Join(fs, ",")
		return d.SetKafkaConfig(ch.name, &v)
	}
	return fmt.Errorf("%w: %s: unknown operation %d", errBadConfig, ch.name, ch.op)
}

// alterConfigsResource answers one resource of AlterConfigs or IncrementalAlterConfigs:
// topics change through the catalog, broker configs are read-only.
func (s *Server) alterConfigsResource(c *conn, typ kmsg.ConfigResourceType, name string, changes []configChange, replace, validateOnly bool) (int16, *string) {
	if typ != kmsg.ConfigResourceTypeTopic {
		return kerr.InvalidRequest.Code, kmsg.StringPtr("only topic configs can be altered; broker configs come from the config file")
	}
	code, msg := s.alterTopicConfigs(c, name, changes, replace, validateOnly)
	if code == 0 {
		return 0, nil
	}
	return code, kmsg.StringPtr(msg)
}
