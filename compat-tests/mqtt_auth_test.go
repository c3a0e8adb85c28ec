package compattests

// MQTT security with real clients against the real binary: mosquitto_pub/mosquitto_sub
// over TLS with passwords and client certificates, paho.golang (MQTT 5) and
// paho.mqtt.golang (3.1.1) for the exact reason codes, Python paho and mqtt.js over
// WebSocket.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"
	packets3 "github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/mqstreams/mqstreams/auth"
	"github.com/mqstreams/mqstreams/certs/certstest"
)

const mqttAuthPassword = "correct horse"

// mqttAuthServer runs a server with TLS (client certificates optional) on MQTT and
// MQTT over WebSocket, and users: alice publishes and subscribes under plant/ and reads
// stream plant; bob subscribes to # and reads no stream; dev (the client certificate's
// CN) publishes under plant/dev/; admin is a superuser.
func mqttAuthServer(t *testing.T) (*Server, *certstest.TestPKI) {
	t.Helper()
	pki, err := certstest.NewTestPKI(t.TempDir(), "dev")
	if err != nil {
		t.Fatal(err)
	}
	creds, err := auth.HashPassword(mqttAuthPassword, 4)
	if err != nil {
		t.Fatal(err)
	}
	hash := creds.String()
	cfg := fmt.Sprintf(`mqtt:
  ws_addr: "127.0.0.1:0"
  tls: {cert: %q, key: %q, client_ca: %q}
auth:
  allow_anonymous: false
  users:
    - username: alice
      password_hash: %q
      acl:
        - {topic: "plant/#", allow: [publish, subscribe]}
        - {stream: plant, allow: [read]}
    - username: bob
      password_hash: %q
      acl:
        - {topic: "#", allow: [subscribe]}
    - username: dev
      password_hash: %q
      acl:
        - {topic: "plant/dev/#", allow: [publish]}
    - username: admin
      password_hash: %q
      superuser: true
streams:
  - {name: plant, filter: "plant/#", shards: 1, key: topic}
`, pki.ServerCert, pki.ServerKey, pki.CA, hash, hash, hash, hash)
	srv := StartServer(t, ServerOptions{Config: cfg})
	if srv.MQTTWSAddr == "" {
		t.Fatal("ready line has no mqtt_ws_addr")
	}
	return srv, pki
}

// mosquitto runs mosquitto_pub or mosquitto_sub against the TLS listener and returns
// its combined output and exit status.
func mosquitto(t *testing.T, srv *Server, pki *certstest.TestPKI, tool string, args ...string) (string, int) {
	t.Helper()
	NeedTool(t, tool)
	_, port := SplitAddr(t, srv.MQTTAddr) // the host is localhost, as the certificate names it
	all := append([]string{"-h", "localhost", "-p", port, "--cafile", pki.CA}, args...)
	cmd := exec.CommandContext(Deadline(t, startTimeout), tool, all...)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s: %v", tool, err)
		}
		code = ee.ExitCode()
	}
	return string(out), code
}

