package kafkawire

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/mqstreams/mqstreams/auth"
	"github.com/mqstreams/mqstreams/mapping"
)

// authorizeStream is the one place the stream admin APIs (CreateTopics, DeleteTopics,
// CreatePartitions, the AlterConfigs pair, DeleteRecords, DescribeLogDirs) decide
// whether the connection's principal holds op on a stream; authorized (authz.go) lets
// those requests through to their handlers, which answer each refused topic with
// TOPIC_AUTHORIZATION_FAILED. Without a user store everything is allowed.
func (s *Server) authorizeStream(c *conn, stream string, op auth.Op) bool {
	return s.auth == nil || c.sec.principal.CanStream(stream, op)
}

// mayDescribe tells whether the principal may see a stream's configuration and sizes:
// any operation on it, as Metadata and DescribeConfigs decide (authz.go).
func (s *Server) mayDescribe(c *conn, stream string) bool {
	return s.auth == nil || canDescribe(c.sec.principal, stream)
}

// catalogError maps a catalog error to a Kafka error code and message.
func catalogError(err error) (int16, string) {
	switch {
	case errors.Is(err, mapping.ErrStreamExists):
		return kerr.TopicAlreadyExists.Code, err.Error()
	case errors.Is(err, mapping.ErrUnknownStream):
		return kerr.UnknownTopicOrPartition.Code, err.Error()
	case errors.Is(err, mapping.ErrUnknownConfig), errors.Is(err, errBadConfig), errors.Is(err, mapping.ErrInvalid):
		return kerr.InvalidConfig.Code, err.Error()
	}
	return kerr.UnknownServerError.Code, err.Error()
}

// errBadConfig marks a config value the definition refused.
var errBadConfig = errors.New("invalid config")
