package mqtt

import (
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstreams/mqstreams/mapping"
)

// toMessage is the broker-free view of a publish the mapping works on. Payload and
// byte properties alias the packet's, which nothing modifies.
func toMessage(clientID, username string, pk *packets.Packet, seq uint64) mapping.Message {
	m := mapping.Message{
		Topic:           pk.TopicName,
		Payload:         pk.Payload,
		QoS:             pk.FixedHeader.Qos,
		Retain:          pk.FixedHeader.Retain,
		ClientID:        clientID,
		Username:        username,
		ContentType:     pk.Properties.ContentType,
		ResponseTopic:   pk.Properties.ResponseTopic,
		CorrelationData: pk.Properties.CorrelationData,
		ConnSeq:         seq,
	}
	if pk.Properties.PayloadFormatFlag {
		pf := pk.Properties.PayloadFormat
		m.PayloadFormat = &pf
	}
	if pk.Properties.MessageExpiryInterval > 0 {
		me := pk.Properties.MessageExpiryInterval
		m.MessageExpiry = &me
	}
	if n := len(pk.Properties.User); n > 0 {
		m.UserProperties = make([]mapping.UserProperty, n)
		for i, u := range pk.Properties.User {
			m.UserProperties[i] = mapping.UserProperty{Key: u.Key, Value: u.Val}
		}
	}
	return m
}
