package mqtt

import (
	"bytes"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// allowAll is the hook deciding who may connect, publish and subscribe: for now everyone
// may do everything. An authenticating hook (mochi's OnConnectAuthenticate and
// OnACLCheck) takes its place without touching the ingest path, which only ever sees
// publishes mochi has already authorized.
type allowAll struct{ mochi.HookBase }

func newAuthHook() mochi.Hook { return new(allowAll) }

// ID names the hook in mochi's logs.
func (*allowAll) ID() string { return "allow-all-auth" }

// Provides lists the mochi events the hook handles.
func (*allowAll) Provides(b byte) bool {
	return bytes.IndexByte([]byte{mochi.OnConnectAuthenticate, mochi.OnACLCheck}, b) >= 0
}

// OnConnectAuthenticate accepts every connection.
func (*allowAll) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }

// OnACLCheck allows every topic, for reading and writing.
func (*allowAll) OnACLCheck(*mochi.Client, string, bool) bool { return true }
