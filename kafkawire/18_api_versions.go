package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ApiVersions: v0-3.
//
// Lists every API in the table with its version range. The response header is always
// v0. A request version we do not know is not decoded: it gets a v0 body with
// UNSUPPORTED_VERSION and our ranges (conn.dispatch), as Kafka does, so old and new
// clients alike can negotiate. v1 adds ThrottleMillis; v3 is flexible and carries the
// client software name and version, which we accept as sent.

const apiVersionsKey = 18

func init() { register(apiVersionsKey, 0, 3, handleApiVersions) }

func handleApiVersions(_ *Server, _ *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ApiVersionsRequest)
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	resp.ApiKeys = apiVersionKeys()
	return resp, nil
}

// unsupportedApiVersions is the v0 answer to an ApiVersions request of unknown version.
func unsupportedApiVersions() *kmsg.ApiVersionsResponse {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = 0
	resp.ErrorCode = kerr.UnsupportedVersion.Code
	resp.ApiKeys = apiVersionKeys()
	return resp
}