func TestMQTTAuthMosquitto(t *testing.T) {
	t.Parallel()
	srv, pki := mqttAuthServer(t)

	// Passwords over TLS, MQTT 3.1.1 and 5.
	for _, v := range []string{"mqttv311", "mqttv5"} {
		if out, code := mosquitto(t, srv, pki, "mosquitto_pub", "-V", v, "-q", "1", "-i", "alice-"+v,
			"-u", "alice", "-P", mqttAuthPassword, "-t", "plant/a", "-m", "alice-"+v); code != 0 {
			t.Fatalf("alice %s: exit %d: %s", v, code, out)
		}
	}
	// A client certificate: its CN is the username, no password.
	if out, code := mosquitto(t, srv, pki, "mosquitto_pub", "-q", "1", "-i", "dev-cert",
		"--cert", pki.ClientCert, "--key", pki.ClientKey, "-t", "plant/dev/1", "-m", "by-cert"); code != 0 {
		t.Fatalf("client certificate: exit %d: %s", code, out)
	}
	// Refused: expired certificate (handshake), wrong password, unknown user, no
	// credentials; MQTT 3.1.1 gets 0x04 and MQTT 5 0x86, both "bad user name or password".
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"expired certificate", []string{"--cert", pki.ExpiredCert, "--key", pki.ExpiredKey}, ""},
		{"wrong password v311", []string{"-V", "mqttv311", "-u", "alice", "-P", "wrong"}, "bad user name or password"},
		{"wrong password v5", []string{"-V", "mqttv5", "-u", "alice", "-P", "wrong"}, "bad user name or password"},
		{"unknown user", []string{"-V", "mqttv311", "-u", "mallory", "-P", mqttAuthPassword}, "bad user name or password"},
		{"anonymous", []string{"-V", "mqttv311"}, "bad user name or password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-q", "1", "-i", "refused", "-t", "plant/dev/1", "-m", "refused-" + tc.name}, tc.args...)
			out, code := mosquitto(t, srv, pki, "mosquitto_pub", args...)
			if code == 0 {
				t.Fatalf("accepted: %s", out)
			}
			if !strings.Contains(strings.ToLower(out), tc.want) {
				t.Fatalf("exit %d, output %q, want it to say %q", code, out, tc.want)
			}
		})
	}

	// Denied publishes: 3.1.1 acknowledged and dropped (mosquitto_pub succeeds), MQTT 5
	// refused with PUBACK 0x87; neither is stored.
	if out, code := mosquitto(t, srv, pki, "mosquitto_pub", "-V", "mqttv311", "-q", "1", "-i", "dev-denied3",
		"-u", "dev", "-P", mqttAuthPassword, "-t", "plant/secret", "-m", "denied-v311"); code != 0 {
		t.Fatalf("denied 3.1.1 publish: exit %d: %s", code, out)
	}
	out, _ := mosquitto(t, srv, pki, "mosquitto_pub", "-V", "mqttv5", "-q", "1", "-i", "dev-denied5", "-d",
		"-u", "dev", "-P", mqttAuthPassword, "-t", "plant/secret", "-m", "denied-v5")
	if !strings.Contains(out, "PUBACK") || !strings.Contains(strings.ToLower(out), "not authori") {
		t.Fatalf("denied MQTT 5 publish: want a PUBACK saying not authorized, got %q", out)
	}
	if out, code := mosquitto(t, srv, pki, "mosquitto_pub", "-q", "1", "-i", "alice-end",
		"-u", "alice", "-P", mqttAuthPassword, "-t", "plant/end", "-m", "end"); code != 0 {
		t.Fatalf("end marker: exit %d: %s", code, out)
	}

	// bob may subscribe to # but may not read stream plant through $stream/.
	out, code := mosquitto(t, srv, pki, "mosquitto_sub", "-V", "mqttv5", "-i", "bob-stream", "-u", "bob", "-P", mqttAuthPassword,
		"-t", "$stream/plant", "-D", "subscribe", "user-property", "stream-offset", "earliest", "-C", "1", "-W", "30")
	if !strings.Contains(out, "All subscription requests were denied") {
		t.Fatalf("bob's $stream/plant: exit %d, output %q, want the subscription denied", code, out)
	}

	// The admin replays the stream: everything allowed, in order, and nothing denied.
	out, code = mosquitto(t, srv, pki, "mosquitto_sub", "-V", "mqttv5", "-i", "admin-replay", "-u", "admin", "-P", mqttAuthPassword,
		"-t", "$stream/plant", "-D", "subscribe", "user-property", "stream-offset", "earliest", "-C", "4", "-W", "60")
	if code != 0 {
		t.Fatalf("admin replay: exit %d: %s", code, out)
	}
	if got := strings.Fields(out); fmt.Sprint(got) != "[alice-mqttv311 alice-mqttv5 by-cert end]" {
		t.Fatalf("stream plant replays %v, want [alice-mqttv311 alice-mqttv5 by-cert end]", got)
	}
}

