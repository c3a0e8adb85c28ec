package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestBenchMQTTAgainstServer(t *testing.T) {
	s, err := startServer(testConfig(t, ""), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		_ = s.Close(ctx)
	}()
	addr := s.mqtt.Addr().String()
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"-q", "1", "-c", "4", "-n", "400"}, []string{"QoS 1, 4 publishers", ": 400 messages", "ack latency: p50"}},
		{[]string{"-q", "2", "--protocol", "5", "-n", "50"}, []string{"MQTT 5 QoS 2", ": 50 messages", "p999"}},
		{[]string{"-q", "0", "-n", "100"}, []string{"QoS 0", ": 100 messages"}},
	} {
		var out, errOut bytes.Buffer
		code := runWith(append([]string{"bench", "mqtt", "--addr", addr}, tc.args...), env{stdout: &out, stderr: &errOut})
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, errOut.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%v: output lacks %q:\n%s", tc.args, w, out.String())
			}
		}
		if !strings.Contains(errOut.String(), "msg/s") {
			t.Errorf("%v: no progress line on stderr: %q", tc.args, errOut.String())
		}
	}
	var errOut bytes.Buffer
	if code := runWith([]string{"bench", "mqtt", "--addr", "127.0.0.1:1", "-n", "1"}, env{stdout: &errOut, stderr: &errOut}); code != 1 {
		t.Fatalf("closed port: exit %d, want 1 (%s)", code, errOut.String())
	}
	if code := runWith([]string{"bench", "mqtt", "--qos", "3"}, env{stdout: &errOut, stderr: &errOut}); code != 1 {
		t.Fatalf("--qos 3: exit %d, want 1", code)
	}
}
