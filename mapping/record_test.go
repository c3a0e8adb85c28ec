package mapping

import (
	"reflect"
	"testing"

	"github.com/mqstreams/mqstreams/log"
)

func ptr[T any](v T) *T { return &v }

func headerList(r log.Record) [][2]string {
	var out [][2]string
	for _, h := range r.Headers {
		out = append(out, [2]string{h.Key, string(h.Value)})
	}
	return out
}

func TestToRecordHeaders(t *testing.T) {
	tests := []struct {
		name string
		msg  Message
		want [][2]string
	}{
		{
			name: "MQTT 3.1.1 anonymous",
			msg:  Message{Topic: "a/b", Payload: []byte("hi"), QoS: 1, ClientID: "c1"},
			want: [][2]string{{"mqtt.topic", "a/b"}, {"mqtt.qos", "1"}, {"mqtt.retain", "false"}, {"mqtt.client_id", "c1"}},
		},
		{
			name: "MQTT 5 everything",
			msg: Message{
				Topic: "s/1", Payload: []byte("{}"), QoS: 2, Retain: true, ClientID: "c2", Username: "bob",
				ContentType: "application/json", ResponseTopic: "reply/1", CorrelationData: []byte{0, 1, 2},
				PayloadFormat: ptr(byte(1)), MessageExpiry: ptr(uint32(3600)),
				UserProperties: []UserProperty{{"b", "2"}, {"a", "1"}, {"b", "3"}},
			},
			want: [][2]string{
				{"mqtt.topic", "s/1"}, {"mqtt.qos", "2"}, {"mqtt.retain", "true"}, {"mqtt.client_id", "c2"},
				{"mqtt.username", "bob"}, {"mqtt.content_type", "application/json"}, {"mqtt.response_topic", "reply/1"},
				{"mqtt.correlation_data", "\x00\x01\x02"}, {"mqtt.payload_format", "1"}, {"mqtt.message_expiry", "3600"},
				{"b", "2"}, {"a", "1"}, {"b", "3"},
			},
		},
		{
			name: "zero-valued MQTT 5 properties are present",
			msg:  Message{Topic: "t", QoS: 0, ClientID: "", PayloadFormat: ptr(byte(0)), MessageExpiry: ptr(uint32(0))},
			want: [][2]string{{"mqtt.topic", "t"}, {"mqtt.qos", "0"}, {"mqtt.retain", "false"}, {"mqtt.client_id", ""},
				{"mqtt.payload_format", "0"}, {"mqtt.message_expiry", "0"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ToRecord(&tt.msg, []byte("k"))
			if got := headerList(r); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("headers\ngot  %q\nwant %q", got, tt.want)
			}
			if string(r.Key) != "k" || string(r.Value) != string(tt.msg.Payload) {
				t.Errorf("key/value = %q/%q", r.Key, r.Value)
			}
		})
	}
}

func TestToRecordEmptyPayload(t *testing.T) {
	r := ToRecord(&Message{Topic: "t"}, nil)
	if r.Value == nil || len(r.Value) != 0 {
		t.Fatalf("value = %#v, want empty non-nil", r.Value)
	}
	if r.Key != nil {
		t.Fatalf("key = %#v, want nil", r.Key)
	}
}

func TestToRecordHeaderValuesIndependent(t *testing.T) {
	m := Message{Topic: "t", ClientID: "c", UserProperties: []UserProperty{{"a", "x"}, {"b", "y"}}}
	r := ToRecord(&m, nil)
	// Appending to one header value must not overwrite the next one's bytes.
	_ = append(r.Headers[len(r.Headers)-2].Value, 'Z')
	if got := string(r.Headers[len(r.Headers)-1].Value); got != "y" {
		t.Fatalf("last header = %q, want y", got)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	msgs := []Message{
		{Topic: "a/b", Payload: []byte("hi"), QoS: 1, ClientID: "c1"},
		{
			Topic: "s/1", Payload: []byte{}, QoS: 2, Retain: true, ClientID: "c2", Username: "bob",
			ContentType: "text/plain", ResponseTopic: "r", CorrelationData: []byte{9},
			PayloadFormat: ptr(byte(1)), MessageExpiry: ptr(uint32(60)),
			UserProperties: []UserProperty{{"k", "1"}, {"k", "2"}, {"x", ""}, {"k", "1"}},
		},
	}
	for _, m := range msgs {
		back := FromRecord(ToRecord(&m, []byte("key")))
		if !reflect.DeepEqual(back, m) {
			t.Errorf("round trip\ngot  %+v\nwant %+v", back, m)
		}
	}
}

func TestFromRecordKafkaProduced(t *testing.T) {
	// A record a Kafka producer wrote: foreign headers become user properties, and a
	// malformed mqtt.* header is kept rather than dropped.
	r := log.Record{
		Value: []byte("v"),
		Headers: []log.Header{
			{Key: "trace-id", Value: []byte("abc")},
			{Key: "mqtt.topic", Value: []byte("cmd/1")},
			{Key: "mqtt.qos", Value: []byte("high")},
			{Key: "mqtt.retain", Value: []byte("true")},
			{Key: "mqtt.payload_format", Value: []byte("7")},
			{Key: "mqtt.message_expiry", Value: []byte("-1")},
			{Key: "mqtt.other", Value: []byte("o")},
		},
	}
	got := FromRecord(r)
	want := Message{
		Topic: "cmd/1", Payload: []byte("v"), Retain: true,
		UserProperties: []UserProperty{{"trace-id", "abc"}, {"mqtt.qos", "high"}, {"mqtt.payload_format", "7"}, {"mqtt.message_expiry", "-1"}, {"mqtt.other", "o"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}
