package main

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/mapping"
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

// TestOpenAPIStreamFields: the stream schemas list exactly the fields the REST API
// decodes (the json tags of the definition's document, mapping.Definition.Shape), at
// every level, so a field added to one is added to the other.
func TestOpenAPIStreamFields(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]schemaProps `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	want := jsonKeys(reflect.TypeOf(mapping.Definition{}.Shape()))
	for _, name := range []string{"StreamInput", "Stream"} {
		got := doc.Components.Schemas[name].keys()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s properties:\n got %v\nwant %v", name, got, want)
		}
	}
}

type schemaProps struct {
	Properties map[string]schemaProps `json:"properties"`
}

// keys lists the properties as "a", "b.c" (nested objects), sorted.
func (s schemaProps) keys() []string {
	var out []string
	for k, v := range s.Properties {
		out = append(out, k)
		for _, sub := range v.keys() {
			out = append(out, k+"."+sub)
		}
	}
	slices.Sort(out)
	return out
}

// jsonKeys lists a struct's json keys as keys does, following pointers to structs.
func jsonKeys(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		out = append(out, name)
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && !reflect.PointerTo(ft).Implements(reflect.TypeFor[json.Unmarshaler]()) {
			for _, sub := range jsonKeys(ft) {
				out = append(out, name+"."+sub)
			}
		}
	}
	slices.Sort(out)
	return out
}