// TestMQTTAuthReasonCodes checks the exact codes with clients that expose them:
// paho.golang (MQTT 5) and paho.mqtt.golang (3.1.1).
func TestMQTTAuthReasonCodes(t *testing.T) {
	t.Parallel()
	srv, pki := mqttAuthServer(t)
	caPEM, err := os.ReadFile(pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	tlsCfg := &tls.Config{RootCAs: pool, ServerName: "localhost"}

	v5 := func(t *testing.T, id, user, password string) (*paho.Client, *paho.Connack) {
		t.Helper()
		conn, err := tls.Dial("tcp", srv.MQTTAddr, tlsCfg)
		if err != nil {
			t.Fatal(err)
		}
		// A TLS connection is no writev: paho writes a packet's parts in several Writes,
		// and locks around them only on a sync.Locker connection. Without one, its pinger's
		// first PINGREQ, sent as CONNACK arrives, could land inside the SUBSCRIBE or
		// PUBLISH sent right after Connect: the server closed the connection for a
		// malformed packet and the call waited out its timeout (13 of 200 runs of this
		// test on a loaded machine; paho.golang issue #90).
		c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), ClientID: id,
			PacketTimeout: startTimeout}) // paho waits 10 s by default: too short under -race on a loaded machine
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30,
			UsernameFlag: true, Username: user, PasswordFlag: true, Password: []byte(password)})
		if ca == nil {
			t.Fatalf("connect %s: no CONNACK: %v", id, err)
		}
		t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
		return c, ca
	}
	if _, ca := v5(t, "wrong5", "alice", "wrong"); ca.ReasonCode != 0x86 {
		t.Fatalf("MQTT 5 wrong password: CONNACK %#x, want 0x86", ca.ReasonCode)
	}
	if _, ca := v5(t, "unknown5", "mallory", mqttAuthPassword); ca.ReasonCode != 0x86 {
		t.Fatalf("MQTT 5 unknown user: CONNACK %#x, want 0x86", ca.ReasonCode)
	}
	bob, ca := v5(t, "bob5", "bob", mqttAuthPassword)
	if ca.ReasonCode != 0 {
		t.Fatalf("bob: CONNACK %#x", ca.ReasonCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	sa, err := bob.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "plant/#", QoS: 1}, {Topic: "$stream/plant", QoS: 1}, {Topic: "$SYS/#", QoS: 1}}})
	if sa == nil {
		t.Fatalf("bob subscribe: %v", err)
	}
	if got := fmt.Sprint(sa.Reasons); got != "[1 135 135]" {
		t.Fatalf("MQTT 5 SUBACK %s, want [1 135 135]", got)
	}
	alice, _ := v5(t, "alice5", "alice", mqttAuthPassword)
	pa, err := alice.Publish(ctx, &paho.Publish{Topic: "other/x", QoS: 1, Payload: []byte("x")})
	if pa == nil {
		t.Fatalf("alice publish: %v", err)
	}
	if pa.ReasonCode != 0x87 {
		t.Fatalf("MQTT 5 denied publish: PUBACK %#x, want 0x87", pa.ReasonCode)
	}

	// MQTT 3.1.1: CONNACK 0x04, SUBACK 0x80.
	v3 := func(user, password string) (pahov3.Client, error) {
		o := pahov3.NewClientOptions().AddBroker("ssl://" + srv.MQTTAddr).SetTLSConfig(tlsCfg).
			SetClientID("v3-" + user).SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).
			SetUsername(user).SetPassword(password)
		c := pahov3.NewClient(o)
		tok := c.Connect()
		if !tok.WaitTimeout(startTimeout) {
			t.Fatal("3.1.1 connect: timeout")
		}
		return c, tok.Error()
	}
	if _, err := v3("alice", "wrong"); !errors.Is(err, packets3.ErrorRefusedBadUsernameOrPassword) {
		t.Fatalf("3.1.1 wrong password: %v, want %v (0x04)", err, packets3.ErrorRefusedBadUsernameOrPassword)
	}
	c3, err := v3("bob", mqttAuthPassword)
	if err != nil {
		t.Fatalf("3.1.1 bob: %v", err)
	}
	defer c3.Disconnect(100)
	tok := c3.SubscribeMultiple(map[string]byte{"plant/#": 1, "$stream/plant": 1}, nil)
	if !tok.WaitTimeout(startTimeout) {
		t.Fatal("3.1.1 subscribe: timeout")
	}
	res := tok.(*pahov3.SubscribeToken).Result()
	if res["plant/#"] != 1 || res["$stream/plant"] != 0x80 {
		t.Fatalf("3.1.1 SUBACK %v, want plant/# 1 and $stream/plant 0x80", res)
	}
}

