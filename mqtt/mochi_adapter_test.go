package mqtt

import (
	"bytes"
	"io"
	"net"
	"testing"
	"unsafe"

	mochi "github.com/mochi-mqtt/server/v2"
)

// TestWriteOrderedAfterMochiBuffer checks the adapter still finds mochi's output buffer
// and writes what it holds (a SUBACK, say) before the replayed bytes.
func TestWriteOrderedAfterMochiBuffer(t *testing.T) {
	if outbufOffset < 0 {
		t.Fatal("mochi's ClientConnection.outbuf is gone: re-check mochi_adapter.go against the new mochi")
	}
	srv := mochi.New(nil)
	server, client := net.Pipe()
	defer server.Close()
	defer client.Close()
	cl := srv.NewClient(server, "test", "c1", false)
	*(**bytes.Buffer)(unsafe.Add(unsafe.Pointer(&cl.Net), outbufOffset)) = bytes.NewBufferString("suback|")

	errc := make(chan error, 1)
	go func() {
		cl.Lock()
		defer cl.Unlock()
		_, err := writeOrdered(cl, []byte("replay"))
		errc <- err
	}()
	got := make([]byte, len("suback|replay"))
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if string(got) != "suback|replay" {
		t.Fatalf("wrote %q, want mochi's buffered bytes first", got)
	}
	if p := *(**bytes.Buffer)(unsafe.Add(unsafe.Pointer(&cl.Net), outbufOffset)); p != nil {
		t.Fatalf("mochi's buffer left at %q, want flushed (nil) as mochi's flushOutbuf", p.String())
	}
}

// TestServerHooksFound checks the adapter still finds the broker's hook chain, which
// completePublish calls.
func TestServerHooksFound(t *testing.T) {
	if hooksOffset < 0 {
		t.Fatal("mochi's Server.hooks is gone: re-check completePublish in mochi_adapter.go against the new mochi")
	}
	srv := mochi.New(nil)
	hk := newPublishCounter()
	if err := srv.AddHook(hk, nil); err != nil {
		t.Fatal(err)
	}
	all := serverHooks(srv).GetAll()
	if len(all) != 1 || all[0] != mochi.Hook(hk) {
		t.Fatalf("hook chain %v, want the one hook added", all)
	}
}
