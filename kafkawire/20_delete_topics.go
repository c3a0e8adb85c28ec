package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/auth"
)

// DeleteTopics: v0-6.
//
// Deletes streams through the catalog: their data, committed offsets and MQTT replay
// positions go in one write, and readers of the topic then get
// UNKNOWN_TOPIC_OR_PARTITION. v5 adds error messages, v6 topics by id (an unknown id is
// UNKNOWN_TOPIC_ID).

func init() { register(20, 0, 6, handleDeleteTopics) }

func handleDeleteTopics(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DeleteTopicsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	type target struct {
		name *string
		id   [16]byte
	}
	var targets []target
	for _, n := range req.TopicNames {
		targets = append(targets, target{name: kmsg.StringPtr(n)})
	}
	for _, t := range req.Topics {
		targets = append(targets, target{name: t.Topic, id: t.TopicID})
	}
	for _, tg := range targets {
		t := kmsg.NewDeleteTopicsResponseTopic()
		t.Topic, t.TopicID = tg.name, tg.id
		fail := func(code int16, msg string) {
			t.ErrorCode = code
			t.ErrorMessage = kmsg.StringPtr(msg)
		}
		var name string
		switch {
		case tg.name != nil:
			name = *tg.name
		case tg.id != [16]byte{}:
			st := s.streamByTopicID(tg.id)
			if st == nil {
				fail(kerr.UnknownTopicID.Code, "unknown topic id")
				resp.Topics = append(resp.Topics, t)
				continue
			}
			name = st.Name()
			t.Topic = kmsg.StringPtr(name)
		}
		switch {
		case name == "":
			fail(kerr.InvalidRequest.Code, "neither topic name nor id given")
		case !s.authorizeStream(c, name, auth.OpAdmin):
			fail(kerr.TopicAuthorizationFailed.Code, "not authorized to delete topic "+name)
		default:
			if st := s.stream(name); st != nil {
				t.TopicID = s.topicID(st)
			}
			if err := s.cat.Delete(name); err != nil {
				fail(catalogError(err))
				break
			}
			s.lg.Info().Str("stream", name).Msg("stream deleted by DeleteTopics")
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}
