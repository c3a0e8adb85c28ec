package mqtt

import (
	"unicode/utf8"

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

// setProperties is toMessage's inverse for delivery: it sets the MQTT 5 properties of a
// stored message on p and returns its user properties with room for extra more.
// Records produced over Kafka carry bytes where MQTT wants UTF-8 strings (and a topic
// name): such fields are left out rather than break the client's connection.
func setProperties(p *packets.Properties, msg *mapping.Message, extra int) []packets.UserProperty {
	if utf8.ValidString(msg.ContentType) {
		p.ContentType = msg.ContentType
	}
	if msg.ResponseTopic != "" && mapping.ValidTopic(msg.ResponseTopic) == nil {
		p.ResponseTopic = msg.ResponseTopic
	}
	p.CorrelationData = msg.CorrelationData
	if msg.PayloadFormat != nil {
		p.PayloadFormat, p.PayloadFormatFlag = *msg.PayloadFormat, true
	}
	if msg.MessageExpiry != nil {
		p.MessageExpiryInterval = *msg.MessageExpiry
	}
	if len(msg.UserProperties)+extra == 0 {
		return nil
	}
	user := make([]packets.UserProperty, 0, len(msg.UserProperties)+extra)
	for _, u := range msg.UserProperties {
		if utf8.ValidString(u.Key) && utf8.ValidString(u.Value) {
			user = append(user, packets.UserProperty{Key: u.Key, Val: u.Value})
		}
	}
	return user
}
