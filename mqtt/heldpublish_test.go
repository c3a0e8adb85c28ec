package mqtt

import (
	"reflect"
	"testing"
	"unsafe"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestNoPropertiesSeesEveryField: noProperties is false as soon as any one field of
// mochi's Properties is set, so a publish's properties are never dropped, also after a
// mochi upgrade adds a field.
func TestNoPropertiesSeesEveryField(t *testing.T) {
	if !noProperties(&packets.Properties{}) {
		t.Fatal("zero Properties reported as set")
	}
	typ := reflect.TypeOf(packets.Properties{})
	for i := 0; i < typ.NumField(); i++ {
		var p packets.Properties
		f := reflect.ValueOf(&p).Elem().Field(i)
		switch f.Kind() {
		case reflect.Slice:
			f.Set(reflect.MakeSlice(f.Type(), 0, 0)) // empty but not nil is kept too
		case reflect.String:
			f.SetString("x")
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			f.SetUint(1)
		default:
			t.Fatalf("field %s: kind %s not covered", typ.Field(i).Name, f.Kind())
		}
		if noProperties(&p) {
			t.Errorf("Properties.%s set, but noProperties reports none", typ.Field(i).Name)
		}
	}
}

// TestHeldPublishRoundTrip: a held publish gives back the packet's publish fields and
// properties (without the inbound topic alias), and a queued item without properties
// is less than half its former 480 bytes.
func TestHeldPublishRoundTrip(t *testing.T) {
	base := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: true, Remaining: 40},
		TopicName:   "plant/7", Payload: []byte("21.5"), Origin: "dev-7", PacketID: 9,
		Created: 100, Expiry: 200, ProtocolVersion: 5, Mods: packets.Mods{MaxSize: 10},
	}
	withProps := base
	withProps.Properties = packets.Properties{ContentType: "text/plain", User: []packets.UserProperty{{Key: "k", Val: "v"}},
		MessageExpiryInterval: 60, TopicAlias: 3, TopicAliasFlag: true}
	aliasOnly := base
	aliasOnly.Properties = packets.Properties{TopicAlias: 3, TopicAliasFlag: true}
	for name, pk := range map[string]packets.Packet{"none": base, "properties": withProps, "alias only": aliasOnly} {
		held := holdPublish(&pk)
		want := pk
		want.Properties.TopicAlias, want.Properties.TopicAliasFlag = 0, false
		if got := held.packet(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: held publish gives back\n%+v\nwant\n%+v", name, got, want)
		}
		if (held.props == nil) != (name != "properties") {
			t.Errorf("%s: properties held: %v", name, held.props != nil)
		}
	}
	if size := unsafe.Sizeof(item{}); size > 240 {
		t.Errorf("a queued item takes %d bytes", size)
	}
	// Holding a publish without properties allocates nothing (its item aside).
	if n := testing.AllocsPerRun(100, func() { heldSink = holdPublish(&base) }); n != 0 {
		t.Errorf("holding a publish without properties: %.0f allocations", n)
	}
}

var heldSink heldPublish
