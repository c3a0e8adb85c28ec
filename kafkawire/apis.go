package kafkawire

import (
	"fmt"
	"sort"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handler answers one decoded request whose version is within the registered range.
// The response must be req.ResponseKind() (same version); returning an error closes the
// connection, which is Kafka's answer to a request it cannot make sense of.
type handler func(s *Server, c *conn, req kmsg.Request) (kmsg.Response, error)

// api is one served API key with the versions we decode, encode and test.
type api struct {
	key, min, max int16
	handle        handler
}

// apis is the table of served APIs; each NN_name.go file registers its API from init.
// ApiVersions advertises exactly this table, so an API is never advertised unserved.
var apis = map[int16]api{}

// register adds an API to the table; it panics on a programming error (double or
// inverted registration) at init time.
func register(key, min, max int16, h handler) {
	if _, dup := apis[key]; dup {
		panic(fmt.Sprintf("kafkawire: api key %d registered twice", key))
	}
	if min < 0 || max < min || h == nil {
		panic(fmt.Sprintf("kafkawire: bad registration of api key %d: v%d-v%d", key, min, max))
	}
	if r := kmsg.RequestForKey(key); r == nil || max > r.MaxVersion() {
		panic(fmt.Sprintf("kafkawire: api key %d v%d is beyond what kmsg encodes", key, max))
	}
	apis[key] = api{key: key, min: min, max: max, handle: h}
}

// apiVersionKeys lists the table for ApiVersions, sorted by key.
func apiVersionKeys() []kmsg.ApiVersionsResponseApiKey {
	out := make([]kmsg.ApiVersionsResponseApiKey, 0, len(apis))
	for _, a := range apis {
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey, k.MinVersion, k.MaxVersion = a.key, a.min, a.max
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ApiKey < out[j].ApiKey })
	return out
}