// TestMQTTAuthWebSocket: Python paho over wss:// with a password, subscribing and
// publishing through the same ACLs; a wrong password is refused.
func TestMQTTAuthWebSocket(t *testing.T) {
	t.Parallel()
	script := pythonScript(t, "paho.mqtt.client", "paho_ws.py")
	srv, pki := mqttAuthServer(t)
	_, port := SplitAddr(t, srv.MQTTWSAddr)
	run := func(user, password string) map[string]any {
		t.Helper()
		args := append(append([]string{}, script[1:]...), "localhost", port, pki.CA, user, password, "plant/ws/1", "hello-ws")
		cmd := exec.CommandContext(Deadline(t, startTimeout), script[0], args...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("paho_ws.py: %v\n%s", err, out)
		}
		var res map[string]any
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("paho_ws.py output %q: %v", out, err)
		}
		return res
	}
	if res := run("alice", mqttAuthPassword); res["received"] != "hello-ws" || fmt.Sprint(res["suback"]) != "[1]" {
		t.Fatalf("alice over WebSocket: %v", res)
	}
	if res := run("alice", "wrong"); res["connack"] != float64(4) {
		t.Fatalf("wrong password over WebSocket: %v, want connack 4", res)
	}
}

// TestMQTTAuthMqttJS: mqtt.js, the library browser dashboards use, over wss:// with
// MQTT 5 and a password; a wrong password gets CONNACK 0x86.
func TestMQTTAuthMqttJS(t *testing.T) {
	t.Parallel()
	node := NeedTool(t, "node")
	if _, err := os.Stat(filepath.Join("node_modules", "mqtt", "package.json")); err != nil {
		t.Fatalf("mqtt.js is not installed in compat-tests/node_modules: run ./compat-tests/install-deps.sh (make test-deps): %v", err)
	}
	srv, pki := mqttAuthServer(t)
	_, port := SplitAddr(t, srv.MQTTWSAddr)
	run := func(user, password string) map[string]any {
		t.Helper()
		cmd := exec.CommandContext(Deadline(t, startTimeout), node, filepath.Join("clients", "mqttjs_ws.js"),
			"wss://localhost:"+port+"/mqtt", pki.CA, user, password, "plant/js/1", "hello-js")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("mqttjs_ws.js: %v\n%s", err, out)
		}
		var res map[string]any
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("mqttjs_ws.js output %q: %v", out, err)
		}
		return res
	}
	if res := run("alice", mqttAuthPassword); res["received"] != "hello-js" || fmt.Sprint(res["suback"]) != "[1]" {
		t.Fatalf("alice over WebSocket: %v", res)
	}
	if res := run("alice", "wrong"); res["connack"] != float64(0x86) {
		t.Fatalf("wrong password over WebSocket: %v, want connack 134 (0x86)", res)
	}
}
