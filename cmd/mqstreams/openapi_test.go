package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// TestOpenAPIDescribesEveryRoute: every route the server registers (and the fixed ones)
// is a path and method of the document served at /api/v5/openapi.json, and every path
// the document names is served.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	s, err := startServer(testConfig(t, ""), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Close(t.Context()); err != nil {
			t.Error(err)
		}
	}()
	code, body := httpGet(t, s.http.Addr().String(), "/api/v5/openapi.json")
	if code != 200 {
		t.Fatalf("openapi.json: %d", code)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("not an OpenAPI 3 document: %v", err)
	}
	routes := append([]string{"GET /healthz", "GET /readyz", "GET /metrics", "GET /api/v5/openapi.json", "POST /api/v5/login"}, s.http.routes...)
	described := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			if method != "parameters" {
				described[strings.ToUpper(method)+" "+path] = true
			}
		}
	}
	served := map[string]bool{}
	for _, r := range routes {
		served[r] = true
		if !described[r] {
			t.Errorf("route %q is not in openapi.json", r)
		}
	}
	for d := range described {
		if !served[d] {
			t.Errorf("openapi.json describes %q, which is not served", d)
		}
	}
}
