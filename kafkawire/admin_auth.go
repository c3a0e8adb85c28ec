package kafkawire

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/mqstreams/mqstreams/auth"
	"github.com/mqstreams/mqstreams/mapping"
)

// authorizeStream is the one place the admin APIs (CreateTopics, DeleteTopics,
// CreatePartitions, the AlterConfigs pair, DeleteRecords, DescribeConfigs,
// DescribeLogDirs) decide whether the connection's principal holds op on a stream.
// Without an auth store everything is allowed (tests of other features).
func (s *Server) authorizeStream(c *conn, stream string, op auth.Op) bool {
	if s.auth == nil {
		return true
	}
	p, ok := c.principal()
	return ok && p.CanStream(stream, op)
}

// principal is who the connection acts for. Until a SASL exchange authenticates
// connections, every connection is the anonymous client, which holds only what the
// store grants anonymous clients (everything in open mode, nothing when refused).
func (c *conn) principal() (auth.Principal, bool) {
	return c.s.auth.Anonymous()
}

// catalogError maps a catalog error to a Kafka error code and message.
func catalogError(err error) (int16, string) {
	switch {
	case errors.Is(err, mapping.ErrStreamExists):
		return kerr.TopicAlreadyExists.Code, err.Error()
	case errors.Is(err, mapping.ErrUnknownStream):
		return kerr.UnknownTopicOrPartition.Code, err.Error()
	case errors.Is(err, mapping.ErrUnknownConfig):
		return kerr.InvalidConfig.Code, err.Error()
	case errors.Is(err, errBadConfig):
		return kerr.InvalidConfig.Code, err.Error()
	case errors.Is(err, mapping.ErrInvalid):
		return kerr.InvalidConfig.Code, err.Error()
	}
	return kerr.UnknownServerError.Code, err.Error()
}

// errBadConfig marks a config value the definition refused.
var errBadConfig = errors.New("invalid config")
